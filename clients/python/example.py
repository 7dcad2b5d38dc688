#!/usr/bin/env python3
"""Flasher from Python: create a task, watch it to its end, print each component's progress.

    PYTHONPATH=clients/python/flasher_api python3 clients/python/example.py \
        --server 127.0.0.1:9090 --insecure --server-id sim-0001

Uses the client generated into clients/python/flasher_api by `make generate` (Debian's
python3-grpcio and python3-protobuf). With TLS: --ca ca.crt; with a token: --token-file FILE.
Exit code 0 when the task SUCCEEDED, 1 when it ended otherwise, 2 on a usage or RPC error.
"""

import argparse
import sys
import uuid

import grpc

from flasher.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc

TERMINAL = {
    task_pb2.TASK_STATE_SUCCEEDED,
    task_pb2.TASK_STATE_FAILED,
    task_pb2.TASK_STATE_CANCELLED,
}


def channel(args):
    if args.insecure:
        return grpc.insecure_channel(args.server)
    with open(args.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(args.server, creds)


def name(enum, value, prefix):
    return enum.Name(value)[len(prefix):]


def show(task, seen):
    """Print what changed since the last look: the state, then one line per component change."""
    state = name(task_pb2.TaskState, task.state, "TASK_STATE_")
    if seen.get("state") != state:
        print(f"task {task.id} {state}", flush=True)
        seen["state"] = state
    for p in task.progress:
        line = (f"  {p.component:<12} {name(task_pb2.StepState, p.state, 'STEP_STATE_'):<10}"
                f" {p.step:<24} {p.percent:3d}%  {p.message}")
        key = (p.component, p.serial)
        if seen.get(key) != line:
            print(line, flush=True)
            seen[key] = line


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="127.0.0.1:9090", help="flasher-server's gRPC address")
    ap.add_argument("--server-id", required=True, help="the server whose firmware to update")
    ap.add_argument("--method", choices=["oob", "inband"], default="oob")
    ap.add_argument("--insecure", action="store_true", help="plaintext (a local trial only)")
    ap.add_argument("--ca", help="the Flasher CA certificate, for TLS")
    ap.add_argument("--token-file", help="a file holding an API token")
    args = ap.parse_args()
    if not args.insecure and not args.ca:
        ap.error("give --ca for TLS, or --insecure for a plaintext local trial")

    stub = task_service_pb2_grpc.TaskServiceStub(channel(args))
    method = task_pb2.METHOD_OUT_OF_BAND if args.method == "oob" else task_pb2.METHOD_IN_BAND
    try:
        # Watch first, so that no change between the create and the watch is missed: the watch's
        # snapshot and every later change name the task once it exists.
        watch = stub.WatchTasks(task_service_pb2.WatchTasksRequest(
            filter=task_service_pb2.TaskFilter(server_id=args.server_id)))
        created = stub.CreateTask(task_service_pb2.CreateTaskRequest(
            request_id=str(uuid.uuid4()),
            task=task_service_pb2.TaskSpec(server_id=args.server_id, method=method,
                                           resolve=task_service_pb2.ResolveInstall())))
        task_id = created.task.id
        seen = {}
        show(created.task, seen)
        if created.task.state in TERMINAL:
            final = created.task
        else:
            final = None
            for change in watch:
                if change.task.id != task_id:
                    continue
                show(change.task, seen)
                if change.task.state in TERMINAL:
                    final = change.task
                    break
            watch.cancel()
    except grpc.RpcError as err:
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 2
    if final is None:
        print("error: the watch ended before the task did", file=sys.stderr)
        return 2
    if final.failure.code:
        print(f"failure: {final.failure.code} ({final.failure.component}): {final.failure.message}")
    return 0 if final.state == task_pb2.TASK_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
