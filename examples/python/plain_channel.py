#!/usr/bin/env python3
"""Talks to the daemon over a plain `grpc.insecure_channel("unix:PATH")`, with no options.

gRPC's C core sends the socket path (%-encoded) as the HTTP/2 :authority on a Unix socket;
the daemon serves such requests as if they named `localhost`. For each way of writing the
target (`unix:PATH`, `unix://ABSOLUTE-PATH`) this checks health, lists the services through
server reflection (v1) and reads the catalog (GetClock, ListFiles); then it checks that a
channel whose authority is set to `localhost` works too. Exits non-zero on any failure.

    pip install grpcio grpcio-tools
    python3 examples/python/plain_channel.py --socket "$XDG_RUNTIME_DIR/wfdb/wfdb.sock"
"""

import argparse
import os
import sys
import tempfile

import grpc

import wfdb_stubs

SERVING = 1
WANTED_SERVICES = ("grpc.health.v1.Health", "workflowdb.v1.Catalog", "workflowdb.v1.Agents")


def raw(channel, method, kind="unary_unary"):
    """A call that sends and returns serialized bytes (no stubs needed)."""
    return getattr(channel, kind)(method, request_serializer=lambda b: b,
                                  response_deserializer=lambda b: b)


def varint(buf, i):
    value, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """(field number, value) pairs of a serialized protobuf message: ints for varints, bytes
    for length-delimited fields."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, value


def check_health(channel):
    # HealthCheckRequest{service: ""} is empty; HealthCheckResponse.status is field 1.
    reply = raw(channel, "/grpc.health.v1.Health/Check")(b"", timeout=10)
    status = dict(fields(reply)).get(1, 0)
    if status != SERVING:
        sys.exit(f"health: status {status}, expected SERVING ({SERVING})")
    return "SERVING"


def list_services(channel):
    # ServerReflectionRequest{list_services: ""} (field 7); the reply's
    # list_services_response is field 6, a repeated ServiceResponse (field 1) with a name (1).
    replies = raw(channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                  "stream_stream")(iter([b"\x3a\x00"]), timeout=10)
    names = []
    for reply in replies:
        for number, value in fields(reply):
            if number == 6:
                for _, service in fields(value):
                    names.extend(v.decode() for n, v in fields(service) if n == 1)
    missing = [s for s in WANTED_SERVICES if s not in names]
    if missing:
        sys.exit(f"reflection: {missing} not listed among {names}")
    return names


def read_catalog(channel, pb, rpc):
    catalog = rpc.CatalogStub(channel)
    clock = catalog.GetClock(pb.ClockRequest(), timeout=30)
    files = [f.path for reply in catalog.ListFiles(pb.ListFilesRequest(), timeout=30)
             for f in reply.files]
    return clock.clock, files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket",
                        default=os.environ.get("WFDB_SOCKET") or wfdb_stubs.default_socket())
    args = parser.parse_args()
    targets = [f"unix:{args.socket}", f"unix://{os.path.abspath(args.socket)}"]

    with tempfile.TemporaryDirectory(prefix="wfdb-stubs-") as stubs:
        wfdb_stubs.generate(stubs)
        pb, rpc = wfdb_stubs.load("catalog_pb2"), wfdb_stubs.load("catalog_pb2_grpc")
        for target in targets:
            with grpc.insecure_channel(target) as channel:
                health = check_health(channel)
                services = list_services(channel)
                clock, files = read_catalog(channel, pb, rpc)
            print(f"{target}: health {health}; {len(services)} services; "
                  f"clock {clock}; {len(files)} files: {', '.join(sorted(files))}")
        options = [("grpc.default_authority", "localhost")]
        with grpc.insecure_channel(targets[0], options=options) as channel:
            print(f"{targets[0]} with authority localhost: health {check_health(channel)}")


if __name__ == "__main__":
    main()
