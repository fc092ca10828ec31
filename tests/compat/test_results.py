"""Persisted results: the state's result record survives a round trip through the server."""

from __future__ import annotations

from prefect import flow, task
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType

PAYLOAD = {"numbers": [1, 2, 3], "nested": {"ok": True, "text": "héllo"}, "none": None}


@task(persist_result=True)
def produce(token: str) -> dict:
    return {**PAYLOAD, "token": token}


@flow(persist_result=True)
def persisted_flow(token: str) -> dict:
    value = produce(token)
    return {"task": value, "flow": token}


def test_persisted_result_round_trip(uid, sync_client, wait_for):
    state = persisted_flow.with_options(name=f"compat-results-{uid}")(uid, return_state=True)
    assert state.is_completed()
    expected = {"task": {**PAYLOAD, "token": uid}, "flow": uid}
    assert state.result() == expected

    # the Completed state read back from the server still references the
    # persisted result, so the client can load the value from it
    fr = sync_client.read_flow_run(state.state_details.flow_run_id)
    assert fr.state_type == StateType.COMPLETED
    assert fr.state.data is not None
    # locally the state holds the full ResultRecord; the server returns its metadata
    assert fr.state.data.storage_key == state.data.metadata.storage_key
    assert fr.state.result() == expected

    # same through the state history endpoint
    final = max(sync_client.read_flow_run_states(fr.id), key=lambda s: s.timestamp)
    assert final.type == StateType.COMPLETED
    assert final.result() == expected

    # and for the task run, whose state arrives via events
    def completed_task():
        trs = sync_client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id]))
        )
        return trs if len(trs) == 1 and trs[0].state_type == StateType.COMPLETED else None

    (tr,) = wait_for(completed_task, timeout=30, message="persisted task run")
    assert tr.state.data is not None
    assert tr.state.result() == {**PAYLOAD, "token": uid}


def test_unpersisted_result_is_still_returned(uid, sync_client):
    f = persisted_flow.with_options(name=f"compat-nopersist-{uid}", persist_result=False)
    state = f(uid, return_state=True)
    assert state.result() == {"task": {**PAYLOAD, "token": uid}, "flow": uid}
    fr = sync_client.read_flow_run(state.state_details.flow_run_id)
    assert fr.state_type == StateType.COMPLETED
