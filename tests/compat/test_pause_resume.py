"""Pausing a flow run from inside the flow and resuming it from outside,
through the real client (`prefect.flow_runs.pause_flow_run` /
`resume_flow_run`), and the answers of `POST /flow_runs/{id}/resume` for
runs that are not paused."""

from __future__ import annotations

import threading

import httpx
from prefect import flow
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import pause_flow_run, resume_flow_run
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
