"""Deployments, work pools, workers and the scheduler, through the real client
and CLI: ``prefect work-pool create``, ``flow.from_source(...).deploy``,
``run_deployment``, ``prefect worker start``, ``flow.serve()``, schedules and
cancellation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from prefect import flow
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.states import Cancelling

PREFECT_CLI = str(Path(sys.executable).parent / "prefect")

FLOWS = '''
import time
from prefect import flow, task

@task
def add(x, y):
    return x + y

@flow
def compat_add(n: int = 1):
    return add(n, 1)

@flow
def compat_sleep(seconds: float = 120):
    time.sleep(seconds)
'''


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    src = tmp_path / "flows"
    src.mkdir()
    (src / "compat_flows.py").write_text(FLOWS)
    return src


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PREFECT_CLI, *args], capture_output=True, text=True, timeout=timeout)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def create_pool(name: str) -> None:
    r = cli("work-pool", "create", name, "--type", "process")
    assert r.returncode == 0, r.stdout + r.stderr


def deployment_runs(client, deployment_id):
    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_deploy_then_worker_run_once_completes(sync_client, uid, flow_dir, wait_for):
    pool = f"compat-pool-{uid}"
    create_pool(pool)
    deployment_id = flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_add").deploy(
        name=f"dep-{uid}", work_pool_name=pool, build=False, push=False
    )
    run = run_deployment(f"compat-add/dep-{uid}", parameters={"n": 41}, timeout=0)
    assert run.state.is_scheduled()
    assert run.deployment_id == deployment_id
    assert run.parameters == {"n": 41}

    r = cli("worker", "start", "--pool", pool, "--type", "process", "--run-once")
    assert r.returncode == 0, r.stdout + r.stderr

    final = wait_for(lambda: (fr := sync_client.read_flow_run(run.id)).state.is_final() and fr, timeout=60, message="run to finish")
    assert final.state.is_completed(), final.state
    assert (final.work_pool_name, final.work_queue_name) == (pool, "default")
    # Task-run states arrive as events over the flow process's socket.
    task_runs = wait_for(
        lambda: [t for t in sync_client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))) if t.state and t.state.is_final()],
        timeout=30,
        message="the run's task run recorded",
    )
    assert [t.state.type.value for t in task_runs] == ["COMPLETED"]
    # The worker's poll marks the deployment and the queue ready.
    assert sync_client.read_deployment(deployment_id).status.value == "READY"
    queue = sync_client.read_work_queue_by_name("default", work_pool_name=pool)
    assert queue.last_polled is not None and queue.status.value == "READY"


def test_a_schedule_produces_runs_and_rescheduling_never_duplicates(sync_client, uid, flow_dir, wait_for, api_url):
    pool = f"compat-sched-{uid}"
    create_pool(pool)
    deployment_id = flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_add").deploy(
        name=f"hourly-{uid}", work_pool_name=pool, build=False, push=False, interval=3600, parameters={"n": 7}
    )
    # The scheduler's fast loop picks up a new deployment within seconds:
    # at least 3 runs (PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS) covering an hour.
    runs = wait_for(lambda: (rs := deployment_runs(sync_client, deployment_id)) and len(rs) >= 3 and rs, timeout=30, message="scheduled runs")
    assert len(runs) == 3
    for r in runs:
        assert r.state.is_scheduled() and r.auto_scheduled
        assert "auto-scheduled" in r.tags
        assert r.parameters == {"n": 7}
        assert r.created_by.type == "SCHEDULE"
    times = sorted(r.expected_start_time for r in runs)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [3600.0, 3600.0]
    keys = {r.idempotency_key for r in runs}
    assert len(keys) == 3

    # Scheduling the same deployment again (what a restarted or second
    # scheduler does) adds nothing.
    for _ in range(2):
        resp = httpx.post(f"{api_url}/deployments/{deployment_id}/schedule", json={})
        assert resp.status_code == 200, resp.text
    assert len(deployment_runs(sync_client, deployment_id)) == 3

    # Pausing removes the future auto-scheduled runs.
    sync_client.pause_deployment(deployment_id)
    assert deployment_runs(sync_client, deployment_id) == []


def test_serve_runs_a_deployment_triggered_with_run_deployment(sync_client, uid, flow_dir, wait_for):
    name = f"served-{uid}"
    script = flow_dir / "serve_it.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from compat_flows import compat_add

            if __name__ == "__main__":
                compat_add.serve(name={name!r})
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=flow_dir,
        env=subprocess_env(PREFECT_RUNNER_POLL_FREQUENCY="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: sync_client.read_deployment_by_name(f"compat-add/{name}"), timeout=60, message="served deployment")
        run = run_deployment(f"compat-add/{name}", parameters={"n": 2}, timeout=120, poll_interval=1)
        assert run.state.is_completed(), run.state
        assert run.parameters == {"n": 2}
        # The served process reports its task run's states as events over
        # its own socket, which may land after the flow run's last state.
        task_runs = wait_for(
            lambda: [t for t in sync_client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))) if t.state and t.state.is_final()],
            timeout=30,
            message="the served run's task run recorded",
        )
        assert [t.state.type.value for t in task_runs] == ["COMPLETED"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_cancelling_a_running_deployment_run_ends_it_cancelled(sync_client, uid, flow_dir, wait_for):
    pool = f"compat-cancel-{uid}"
    create_pool(pool)
    flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_sleep").deploy(
        name=f"sleepy-{uid}", work_pool_name=pool, build=False, push=False
    )
    run = run_deployment(f"compat-sleep/sleepy-{uid}", parameters={"seconds": 300}, timeout=0)
    worker = subprocess.Popen(
        [PREFECT_CLI, "worker", "start", "--pool", pool, "--type", "process"],
        env=subprocess_env(PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_CANCELLATION_POLL_SECONDS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: sync_client.read_flow_run(run.id).state.is_running(), timeout=120, message="run to start")
        sync_client.set_flow_run_state(run.id, Cancelling())
        final = wait_for(lambda: (fr := sync_client.read_flow_run(run.id)).state.is_final() and fr, timeout=120, message="run to be cancelled")
        assert final.state.is_cancelled(), final.state
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
