"""Background tasks: `task.delay()` schedules a deferred task run, a task
worker subscribed through `/task_runs/subscriptions/scheduled` runs it, and
the caller's future gets the result. The worker is a separate process
(`prefect.task_worker.serve`), as `prefect task serve` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from background_task_defs import add, shout

HERE = Path(__file__).resolve().parent

WORKER = """
import sys
sys.path.insert(0, {here!r})
from prefect.task_worker import serve
from background_task_defs import add, shout
serve(add, shout, timeout=120)
"""


@pytest.fixture
def task_worker(server):
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER.format(here=str(HERE))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _workers(sync_client, keys=None):
    body = {"task_worker_filter": {"task_keys": keys}} if keys is not None else None
    return sync_client.request("POST", "/task_workers/filter", json=body).json()


def test_delayed_tasks_run_on_a_task_worker(task_worker, sync_client, wait_for):
    # Given a task worker serving two tasks
    workers = wait_for(lambda: _workers(sync_client, [add.task_key]), timeout=60, message="the task worker subscribes")
    assert set(workers[0]["task_keys"]) == {add.task_key, shout.task_key}
    # When tasks are delayed
    futures = [add.delay(i, 10) for i in range(3)] + [shout.delay("hi")]
    # Then the worker runs each once and the callers get the results
    assert [f.result(timeout=90) for f in futures] == [10, 11, 12, "HI!"]
    for f in futures:
        run = sync_client.request("GET", f"/task_runs/{f.task_run_id}").json()
        assert run["state_type"] == "COMPLETED"
        assert run["run_count"] == 1


def test_a_task_delayed_before_any_worker_runs_once_one_subscribes(server, sync_client, wait_for, request):
    # Given a delayed task with no worker to run it
    future = add.delay(1, 2)
    run = sync_client.request("GET", f"/task_runs/{future.task_run_id}").json()
    assert run["state_type"] == "SCHEDULED"
    assert run["state"]["state_details"]["deferred"] is True
    # When a worker starts
    request.getfixturevalue("task_worker")
    # Then it picks the waiting run up
    assert future.result(timeout=90) == 3


def test_task_workers_filter_without_a_worker_lists_none_for_an_unknown_key(sync_client):
    assert _workers(sync_client, ["no-such-task-key"]) == []
