"""Real-client concurrency check: N flows of M tasks each, run from threads
with the real Prefect client against a running server, then read back.

    PREFECT_API_URL=http://127.0.0.1:4200/api python loadtests/concurrent_flows.py --flows 50 --tasks 100

Bounded by --flows x --tasks and by --timeout; talks only to PREFECT_API_URL
(which must be a loopback address). Prints wall time and whether every flow
and task run reached COMPLETED and no 5xx reached the client, then one JSON
line (scenario "real-client") for loadtests/compare.sh. --concurrency caps
how many flows run at once (default: all of them).
"""

import argparse
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--flows", type=int, default=50)
parser.add_argument("--tasks", type=int, default=100)
parser.add_argument("--timeout", type=float, default=600)
parser.add_argument("--concurrency", type=int, default=0)
parser.add_argument("--label", default="")
args = parser.parse_args()

api = os.environ.get("PREFECT_API_URL", "")
if urlparse(api).hostname not in ("127.0.0.1", "localhost", "::1"):
    sys.exit("PREFECT_API_URL must point at a loopback address")

import httpx  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId  # noqa: E402

server_errors = []


@task
def work(i: int) -> int:
    return i * 2


run_tag = uuid.uuid4().hex[:8]


@flow(name=f"load-{run_tag}")
def many_tasks(n: int) -> int:
    return sum(work(i) for i in range(n))


def one(_):
    state = many_tasks(args.tasks, return_state=True)
    return state


started = time.monotonic()
with ThreadPoolExecutor(max_workers=args.concurrency or args.flows) as pool:
    states = list(pool.map(one, range(args.flows), timeout=args.timeout))
elapsed = time.monotonic() - started

ids = [s.state_details.flow_run_id for s in states]
ok_states = sum(1 for s in states if s.is_completed())
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)
    completed = sum(1 for r in runs if r.state_type and r.state_type.value == "COMPLETED")
    deadline = time.monotonic() + 120
    while True:
        resp = httpx.post(f"{api}/task_runs/count", json={"flow_runs": {"id": {"any_": [str(i) for i in ids]}}})
        if resp.status_code >= 500:
            server_errors.append(resp.status_code)
        task_total = resp.json()
        if task_total >= args.flows * args.tasks or time.monotonic() > deadline:
            break
        time.sleep(0.5)

print(f"flows={args.flows} tasks/flow={args.tasks} wall={elapsed:.1f}s "
      f"completed_states={ok_states} completed_runs_read_back={completed} task_runs_recorded={task_total} "
      f"server_errors={len(server_errors)}")
print(json.dumps({
    "scenario": "real-client", "label": args.label, "flows": args.flows, "tasks": args.tasks,
    "concurrency": args.concurrency or args.flows, "wall_s": round(elapsed, 2),
    "flows_per_s": round(args.flows / elapsed, 2) if elapsed else None,
    "completed": ok_states, "read_back": completed, "task_runs": task_total, "server_errors": len(server_errors),
}))
ok = ok_states == args.flows and completed == args.flows and task_total == args.flows * args.tasks and not server_errors
sys.exit(0 if ok else 1)
