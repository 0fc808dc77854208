"""Python stubs for workflowdb's protos, generated at run time with grpcio-tools.

Nothing generated is committed: `generate` compiles proto/workflowdb/v1/ into a folder of the
caller's choosing (usually a temporary one) and makes it importable.
"""

import importlib
import os
import sys

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = ("catalog.proto", "registry.proto")


def generate(out_dir):
    """Runs grpcio-tools' protoc on proto/workflowdb/v1/*.proto into out_dir."""
    wkt = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = [os.path.join(PROTO_ROOT, "workflowdb", "v1", name) for name in PROTOS]
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{wkt}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}"] + files
    if protoc.main(args) != 0:
        sys.exit("protoc failed to generate the stubs")
    sys.path.insert(0, out_dir)


def load(name):
    """The generated module workflowdb.v1.<name> (e.g. "catalog_pb2"), after `generate`."""
    return importlib.import_module(f"workflowdb.v1.{name}")


def default_socket():
    """The daemon's default socket, as `wfdb serve` chooses it."""
    explicit = os.environ.get("WFDB_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if os.path.isabs(runtime):
        return os.path.join(runtime, "wfdb.sock")
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "wfdb", "wfdb.sock")
    tmp = os.environ.get("TMPDIR", "")
    if not os.path.isabs(tmp):
        tmp = "/tmp"
    return os.path.join(tmp, f"wfdb-{os.getuid()}", "wfdb.sock")
