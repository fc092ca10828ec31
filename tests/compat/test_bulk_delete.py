"""`POST /flow_runs/bulk_delete`: deletes up to `limit` runs matching a
filter and lists them, with Prefect's bounds on `limit`."""

from __future__ import annotations

import httpx


def test_bulk_delete_removes_matching_runs_up_to_the_limit(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"bulk-{uid}")
    with httpx.Client(base_url=api_url) as http:
        tagged = {http.post("/flow_runs/", json={"flow_id": str(flow_id), "tags": [uid]}).json()["id"] for _ in range(3)}
        kept = http.post("/flow_runs/", json={"flow_id": str(flow_id), "tags": [f"other-{uid}"]}).json()["id"]
        match = {"flow_runs": {"tags": {"all_": [uid]}}}

        first = http.post("/flow_runs/bulk_delete", json={**match, "limit": 2})
        assert first.status_code == 200
        assert set(first.json()) == {"deleted"} and len(first.json()["deleted"]) == 2
        second = http.post("/flow_runs/bulk_delete", json=match).json()["deleted"]
        assert set(first.json()["deleted"]) | set(second) == tagged
        assert http.post("/flow_runs/bulk_delete", json=match).json() == {"deleted": []}
        for run_id in tagged:
            assert http.get(f"/flow_runs/{run_id}").status_code == 404
        assert http.get(f"/flow_runs/{kept}").status_code == 200

        too_many = http.post("/flow_runs/bulk_delete", json={**match, "limit": 51})
        assert too_many.status_code == 422
        (error,) = too_many.json()["exception_detail"]
        assert (error["type"], error["loc"], error["ctx"]) == ("less_than_equal", ["body", "limit"], {"le": 50})
        too_few = http.post("/flow_runs/bulk_delete", json={**match, "limit": 0})
        assert too_few.status_code == 422
        assert too_few.json()["exception_detail"][0]["type"] == "greater_than_equal"
        assert http.get(f"/flow_runs/{kept}").status_code == 200


def test_bulk_delete_of_flows_takes_their_runs_and_deployments(uid, sync_client, api_url):
    doomed = [sync_client.create_flow_from_name(f"bulkflow-{uid}-{i}") for i in range(2)]
    kept = sync_client.create_flow_from_name(f"keptflow-{uid}")
    deployment_id = sync_client.create_deployment(flow_id=doomed[0], name="d")
    with httpx.Client(base_url=api_url) as http:
        run = http.post("/flow_runs/", json={"flow_id": str(doomed[1])}).json()
        response = http.post("/flows/bulk_delete", json={"flows": {"name": {"like_": f"bulkflow-{uid}"}}})
        assert response.status_code == 200
        assert sorted(response.json()["deleted"]) == sorted(str(f) for f in doomed)
        for flow_id in doomed:
            assert http.get(f"/flows/{flow_id}").status_code == 404
        assert http.get(f"/deployments/{deployment_id}").status_code == 404
        assert http.get(f"/flow_runs/{run['id']}").status_code == 404
        assert http.get(f"/flows/{kept}").status_code == 200
        assert http.post("/flows/bulk_delete", json={"flows": {"name": {"like_": f"bulkflow-{uid}"}}}).json() == {"deleted": []}


def test_bulk_set_state_orchestrates_each_matching_run(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"bulkstate-{uid}")
    with httpx.Client(base_url=api_url) as http:
        runs = [http.post("/flow_runs/", json={"flow_id": str(flow_id), "tags": [uid]}).json()["id"] for _ in range(3)]
        # One run is already COMPLETED: whatever the policy decides for it,
        # the answer says what the run now is.
        http.post(f"/flow_runs/{runs[0]}/set_state", json={"state": {"type": "RUNNING"}})
        http.post(f"/flow_runs/{runs[0]}/set_state", json={"state": {"type": "COMPLETED"}})
        response = http.post(
            "/flow_runs/bulk_set_state",
            json={"flow_runs": {"tags": {"all_": [uid]}}, "state": {"type": "RUNNING", "message": "bulk"}},
        )
        assert response.status_code == 200
        results = {r["flow_run_id"]: r for r in response.json()["results"]}
        assert set(results) == set(runs)
        assert set(results[runs[1]]) == {"flow_run_id", "status", "state", "details"}
        for run_id in runs[1:]:
            assert results[run_id]["status"] == "ACCEPT"
            assert results[run_id]["state"]["type"] == "RUNNING"
            assert http.get(f"/flow_runs/{run_id}").json()["state"]["message"] == "bulk"
        first = results[runs[0]]
        now = http.get(f"/flow_runs/{runs[0]}").json()["state"]["type"]
        assert now == (first["state"]["type"] if first["status"] == "ACCEPT" else "COMPLETED")

        missing_state = http.post("/flow_runs/bulk_set_state", json={"flow_runs": {"tags": {"all_": [uid]}}})
        assert missing_state.status_code == 422
        none = http.post("/flow_runs/bulk_set_state", json={"flow_runs": {"tags": {"all_": [f"none-{uid}"]}}, "state": {"type": "RUNNING"}})
        assert none.json() == {"results": []}
