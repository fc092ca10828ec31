"""The worker channel (``/work_pools/{name}/workers/connect``, new in Prefect 3.8).

Two views: the real ``ProcessWorker`` (which, once the channel is healthy,
stops polling its pool and heartbeating over REST and relies on the channel
alone), and the raw protocol, with every server frame checked by the
client's own pydantic models (``prefect.client.schemas.worker_channel``).
The assertions hold against Prefect's own server too
(``PREFECT_COMPAT_SERVER=python``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate, WorkQueueCreate
from prefect.client.schemas.worker_channel import (
    WORK_POOL_WORKER_CHANNEL_VERSION,
    WorkerHeartbeatFrame,
    WorkerHelloFrame,
    WorkerReadyFrame,
    WorkPoolSnapshotFrame,
    validate_worker_channel_frame,
)
from prefect.types._datetime import now
from prefect.workers.process import ProcessWorker

REQUIRED = ["worker_heartbeat.v1", "work_pool_snapshot.v1"]


async def until(condition: Callable[[], Awaitable[Any]], timeout: float = 20.0, message: str = "condition") -> Any:
    """Polls an async condition without blocking the event loop the worker runs on."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.05)


def channel_url(api_url: str, pool: str) -> str:
    return api_url.replace("http://", "ws://", 1) + f"/work_pools/{pool}/workers/connect"


def hello(consumer_id: uuid.UUID, **overrides: Any) -> str:
    payload: dict[str, Any] = {
        "consumer_id": consumer_id,
        "worker_name": "channel-worker",
        "worker_type": "process",
        "heartbeat_interval_seconds": 30,
        "supported_channel_versions": [WORK_POOL_WORKER_CHANNEL_VERSION],
        "requested_capabilities": REQUIRED,
    }
    payload.update(overrides)
    frame = WorkerHelloFrame(type="worker.hello.v1", id=uuid.uuid4(), sent_at=now("UTC"), payload=payload)
    return frame.model_dump_json()


async def open_channel(api_url: str, pool: str, hello_text: str):
    """Connects, authenticates and says hello; returns the socket and the first reply."""
    ws = await connect(channel_url(api_url, pool), subprotocols=["prefect"], open_timeout=10)
    await ws.send(json.dumps({"type": "auth", "token": None}))
    assert json.loads(await ws.recv()) == {"type": "auth_success"}
    await ws.send(hello_text)
    return ws


async def close_of(ws) -> tuple[int, str]:
    """Reads until the server closes; returns its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout=15)
    return ws.close_code, ws.close_reason


def test_a_process_worker_runs_on_the_channel(api_url, uid):
    pool = f"wc-worker-{uid}"

    async def scenario():
        async with ProcessWorker(work_pool_name=pool, create_pool_if_not_found=True, heartbeat_interval_seconds=1) as worker:
            await worker.sync_with_backend()
            channel = worker._worker_channel
            assert channel.state.healthy and channel.snapshots_available
            # The channel created the pool, with the worker's default template.
            async with get_client() as client:
                created = await client.read_work_pool(pool)
                assert created.type == "process"
                assert created.base_job_template == ProcessWorker.get_default_base_job_template()
                first = (await client.read_workers_for_work_pool(pool))[0]

                # A pool change reaches the worker as a snapshot, with no REST poll.
                await client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=7))

                async def limit_seen():
                    return worker._work_pool.concurrency_limit == 7

                await until(limit_seen, message="the snapshot with the new limit")

                # Heartbeats arrive over the channel: the worker stays ONLINE and its time moves.
                async def heartbeat_moved():
                    workers = await client.read_workers_for_work_pool(pool)
                    return workers and workers[0].status.value == "ONLINE" and workers[0].last_heartbeat_time > first.last_heartbeat_time

                await until(heartbeat_moved, message="a heartbeat over the channel")
                assert channel.state.healthy

    asyncio.run(scenario())


def test_frames_follow_the_protocol_models(api_url, uid):
    pool = f"wc-raw-{uid}"

    async def scenario():
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            await client.create_work_queue(name="high", work_pool_name=pool, priority=1)
            consumer = uuid.uuid4()
            ws = await open_channel(api_url, pool, hello(consumer, work_queue_names=["high", "high"]))
            ready = validate_worker_channel_frame(json.loads(await ws.recv()))
            assert isinstance(ready, WorkerReadyFrame)
            assert ready.payload.consumer_id == consumer
            assert ready.payload.selected_channel_version == WORK_POOL_WORKER_CHANNEL_VERSION
            assert set(REQUIRED) <= set(ready.payload.accepted_capabilities)
            assert [q.name for q in ready.payload.resolved_work_queues] == ["high"]
            snapshot = ready.payload.initial_snapshot
            assert (snapshot.snapshot_sequence, snapshot.reason) == (1, "initial")
            assert snapshot.work_pool.name == pool and snapshot.work_pool.is_paused is False

            # The hello counted as a heartbeat.
            workers = await client.read_workers_for_work_pool(pool)
            assert [w.name for w in workers] == ["channel-worker"]

            beat = WorkerHeartbeatFrame(
                type="worker.heartbeat.v1",
                id=uuid.uuid4(),
                sent_at=now("UTC"),
                payload={"consumer_id": consumer, "worker_name": "channel-worker", "heartbeat_interval_seconds": 30},
            )
            await ws.send(beat.model_dump_json())

            await client.update_work_pool(pool, WorkPoolUpdate(is_paused=True))
            # Snapshots carry increasing sequence numbers; the pause is in the latest.
            latest = None
            while latest is None or latest.payload.work_pool.is_paused is not True:
                frame = validate_worker_channel_frame(json.loads(await asyncio.wait_for(ws.recv(), timeout=15)))
                assert isinstance(frame, WorkPoolSnapshotFrame)
                assert frame.payload.snapshot_sequence > (latest.payload.snapshot_sequence if latest else 1)
                latest = frame

            await client.delete_work_pool(pool)
            assert await close_of(ws) == (1008, "authorization_failed")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "case, expected",
    [
        ("unknown_pool", (1008, "authorization_failed")),
        ("unknown_queue", (1008, "authorization_failed")),
        ("unsupported_version", (1008, "unsupported_version")),
        ("malformed_hello", (1002, "protocol_error")),
    ],
)
def test_setup_refusals_close_with_prefects_reasons(api_url, uid, case, expected):
    pool = f"wc-refuse-{uid}"

    async def scenario():
        async with get_client() as client:
            if case != "unknown_pool":
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        consumer = uuid.uuid4()
        if case == "malformed_hello":
            text = json.dumps({"type": "worker.hello.v1", "id": str(uuid.uuid4()), "sent_at": "2026-01-01T00:00:00Z", "payload": {"worker_name": ""}})
        elif case == "unsupported_version":
            text = hello(consumer, supported_channel_versions=["work_pool_worker_channel.v0"])
        elif case == "unknown_queue":
            text = hello(consumer, work_queue_names=["no-such-queue"])
        else:
            text = hello(consumer)
        ws = await open_channel(api_url, pool, text)
        assert await close_of(ws) == expected

    asyncio.run(scenario())


def test_the_prefect_subprotocol_is_required(api_url, uid):
    async def scenario():
        try:
            ws = await connect(channel_url(api_url, f"wc-{uid}"), open_timeout=10)
        except InvalidStatus as exc:
            assert exc.response.status_code == 403
            return
        # A server may also accept and then close at once with a policy violation.
        assert (await close_of(ws))[0] == 1008

    asyncio.run(scenario())
