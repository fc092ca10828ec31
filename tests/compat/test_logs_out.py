"""`/logs/out`: live logs, as `PrefectLogsSubscriber` and `FlowRunSubscriber`
(behind `prefect flow-run watch`) read them. Prefect streams logs only with
PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED and ..._STREAM_PUBLISHING_ENABLED set
(off by default; conftest.py sets both for the server it starts); this
server always streams them."""

from __future__ import annotations

import asyncio
import datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import FlowRunCreate, LogCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
from prefect.client.schemas.objects import Log
from prefect.events.subscribers import FlowRunSubscriber
from prefect.logging.clients import PrefectLogsSubscriber
from prefect.states import Completed, Running


def _log(run_id, message: str, level: int = 20) -> LogCreate:
    return LogCreate(name="compat", level=level, message=message, timestamp=datetime.datetime.now(datetime.timezone.utc), flow_run_id=run_id)


def _new_run(sync_client, flow_id) -> str:
    return sync_client.request("POST", "/flow_runs/", json=FlowRunCreate(flow_id=flow_id).model_dump(mode="json")).json()["id"]


async def _ping_until(client, run_id, seen: asyncio.Event) -> None:
    """Logs `ping` until the subscriber shows one: only then is it surely
    following (there is no backfill), without guessing a delay."""
    while not seen.is_set():
        await client.create_logs([_log(run_id, "ping")])
        try:
            await asyncio.wait_for(seen.wait(), 0.2)
        except asyncio.TimeoutError:
            pass


def test_a_logs_subscriber_gets_matching_logs_live(uid, sync_client):
    flow_id = sync_client.create_flow_from_name(f"compat-logs-out-{uid}")
    watched, other = _new_run(sync_client, flow_id), _new_run(sync_client, flow_id)

    async def scenario() -> list[str]:
        async with get_client() as client:
            flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[watched]), level=LogFilterLevel(ge_=20))
            received: list[str] = []
            seen = asyncio.Event()
            async with PrefectLogsSubscriber(filter=flt) as subscriber:
                pinger = asyncio.create_task(_ping_until(client, watched, seen))
                async for log in subscriber:
                    assert isinstance(log, Log)
                    if log.message == "ping":
                        if not seen.is_set():
                            seen.set()
                            await pinger
                            await client.create_logs([_log(watched, "first"), _log(other, "other run"), _log(watched, "too quiet", level=10)])
                            await client.create_logs([_log(watched, "second")])
                        continue
                    received.append(log.message)
                    if len(received) == 2:
                        break
            return received

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == ["first", "second"]


def test_flow_run_subscriber_interleaves_logs_and_events(uid, sync_client):
    flow_id = sync_client.create_flow_from_name(f"compat-watch-{uid}")
    run_id = _new_run(sync_client, flow_id)

    async def scenario() -> tuple[list[str], list[str]]:
        logs: list[str] = []
        events: list[str] = []
        seen = asyncio.Event()
        async with get_client() as client:
            async with FlowRunSubscriber(flow_run_id=run_id, straggler_timeout=1) as subscriber:
                await client.set_flow_run_state(run_id, Running())
                pinger = asyncio.create_task(_ping_until(client, run_id, seen))
                async for item in subscriber:
                    if isinstance(item, Log):
                        logs.append(item.message)
                        if not seen.is_set():
                            seen.set()
                            await pinger
                            await client.set_flow_run_state(run_id, Completed())
                    else:
                        events.append(item.event)
        return logs, events

    logs, events = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert logs and set(logs) == {"ping"}
    assert "prefect.flow-run.Completed" in events
