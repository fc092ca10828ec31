"""Failing flows and server-side flow retries (RetryFailedFlows)."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.client.schemas.objects import StateType

_ATTEMPTS: dict[str, int] = {}


class CompatError(Exception):
    pass


@flow
def always_fails(token: str):
    raise CompatError(f"boom {token}")


@flow(retries=2, retry_delay_seconds=0)
def fails_twice(token: str):
    _ATTEMPTS[token] = _ATTEMPTS.get(token, 0) + 1
    if _ATTEMPTS[token] <= 2:
        raise CompatError(f"attempt {_ATTEMPTS[token]} failed")
    return f"succeeded on attempt {_ATTEMPTS[token]}"


@flow(retries=1, retry_delay_seconds=0)
def never_succeeds(token: str):
    _ATTEMPTS[token] = _ATTEMPTS.get(token, 0) + 1
    raise CompatError(f"attempt {_ATTEMPTS[token]} failed")


def _names(client, flow_run_id):
    states = client.read_flow_run_states(flow_run_id)
    return [s.name for s in sorted(states, key=lambda s: s.timestamp)]


def test_failing_flow_state_and_exception(uid, sync_client):
    f = always_fails.with_options(name=f"compat-fail-{uid}")
    state = f(uid, return_state=True)
    assert state.is_failed()
    assert state.type == StateType.FAILED
    with pytest.raises(CompatError, match=f"boom {uid}"):
        state.result()

    fr = sync_client.read_flow_run(state.state_details.flow_run_id)
    assert fr.state_type == StateType.FAILED
    assert fr.state.name == "Failed"
    assert fr.run_count == 1
    assert fr.end_time is not None
    assert "boom" in (fr.state.message or "")
    # the exception is persisted with the state: reading it back re-raises it
    with pytest.raises(CompatError, match=f"boom {uid}"):
        fr.state.result()
    assert _names(sync_client, fr.id) == ["Pending", "Running", "Failed"]


def test_failing_flow_raises_without_return_state(uid):
    f = always_fails.with_options(name=f"compat-raise-{uid}")
    with pytest.raises(CompatError, match=f"boom {uid}"):
        f(uid)


def test_flow_retries_then_completes(uid, sync_client):
    f = fails_twice.with_options(name=f"compat-flowretry-{uid}")
    state = f(uid, return_state=True)
    assert state.is_completed(), state
    assert state.result() == "succeeded on attempt 3"
    assert _ATTEMPTS[uid] == 3

    fr = sync_client.read_flow_run(state.state_details.flow_run_id)
    assert fr.state_type == StateType.COMPLETED
    assert fr.run_count == 3
    assert fr.empirical_policy.retries == 2
    # the server rejected each Failed proposal with AwaitingRetry; the flow policy
    # has no RenameReruns rule, so reruns keep the name "Running" (unlike tasks)
    assert _names(sync_client, fr.id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",
        "AwaitingRetry",
        "Running",
        "Completed",
    ]
    states = sorted(sync_client.read_flow_run_states(fr.id), key=lambda s: s.timestamp)
    awaiting = [s for s in states if s.name == "AwaitingRetry"]
    assert all(s.type == StateType.SCHEDULED for s in awaiting)
    assert all(s.state_details.scheduled_time is not None for s in awaiting)


def test_flow_retries_exhausted(uid, sync_client):
    f = never_succeeds.with_options(name=f"compat-exhausted-{uid}")
    state = f(uid, return_state=True)
    assert state.is_failed(), state
    assert _ATTEMPTS[uid] == 2
    with pytest.raises(CompatError, match="attempt 2 failed"):
        state.result()

    fr = sync_client.read_flow_run(state.state_details.flow_run_id)
    assert fr.state_type == StateType.FAILED
    assert fr.run_count == 2
    assert _names(sync_client, fr.id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Running",
        "Failed",
    ]
