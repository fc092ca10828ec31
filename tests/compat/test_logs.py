"""Run logs: batched POST /api/logs/ from the client's background worker."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import LogSort


@task
def noisy_task(token: str):
    get_run_logger().info("task logger says %s", token)
    print(f"task print {token}")


@flow(log_prints=True)
def logging_flow(token: str):
    logger = get_run_logger()
    logger.info("flow info %s", token)
    logger.warning("flow warning %s", token)
    print(f"flow print {token}")
    noisy_task(token)
    return token


def test_run_logger_and_prints_reach_api(uid, sync_client, wait_for):
    state = logging_flow.with_options(name=f"compat-logs-{uid}")(uid, return_state=True)
    assert state.is_completed()
    fr_id = state.state_details.flow_run_id

    wanted = {
        f"flow info {uid}",
        f"flow warning {uid}",
        f"flow print {uid}",
        f"task logger says {uid}",
        f"task print {uid}",
    }
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr_id]))

    def all_logs():
        logs = sync_client.read_logs(log_filter=log_filter, sort=LogSort.TIMESTAMP_ASC)
        return logs if wanted <= {log.message for log in logs} else None

    logs = wait_for(all_logs, timeout=30, message=f"log lines {sorted(wanted)}")
    by_message = {log.message: log for log in logs}

    assert all(log.flow_run_id == fr_id for log in logs)
    assert by_message[f"flow info {uid}"].level == 20
    assert by_message[f"flow warning {uid}"].level == 30
    assert by_message[f"flow info {uid}"].name == "prefect.flow_runs"
    assert by_message[f"flow info {uid}"].task_run_id is None
    assert by_message[f"flow print {uid}"].level == 20

    task_log = by_message[f"task logger says {uid}"]
    assert task_log.name == "prefect.task_runs"
    assert task_log.task_run_id is not None
    assert by_message[f"task print {uid}"].task_run_id == task_log.task_run_id

    # engine messages are shipped too
    assert any(m.startswith("Beginning flow run") for m in by_message)
    assert any("Finished in state Completed" in m for m in by_message)

    # sorted ascending by timestamp as requested
    stamps = [log.timestamp for log in logs]
    assert stamps == sorted(stamps)
    assert by_message[f"flow info {uid}"].timestamp <= by_message[f"flow warning {uid}"].timestamp


def test_logs_are_scoped_to_their_flow_run(uid, sync_client, wait_for):
    f = logging_flow.with_options(name=f"compat-logscope-{uid}")
    s1 = f(f"{uid}-one", return_state=True)
    s2 = f(f"{uid}-two", return_state=True)
    id1, id2 = s1.state_details.flow_run_id, s2.state_details.flow_run_id

    def logs_for(fr_id, token):
        logs = sync_client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fr_id]))
        )
        return logs if f"flow info {token}" in {log.message for log in logs} else None

    logs1 = wait_for(lambda: logs_for(id1, f"{uid}-one"), message="logs of run one")
    logs2 = wait_for(lambda: logs_for(id2, f"{uid}-two"), message="logs of run two")
    assert all(f"{uid}-two" not in log.message for log in logs1)
    assert all(f"{uid}-one" not in log.message for log in logs2)
