"""Runs last (files run in name order): after every scenario above has gone
through the real client, the server read model rebuilt from the event log
must equal the live one, row for row."""

import os
import signal
import subprocess

import pytest


def _stop(proc: subprocess.Popen) -> None:
    """Stops the server as an operator would before a rebuild; whatever it
    acknowledged is already in the log."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def test_read_model_rebuilds_identically_from_the_log(server):
    if server.kind != "rust":
        pytest.skip("replay is a prefect-server command")
    from conftest import _drain_client_workers

    # Let the client deliver what it has buffered, then stop the server.
    _drain_client_workers()
    _stop(server.process)
    result = subprocess.run(
        [server.extra["cmd"][0], "replay", "server", "--verify"],
        env=server.extra["env"],
        cwd=str(server.home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "rebuilt model matches the live model" in report
    # the scenarios above left real data behind: the check is not vacuous
    flow_runs = next(line for line in report.splitlines() if line.strip().startswith("flow_run "))
    assert int(flow_runs.split()[2]) > 10, report
