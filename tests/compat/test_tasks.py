"""Task runs: retries, caching and failures. Task runs reach the server only as
events over /api/events/in (prefect 3.8.8), so every read-back waits on a condition."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.tasks import task_input_hash

_ATTEMPTS: dict[str, int] = {}


@task(retries=1, retry_delay_seconds=0)
def flaky(token: str) -> str:
    _ATTEMPTS[token] = _ATTEMPTS.get(token, 0) + 1
    if _ATTEMPTS[token] == 1:
        raise ValueError("fail once")
    return f"ok after {_ATTEMPTS[token]}"


@flow
def retry_flow(token: str):
    return flaky(token)


_CALLS: dict[str, int] = {}


@task(cache_key_fn=task_input_hash)
def cached_keyfn(token: str, x: int) -> int:
    _CALLS[token] = _CALLS.get(token, 0) + 1
    return x * 10


@flow
def keyfn_flow(token: str):
    return [cached_keyfn(token, 5), cached_keyfn(token, 5)]


@task(cache_policy=INPUTS)
def cached_inputs(token: str, x: int) -> int:
    _CALLS[token] = _CALLS.get(token, 0) + 1
    return x + 100


@flow
def inputs_flow(token: str):
    return [cached_inputs(token, 1), cached_inputs(token, 1), cached_inputs(token, 2)]


@task
def boom(token: str):
    raise RuntimeError(f"task failure {token}")


@task
def fine() -> str:
    return "fine"


@flow
def catching_flow(token: str):
    try:
        boom(token)
    except RuntimeError as exc:
        caught = str(exc)
    else:  # pragma: no cover
        caught = None
    return {"caught": caught, "after": fine()}


def _task_runs_when(client, wait_for, flow_run_id, predicate, message):
    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))

    def check():
        trs = client.read_task_runs(flow_run_filter=flt)
        return trs if predicate(trs) else None

    return wait_for(check, timeout=30, message=message)


def _by_expected_start(trs):
    return sorted(trs, key=lambda tr: (tr.expected_start_time, tr.start_time))


def test_task_retry_then_complete(uid, sync_client, wait_for):
    state = retry_flow.with_options(name=f"compat-taskretry-{uid}")(uid, return_state=True)
    assert state.is_completed(), state
    assert state.result() == "ok after 2"
    assert _ATTEMPTS[uid] == 2
    fr_id = state.state_details.flow_run_id

    fr = sync_client.read_flow_run(fr_id)
    assert fr.state_type == StateType.COMPLETED
    assert fr.run_count == 1  # task retries never rerun the flow

    trs = _task_runs_when(
        sync_client,
        wait_for,
        fr_id,
        lambda trs: len(trs) == 1 and trs[0].state_type == StateType.COMPLETED,
        "the flaky task run to be COMPLETED",
    )
    tr = trs[0]
    assert tr.name.startswith("flaky-")
    assert tr.run_count == 2
    assert tr.state.name == "Completed"
    assert tr.empirical_policy.retries == 1

    history = sync_client.read_task_run_states(tr.id)
    names = [s.name for s in sorted(history, key=lambda s: s.timestamp)]
    assert names[0] == "Pending"
    assert "Retrying" in names
    assert names[-1] == "Completed"


def test_cache_key_fn_second_call_cached(uid, sync_client, wait_for):
    state = keyfn_flow.with_options(name=f"compat-keyfn-{uid}")(uid, return_state=True)
    assert state.result() == [50, 50]
    assert _CALLS[uid] == 1  # the second call never ran the function
    fr_id = state.state_details.flow_run_id

    trs = _task_runs_when(
        sync_client,
        wait_for,
        fr_id,
        lambda trs: len(trs) == 2
        and sorted(tr.state_name or "" for tr in trs) == ["Cached", "Completed"],
        "one Completed and one Cached task run",
    )
    first, second = _by_expected_start(trs)
    assert first.state.name == "Completed"
    assert second.state.name == "Cached"
    for tr in trs:
        assert tr.state_type == StateType.COMPLETED
        assert tr.name.startswith("cached_keyfn-")
    # both states point at the same persisted result record (the cache entry):
    # the server must store and return the state's `data` unchanged
    first_data, second_data = first.state.data, second.state.data
    assert first_data is not None and second_data is not None
    assert first_data.storage_key == second_data.storage_key
    assert first.state.result() == second.state.result() == 50


def test_cache_policy_inputs(uid, sync_client, wait_for):
    state = inputs_flow.with_options(name=f"compat-inputs-{uid}")(uid, return_state=True)
    assert state.result() == [101, 101, 102]
    assert _CALLS[uid] == 2  # x=1 computed once, x=2 once
    fr_id = state.state_details.flow_run_id

    trs = _task_runs_when(
        sync_client,
        wait_for,
        fr_id,
        lambda trs: len(trs) == 3
        and sorted(tr.state_name or "" for tr in trs) == ["Cached", "Completed", "Completed"],
        "two Completed and one Cached task run",
    )
    ordered = _by_expected_start(trs)
    assert [tr.state.name for tr in ordered] == ["Completed", "Cached", "Completed"]
    assert all(tr.state_type == StateType.COMPLETED for tr in trs)


def test_failing_task_caught_by_flow(uid, sync_client, wait_for):
    state = catching_flow.with_options(name=f"compat-catch-{uid}")(uid, return_state=True)
    assert state.is_completed(), state
    assert state.result() == {"caught": f"task failure {uid}", "after": "fine"}
    fr_id = state.state_details.flow_run_id

    fr = sync_client.read_flow_run(fr_id)
    assert fr.state_type == StateType.COMPLETED

    trs = _task_runs_when(
        sync_client,
        wait_for,
        fr_id,
        lambda trs: len(trs) == 2
        and {tr.state_type for tr in trs} == {StateType.FAILED, StateType.COMPLETED},
        "one FAILED and one COMPLETED task run",
    )
    failed = next(tr for tr in trs if tr.state_type == StateType.FAILED)
    ok = next(tr for tr in trs if tr.state_type == StateType.COMPLETED)
    assert failed.name.startswith("boom-")
    assert failed.state.name == "Failed"
    assert failed.run_count == 1
    assert failed.end_time is not None
    assert ok.name.startswith("fine-")
