"""`GET /flow_runs/{id}/logs/download`: a run's logs as CSV (the UI's
download button), in Python's csv dialect and Prefect's headers."""

from __future__ import annotations

import httpx


def test_logs_download_is_the_runs_logs_as_csv(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"logs-dl-{uid}")
    with httpx.Client(base_url=api_url) as http:
        run = http.post("/flow_runs/", json={"flow_id": str(flow_id), "name": f"run é {uid}"}).json()
        task_id = "6b2f6bd8-c8e6-4d16-a4f4-4b1ba27b43e8"
        logs = [
            {"name": "n", "level": 20, "message": "second, with a comma", "timestamp": "2026-01-01T00:00:01Z", "flow_run_id": run["id"]},
            {"name": "n", "level": 40, "message": 'first "quoted"\nand two lines', "timestamp": "2026-01-01T00:00:00.250000Z",
             "flow_run_id": run["id"], "task_run_id": task_id},
            {"name": "n", "level": 10, "message": "plain", "timestamp": "2026-01-01T00:00:02Z", "flow_run_id": run["id"]},
            {"name": "n", "level": 20, "message": "other run", "timestamp": "2026-01-01T00:00:00Z"},
        ]
        assert http.post("/logs/", json=logs).status_code == 201
        response = http.get(f"/flow_runs/{run['id']}/logs/download")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            f"attachment; filename=\"flow-run-logs.csv\"; filename*=UTF-8''run%20%C3%A9%20{uid}-logs.csv"
        )
        rid = run["id"]
        assert response.text == (
            "timestamp,level,flow_run_id,task_run_id,message\r\n"
            f'2026-01-01 00:00:00.250000+00:00,40,{rid},{task_id},"first ""quoted""\nand two lines"\r\n'
            f'2026-01-01 00:00:01+00:00,20,{rid},,"second, with a comma"\r\n'
            f"2026-01-01 00:00:02+00:00,10,{rid},,plain\r\n"
        )
        missing = http.get("/flow_runs/6b2f6bd8-c8e6-4d16-a4f4-4b1ba27b43e9/logs/download")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Flow run not found"})
