"""The issue's concurrency bar, with the real client: 50 flows of 100 tasks
each, run concurrently from threads, all finish and read back, and no 5xx
("database is locked" on SQLite) reaches the client. Runs in a subprocess so
its client state cannot leak into other tests."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fifty_concurrent_flows_of_a_hundred_tasks(api_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(tmp_path),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "1",
        }
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "loadtests" / "concurrent_flows.py"), "--flows", "50", "--tasks", "100", "--timeout", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith("flows=")]
    assert result.returncode == 0, (summary, result.stderr[-3000:])
    assert summary and "completed_runs_read_back=50" in summary[0] and "task_runs_recorded=5000" in summary[0], summary
    assert "server_errors=0" in summary[0], summary
