"""Events: the feed the UI, automations and subscribers live on.

Client-emitted events (emit_event, the engine's task-run events) and the
server's own prefect.flow-run.* events must be readable through
/events/filter (with paging) and /events/count-by, and arrive at a
get_events_subscriber() websocket client."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import httpx
from prefect import flow, get_client
from prefect.events import emit_event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.worker import EventsWorker


@flow
def evented_flow():
    return "ok"


def _emit_batch(rid: str, name: str, n: int) -> None:
    for i in range(n):
        emit_event(event=name, resource={"prefect.resource.id": rid, "prefect.resource.name": f"thing-{i}"}, payload={"i": i})
    EventsWorker.drain_all(timeout=30)


def _filter_body(rid: str) -> dict:
    return {"filter": {"resource": {"id": [rid]}, "order": "ASC"}, "limit": 50}


def test_filter_pages_through_all_events(uid, api_url, wait_for):
    rid = f"compat.thing.{uid}"
    _emit_batch(rid, f"compat.custom.{uid}", 60)
    with httpx.Client(timeout=30) as http:
        def first_page():
            page = http.post(f"{api_url}/events/filter", json=_filter_body(rid)).json()
            return page if page.get("total") == 60 else None

        page = wait_for(first_page, timeout=60, message="60 events to be queryable")
        assert len(page["events"]) == 50
        assert page["next_page"] and "/api/events/filter/next?page-token=" in page["next_page"]
        payload_is = [e["payload"]["i"] for e in page["events"]]
        assert payload_is == sorted(payload_is)
        second = http.get(page["next_page"]).json()
        assert len(second["events"]) == 10
        assert second["next_page"] is None
        ids = {e["id"] for e in page["events"]} | {e["id"] for e in second["events"]}
        assert len(ids) == 60
        assert all("received" in e for e in second["events"])

        bad = http.get(f"{api_url}/events/filter/next", params={"page-token": "not-a-token"})
        assert bad.status_code == 403
        too_many = http.post(f"{api_url}/events/filter", json={"filter": None, "limit": 51})
        assert too_many.status_code == 422


def test_count_by_event_and_day(uid, api_url, wait_for):
    rid = f"compat.counted.{uid}"
    _emit_batch(rid, f"compat.a.{uid}", 3)
    _emit_batch(rid, f"compat.b.{uid}", 2)
    body = {"filter": {"resource": {"id": [rid]}}}
    with httpx.Client(timeout=30) as http:
        def counts():
            resp = http.post(f"{api_url}/events/count-by/event", json=body)
            rows = resp.json()
            return rows if sum(r["count"] for r in rows) == 5 else None

        rows = wait_for(counts, timeout=60, message="5 events counted")
        by_value = {r["value"]: r["count"] for r in rows}
        assert by_value == {f"compat.a.{uid}": 3, f"compat.b.{uid}": 2}
        assert rows[0]["value"] == f"compat.a.{uid}"  # highest count first
        days = http.post(f"{api_url}/events/count-by/day", json=body).json()
        assert sum(r["count"] for r in days) == 5
        assert all({"value", "label", "count", "start_time", "end_time"} <= set(r) for r in days)
        bad = http.post(f"{api_url}/events/count-by/fortnight", json=body)
        assert bad.status_code == 422


def test_flow_run_events_are_in_the_feed(uid, api_url, sync_client, wait_for):
    state = evented_flow.with_options(name=f"compat-evented-{uid}")(return_state=True)
    fr = state.state_details.flow_run_id
    rid = f"prefect.flow-run.{fr}"
    with httpx.Client(timeout=30) as http:
        def names():
            page = http.post(f"{api_url}/events/filter", json=_filter_body(rid)).json()
            got = [e["event"] for e in page.get("events", []) if not e["event"].endswith(".heartbeat")]
            return got if "prefect.flow-run.Completed" in got else None

        got = wait_for(names, timeout=60, message="the run's state events")
    assert got[:3] == ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"]


def test_subscriber_receives_flow_run_and_custom_events(uid, wait_for):
    custom_name = f"compat.sub.{uid}"
    received: "queue.Queue[object]" = queue.Queue()
    stop = threading.Event()
    ready = threading.Event()

    async def subscribe():
        flt = EventFilter(event=EventNameFilter(prefix=["prefect.flow-run.", custom_name]))
        async with get_events_subscriber(filter=flt) as sub:
            ready.set()
            async for event in sub:
                received.put(event)
                if stop.is_set():
                    return

    thread = threading.Thread(target=lambda: asyncio.run(subscribe()), daemon=True)
    thread.start()
    assert ready.wait(30), "subscriber did not connect"

    state = evented_flow.with_options(name=f"compat-sub-{uid}")(return_state=True)
    fr = str(state.state_details.flow_run_id)
    emit_event(event=custom_name, resource={"prefect.resource.id": f"compat.sub.{uid}"})
    EventsWorker.drain_all(timeout=30)

    seen: list = []

    def got_all():
        while not received.empty():
            seen.append(received.get_nowait())
        mine = [e.event for e in seen if e.resource.id == f"prefect.flow-run.{fr}" and not e.event.endswith(".heartbeat")]
        custom = [e for e in seen if e.event == custom_name]
        done = "prefect.flow-run.Completed" in mine and custom
        return (mine, custom) if done else None

    mine, custom = wait_for(got_all, timeout=60, message="flow-run and custom events at the subscriber")
    stop.set()
    assert mine[:3] == ["prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"]
    assert len(custom) == 1
    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
