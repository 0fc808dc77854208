#!/usr/bin/env python3
"""A small workflowdb client in Python, using stubs generated at run time from proto/.

Registers an agent, defines a workflow, records a run, saves and restores a session, and
reads the knowledge graph, over the daemon's Unix socket.

    pip install grpcio grpcio-tools
    python3 examples/python/client.py --socket "$XDG_RUNTIME_DIR/wfdb/wfdb.sock"
"""

import argparse
import os
import tempfile

import grpc
from google.protobuf import json_format, struct_pb2

import wfdb_stubs


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket",
                        default=os.environ.get("WFDB_SOCKET") or wfdb_stubs.default_socket())
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wfdb-stubs-") as stubs:
        wfdb_stubs.generate(stubs)
        pb, rpc = wfdb_stubs.load("registry_pb2"), wfdb_stubs.load("registry_pb2_grpc")
        # A plain channel: the daemon accepts the socket path that gRPC sends as :authority.
        # Clients that set the authority to "localhost" (the usual Unix-socket convention,
        # e.g. options=[("grpc.default_authority", "localhost")]) work as well.
        channel = grpc.insecure_channel(f"unix:{args.socket}")
        agents = rpc.AgentsStub(channel)
        workflows = rpc.WorkflowsStub(channel)
        sessions = rpc.SessionsStub(channel)
        knowledge = rpc.KnowledgeStub(channel)

        # 1. Register an agent: the original's agent_info dict, capabilities as plain names.
        reply = agents.RegisterAgent(pb.RegisterAgentRequest(
            name="py_agent",
            agent_info=struct({"description": "An agent written in Python",
                               "capabilities": ["summarise", "translate"],
                               "owned_paths": ["**/*.py"]}),
        ))
        print(f"registered agent {reply.agent.name} "
              f"({', '.join(c.name for c in reply.agent.capabilities)})")

        # 2. Define a workflow (typed form).
        wf = workflows.DefineWorkflow(pb.DefineWorkflowRequest(workflow=pb.Workflow(
            workflow_id="py_summary",
            name="Summarise in Python",
            description="Summarise then translate",
            steps=[pb.Step(step=1, action="Summarise", agent="py_agent"),
                   pb.Step(step=2, action="Translate", agent="py_agent")],
            required_agents=["py_agent"],
            input_requirements=struct({"text": "string"}),
            output_format=struct({"summary": "string"}),
            estimated_time=10.0,
            success_rate=0.9,
        ))).workflow
        print(f"defined workflow {wf.workflow_id} version {wf.version} (ready: {wf.ready})")

        # 3. Record a run.
        run = workflows.StartRun(pb.StartRunRequest(workflow_id="py_summary")).run
        for step in (1, 2):
            workflows.ReportStep(pb.ReportStepRequest(
                run_id=run.run_id, step=step, status=pb.STEP_STATUS_SUCCEEDED))
        done = workflows.FinishRun(pb.FinishRunRequest(
            run_id=run.run_id, success=True, duration_ms=8000))
        print(f"run {done.run.run_id} finished: success rate now "
              f"{done.workflow.success_rate:.3f}, estimated time {done.workflow.estimated_time:.1f} s")

        # 4. Save and restore a session.
        saved = sessions.SaveSession(pb.SaveSessionRequest(session=pb.Session(
            session_id="py-session",
            context_snapshot=struct({"topic": "release notes", "turns": 3}),
            agent_states=struct({"py_agent": {"ready": True}}),
            workflow_progress=struct({"py_summary": 0.5}),
            learned_patterns=["users like short summaries"],
        )))
        restored = sessions.RestoreSession(
            pb.RestoreSessionRequest(session_id="py-session")).session
        context = json_format.MessageToDict(restored.context_snapshot)
        print(f"restored session {restored.session_id} version {restored.version} "
              f"(saved as version {saved.meta.version}): context {context}")

        # 5. Read the knowledge graph.
        graph = knowledge.GetGraph(pb.GetGraphRequest())
        print(f"knowledge graph: {graph.node_count} nodes, {graph.edge_count} edges")
        neighbors = knowledge.Neighbors(pb.NeighborsRequest(node="agent:py_agent"))
        for n in neighbors.neighbors:
            print(f"  agent:py_agent {n.direction} {n.kind} {n.node}")
        channel.close()


if __name__ == "__main__":
    main()
