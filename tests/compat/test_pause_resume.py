"""Pausing a flow run from inside the flow and resuming it from outside,
through the real client (`prefect.flow_runs.pause_flow_run` /
`resume_flow_run`), and the answers of `POST /flow_runs/{id}/resume` for
runs that are not paused."""

from __future__ import annotations

import threading

import httpx
import pytest
from prefect import flow
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as current_run


@flow
def pausing_flow(tag: str) -> str:
    pause_flow_run(timeout=60, poll_interval=1, key=f"pause-{tag}")
    return f"resumed-{tag}-{current_run.id}"


def test_a_paused_flow_resumes_and_completes(uid, sync_client, wait_for):
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=pausing_flow(uid)), daemon=True)
    worker.start()

    def paused_run():
        runs = sync_client.read_flow_runs()
        for run in runs:
            if run.parameters.get("tag") == uid and run.state and run.state.type == StateType.PAUSED:
                return run
        return None

    run = wait_for(paused_run, timeout=60, message="the flow run to pause")
    assert run.state.name == "Paused"
    assert run.state.state_details.pause_key == f"pause-{uid}"

    resume_flow_run(run.id)
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert outcome["result"] == f"resumed-{uid}-{run.id}"
    final = sync_client.read_flow_run(run.id)
    assert final.state.type == StateType.COMPLETED
    names = [s.name for s in sync_client.read_flow_run_states(run.id)]
    assert names[-3:] == ["Paused", "Running", "Completed"], names


def test_resuming_a_run_that_is_not_paused_is_aborted(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"resume-{uid}")
    with httpx.Client(base_url=api_url) as http:
        run = http.post("/flow_runs/", json={"flow_id": str(flow_id)}).json()
        response = http.post(f"/flow_runs/{run['id']}/resume")
        assert response.status_code == 200
        assert response.json() == {
            "state": None,
            "status": "ABORT",
            "details": {"type": "abort_details", "reason": "Cannot resume a flow run that is not paused."},
        }
        # The run is left as it was.
        assert http.get(f"/flow_runs/{run['id']}").json()["state"]["type"] == "PENDING"


class Approval(RunInput):
    approved: bool
    note: str = ""


@flow
def approval_flow(tag: str):
    answer = pause_flow_run(wait_for_input=Approval, timeout=60, poll_interval=1)
    return answer.approved, answer.note


def test_a_flow_waiting_for_input_resumes_with_valid_input_only(uid, sync_client, wait_for):
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=approval_flow(uid)), daemon=True)
    worker.start()

    def paused_run():
        for run in sync_client.read_flow_runs():
            if run.parameters.get("tag") == uid and run.state and run.state.type == StateType.PAUSED:
                return run
        return None

    run = wait_for(paused_run, timeout=60, message="the flow run to pause for input")
    keyset = run.state.state_details.run_input_keyset
    assert set(keyset) == {"description", "response", "schema"}

    # Input that does not fit the schema the flow stored is rejected, and
    # the run stays paused.
    with pytest.raises(RuntimeError, match=r"Cannot resume this run: Reason: Validation failed for field 'approved'\. Failure reason: 'maybe' is not of type 'boolean'"):
        resume_flow_run(run.id, run_input={"approved": "maybe"})
    assert sync_client.read_flow_run(run.id).state.type == StateType.PAUSED

    # The input is hydrated first, as the UI's form sends it.
    resume_flow_run(run.id, run_input={"approved": {"__prefect_kind": "json", "value": "true"}, "note": "ok"})
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert outcome["result"] == (True, "ok")
    assert sync_client.read_flow_run(run.id).state.type == StateType.COMPLETED


def test_flow_run_input_routes(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"inputs-{uid}")
    with httpx.Client(base_url=api_url) as http:
        run_id = http.post("/flow_runs/", json={"flow_id": str(flow_id)}).json()["id"]
        created = http.post(f"/flow_runs/{run_id}/input", json={"key": "greeting-1", "value": '"hi"', "sender": "me"})
        assert (created.status_code, created.json()) == (201, None)
        http.post(f"/flow_runs/{run_id}/input", json={"key": "greeting-2", "value": '"there"'})
        http.post(f"/flow_runs/{run_id}/input", json={"key": "other", "value": "1"})

        dup = http.post(f"/flow_runs/{run_id}/input", json={"key": "greeting-1", "value": "x"})
        assert (dup.status_code, dup.json()) == (409, {"detail": "A flow run input with this key already exists."})

        read = http.get(f"/flow_runs/{run_id}/input/greeting-1")
        assert (read.status_code, read.text) == (200, '"hi"')
        assert read.headers["content-type"].startswith("text/plain")

        listed = http.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "greeting", "limit": 10}).json()
        assert [i["key"] for i in listed] == ["greeting-1", "greeting-2"]
        assert set(listed[0]) == {"id", "created", "updated", "flow_run_id", "key", "value", "sender"}
        assert (listed[0]["flow_run_id"], listed[0]["value"], listed[0]["sender"]) == (run_id, '"hi"', "me")
        assert [i["key"] for i in http.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "greeting"}).json()] == ["greeting-1"]
        excluded = http.post(f"/flow_runs/{run_id}/input/filter", json={"prefix": "greeting", "limit": 10, "exclude_keys": ["greeting-1"]})
        assert [i["key"] for i in excluded.json()] == ["greeting-2"]

        assert http.delete(f"/flow_runs/{run_id}/input/greeting-1").status_code == 204
        gone = http.get(f"/flow_runs/{run_id}/input/greeting-1")
        assert (gone.status_code, gone.json()) == (404, {"detail": "Flow run input not found"})
        assert http.delete(f"/flow_runs/{run_id}/input/greeting-1").status_code == 404
        # One stays behind, so the suite's closing replay check covers inputs.
