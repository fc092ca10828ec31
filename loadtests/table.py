"""Render loadtests/compare.sh results (one JSON object per line) as markdown tables.

    python3 loadtests/table.py target/loadtests/<run>/results.jsonl
"""

import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for r in rows:
    by.setdefault(r.get("label", "?"), {})[r.get("scenario")] = r


def get(r, path):
    for p in path.split("."):
        if not isinstance(r, dict):
            return None
        r = r.get(p)
    return r


# (title, scenario, path, higher_is_better, scale, fmt)
METRICS = [
    ("start-up to healthy (s)", "server", "startup_s", False, 1, "{:.2f}"),
    ("RSS after start (MB)", "server", "rss_idle_kb", False, 1 / 1024, "{:.0f}"),
    ("RSS peak, VmHWM (MB)", "server", "rss_peak_kb", False, 1 / 1024, "{:.0f}"),
    ("ingest: events/s end to end (send → all visible)", "ingest", "e2e_rate", True, 1, "{:.0f}"),
    ("ingest: events/s send side", "ingest", "send_rate", True, 1, "{:.0f}"),
    ("ingest: seconds until all visible", "ingest", "e2e_seconds", False, 1, "{:.2f}"),
    ("seed-events: events/s end to end", "seed-events", "e2e_rate", True, 1, "{:.0f}"),
    ("filter (last hour, flow-run.*, limit 50): req/s", "filter", "rate", True, 1, "{:.1f}"),
    ("filter: p50 / p95 / p99 (ms)", "filter", "latency.p50_ms|latency.p95_ms|latency.p99_ms", False, 1, "{:.1f}"),
    ("filter-1m: events seeded into the read model (SQL, not timed against the server)", "seed-events-sql", "events", None, 1, "{:.0f}"),
    ("filter-1m: of them in the last hour", "seed-events-sql", "events_last_hour", None, 1, "{:.0f}"),
    ("filter-1m (last hour, flow-run.*, limit 50): req/s", "filter-1m", "rate", True, 1, "{:.1f}"),
    ("filter-1m: p50 / p95 / p99 (ms)", "filter-1m", "latency.p50_ms|latency.p95_ms|latency.p99_ms", False, 1, "{:.1f}"),
    ("filter-1m: total matched (last response)", "filter-1m", "matched_total", None, 1, "{:.0f}"),
    ("lifecycle: flow runs/s", "lifecycle", "rate", True, 1, "{:.1f}"),
    ("lifecycle: create flow run p50 / p99 (ms)", "lifecycle", "create.p50_ms|create.p99_ms", False, 1, "{:.1f}"),
    ("lifecycle: set_state p50 / p99 (ms)", "lifecycle", "set_state.p50_ms|set_state.p99_ms", False, 1, "{:.1f}"),
    ("lifecycle: task runs recorded / expected", "lifecycle", "task_runs_recorded", None, 1, "{:.0f}"),
    ("workers: scheduled runs created in the setup", "workers", "runs_created", None, 1, "{:.0f}"),
    ("workers: setup, scheduled runs created via deployments (s)", "workers", "setup_s", False, 1, "{:.1f}"),
    ("workers: get_scheduled_flow_runs p50 / p95 / p99 (ms)", "workers", "poll.p50_ms|poll.p95_ms|poll.p99_ms", False, 1, "{:.1f}"),
    ("workers: polls/s served", "workers", "polls_per_s", True, 1, "{:.1f}"),
    ("scheduler: create deployments (s)", "scheduler", "create_s", False, 1, "{:.1f}"),
    ("scheduler: until every deployment has its runs (s)", "scheduler", "all_scheduled_s", False, 1, "{:.1f}"),
    ("real client: @flow runs x @tasks, wall time (s)", "real-client", "wall_s", False, 1, "{:.1f}"),
    ("real client: flow runs/s", "real-client", "flows_per_s", True, 1, "{:.2f}"),
    ("real client: completed / task runs recorded / 5xx", "real-client", "completed|task_runs|server_errors", None, 1, "{:.0f}"),
    ("dashboard: setup, flow runs + task runs seeded (s)", "dashboard", "setup_s", False, 1, "{:.1f}"),
    ("dashboard: query mix req/s", "dashboard", "rate", True, 1, "{:.1f}"),
    ("dashboard: all queries p50 / p95 / p99 (ms)", "dashboard", "latency.p50_ms|latency.p95_ms|latency.p99_ms", False, 1, "{:.1f}"),
    ("dashboard: /ui/flow_runs/history p50 / p99 (ms)", "dashboard", "endpoints.ui_flow_runs_history.p50_ms|endpoints.ui_flow_runs_history.p99_ms", False, 1, "{:.1f}"),
    ("dashboard: /flow_runs/count p50 / p99 (ms)", "dashboard", "endpoints.flow_runs_count.p50_ms|endpoints.flow_runs_count.p99_ms", False, 1, "{:.1f}"),
    ("dashboard: /task_runs/count p50 / p99 (ms)", "dashboard", "endpoints.task_runs_count.p50_ms|endpoints.task_runs_count.p99_ms", False, 1, "{:.1f}"),
    ("dashboard: /task_runs/history p50 / p99 (ms)", "dashboard", "endpoints.task_runs_history.p50_ms|endpoints.task_runs_history.p99_ms", False, 1, "{:.1f}"),
    ("replay server --verify: events replayed", "replay", "events", None, 1, "{:.0f}"),
    ("replay server --verify: events/s (whole command)", "replay", "rate", True, 1, "{:.0f}"),
    ("errors seen by the load generator", "*", "errors", None, 1, "{:.0f}"),
]


def values(label, scenario, path, scale):
    if scenario == "*":
        total = sum(r.get("errors", 0) or 0 for r in by.get(label, {}).values())
        return [total], None
    r = by.get(label, {}).get(scenario)
    if r is None:
        return None, "not run"
    if r.get("failed"):
        return None, "FAILED: " + str(r["failed"])[:60]
    out = []
    for p in path.split("|"):
        v = get(r, p)
        out.append(None if v is None else v * scale)
    note = None
    if r.get("complete") is False:
        if scenario in ("ingest", "seed-events"):
            note = f"incomplete: {r.get('stored')}/{r.get('events')} stored in {r.get('e2e_seconds')} s"
        elif scenario == "lifecycle":
            note = f"incomplete: {r.get('completed')}/{r.get('flows')} runs"
        elif scenario == "dashboard":
            note = f"incomplete: {r.get('rounds_done')}/{r.get('clients', 0) * r.get('rounds', 0)} rounds"
        else:
            note = f"incomplete: {r.get('ok')}/{r.get('requests')} ok"
    return out, note


def cell(label, m):
    title, scenario, path, hib, scale, fmt = m
    vals, note = values(label, scenario, path, scale)
    if vals is None:
        return note
    s = " / ".join("–" if v is None else fmt.format(v) for v in vals)
    if title.startswith("lifecycle: task runs"):
        r = by[label]["lifecycle"]
        s = f"{r.get('task_runs_recorded')} / {r.get('flows', 0) * r.get('tasks_per_flow', 0)}"
        note = None if r.get("task_runs_recorded") == r.get("flows", 0) * r.get("tasks_per_flow", 0) else note
    if note and not title.startswith("errors"):
        s += f" ({note})"
    return s


def advantage(a_label, b_label, m):
    title, scenario, path, hib, scale, fmt = m
    if hib is None:
        return ""
    a, na = values(a_label, scenario, path, scale)
    b, nb = values(b_label, scenario, path, scale)
    if not a or not b:
        return "n/a"
    if na or nb:
        return "n/a (incomplete run)"
    parts = []
    for x, y in zip(a, b):
        if x is None or y is None or x <= 0 or y <= 0:
            parts.append("n/a")
        else:
            parts.append(f"{(x / y if hib else y / x):.1f}×")
    return " / ".join(parts)


labels = list(by)
for backend in ("sqlite", "postgres"):
    rust = f"rust-{backend}-memory"
    nats = f"rust-{backend}-nats"
    py = f"python-{backend}-memory"
    cols = [(rust, "prefect-server")]
    if nats in by:
        cols.append((nats, "prefect-server + NATS"))
    cols.append((py, "Python Prefect 3.8.8"))
    if not any(c in by for c, _ in cols):
        continue
    print(f"\n### {backend}\n")
    print("| metric | " + " | ".join(n for _, n in cols) + " | prefect-server advantage (×, >1 = better) |")
    print("|---|" + "---|" * len(cols) + "---|")
    for m in METRICS:
        if m[1] != "*" and not any(m[1] in by.get(c, {}) for c, _ in cols):
            continue  # a scenario this run did not include
        print(f"| {m[0]} | " + " | ".join(cell(c, m) if c in by else "not run" for c, _ in cols) + f" | {advantage(rust, py, m)} |")
    for c, n in cols:
        kinds = {}
        for r in by.get(c, {}).values():
            for k, v in (r.get("error_kinds") or {}).items():
                kinds[k] = kinds.get(k, 0) + v
        if kinds:
            print(f"\n{n} errors: " + "; ".join(f"{k} ×{v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]))
