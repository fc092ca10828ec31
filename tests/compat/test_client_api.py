"""Direct client calls: creation, idempotency, filters, orchestration outcomes, deletion."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from prefect import flow
from prefect.client.schemas.actions import FlowRunCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Completed, Pending, Running, Scheduled


@flow
def api_flow(x: int = 0):
    return x


def _flow(uid: str, suffix: str = ""):
    return api_flow.with_options(name=f"compat-api-{uid}{suffix}")


def test_create_flow_run_defaults(uid, sync_client):
    fr = sync_client.create_flow_run(_flow(uid), parameters={"x": 3}, tags=["compat", uid])
    assert isinstance(fr, FlowRun)
    assert fr.state.type == StateType.PENDING
    assert fr.state.name == "Pending"
    assert fr.state_type == StateType.PENDING
    assert fr.run_count == 0
    assert fr.parameters == {"x": 3}
    assert sorted(fr.tags) == sorted(["compat", uid])
    assert fr.name  # server/client generated slug
    assert fr.start_time is None and fr.end_time is None

    again = sync_client.read_flow_run(fr.id)
    assert again.id == fr.id
    assert again.flow_id == fr.flow_id
    assert again.state.id == fr.state.id
    assert sync_client.read_flow(fr.flow_id).name == f"compat-api-{uid}"


def test_create_flow_run_idempotency_key(uid, sync_client):
    flow_id = sync_client.create_flow_run(_flow(uid)).flow_id
    key = f"idem-{uid}"
    body = FlowRunCreate(flow_id=flow_id, idempotency_key=key, parameters={"x": 1})
    payload = body.model_dump(mode="json", exclude_unset=True)

    first = sync_client.request("POST", "/flow_runs/", json=payload)
    second = sync_client.request("POST", "/flow_runs/", json=payload)
    assert first.status_code == 201
    assert second.status_code == 200
    run1 = FlowRun.model_validate(first.json())
    run2 = FlowRun.model_validate(second.json())
    assert run1.id == run2.id
    assert run1.idempotency_key == key
    # with no state in the body the server starts the run Pending, once
    assert run1.state.type == StateType.PENDING
    assert run2.state.id == run1.state.id
    assert len(sync_client.read_flow_run_states(run1.id)) == 1

    # the key is scoped to the flow: another flow gets its own run
    other_flow_id = sync_client.create_flow_run(_flow(uid, "-other")).flow_id
    other = sync_client.request(
        "POST",
        "/flow_runs/",
        json=FlowRunCreate(flow_id=other_flow_id, idempotency_key=key).model_dump(
            mode="json", exclude_unset=True
        ),
    )
    assert other.status_code == 201
    assert other.json()["id"] != str(run1.id)


def test_read_flow_runs_filters_sort_limit(uid, sync_client):
    tag = f"tag-{uid}"
    f = _flow(uid)
    r_a = sync_client.create_flow_run(f, name=f"a-{uid}", tags=[tag, "red"])
    r_b = sync_client.create_flow_run(f, name=f"b-{uid}", tags=[tag, "red", "blue"])
    r_c = sync_client.create_flow_run(f, name=f"c-{uid}", tags=[tag, "blue"])
    r_d = sync_client.create_flow_run(
        f,
        name=f"d-{uid}",
        tags=[tag],
        state=Scheduled(scheduled_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)),
    )
    # same tag, different flow: excluded by the flow-name filter
    r_other = sync_client.create_flow_run(_flow(uid, "-other"), name=f"e-{uid}", tags=[tag, "red"])

    assert sync_client.set_flow_run_state(r_b.id, Running()).status == SetStateStatus.ACCEPT
    assert sync_client.set_flow_run_state(r_c.id, Running()).status == SetStateStatus.ACCEPT
    assert sync_client.set_flow_run_state(r_c.id, Completed()).status == SetStateStatus.ACCEPT

    def names(runs):
        return [r.name for r in runs]

    mine = FlowRunFilterTags(all_=[tag])

    # tags all_
    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag, "red"])),
        sort=FlowRunSort.NAME_ASC,
    )
    assert names(runs) == [f"a-{uid}", f"b-{uid}", f"e-{uid}"]
    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag, "red", "blue"]))
    )
    assert [r.id for r in runs] == [r_b.id]

    # state type any_
    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=mine,
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.COMPLETED])
            ),
        ),
        sort=FlowRunSort.NAME_ASC,
    )
    assert names(runs) == [f"b-{uid}", f"c-{uid}"]
    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=mine,
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])),
        )
    )
    assert [r.id for r in runs] == [r_d.id]

    # flow name
    by_flow = FlowFilter(name=FlowFilterName(any_=[f"compat-api-{uid}"]))
    runs = sync_client.read_flow_runs(flow_filter=by_flow, sort=FlowRunSort.NAME_ASC)
    assert names(runs) == [f"a-{uid}", f"b-{uid}", f"c-{uid}", f"d-{uid}"]
    assert r_other.id not in {r.id for r in runs}
    assert sync_client.count_flow_runs(flow_filter=by_flow) == 4

    # sort + limit + offset
    runs = sync_client.read_flow_runs(flow_filter=by_flow, sort=FlowRunSort.NAME_DESC, limit=2)
    assert names(runs) == [f"d-{uid}", f"c-{uid}"]
    runs = sync_client.read_flow_runs(
        flow_filter=by_flow, sort=FlowRunSort.NAME_ASC, limit=2, offset=1
    )
    assert names(runs) == [f"b-{uid}", f"c-{uid}"]

    # run name like_ (substring match)
    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"c-{uid}"))
    )
    assert [r.id for r in runs] == [r_c.id]

    # combined flow + flow-run filters, AND semantics
    runs = sync_client.read_flow_runs(
        flow_filter=by_flow,
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["red"])),
        sort=FlowRunSort.NAME_ASC,
    )
    assert names(runs) == [f"a-{uid}", f"b-{uid}"]


def test_set_state_orchestration_outcomes(uid, sync_client):
    fr = sync_client.create_flow_run(_flow(uid))
    assert fr.state.type == StateType.PENDING

    res = sync_client.set_flow_run_state(fr.id, Running())
    assert res.status == SetStateStatus.ACCEPT
    assert res.state.type == StateType.RUNNING
    assert res.state.state_details.flow_run_id == fr.id
    running_state_id = res.state.id

    # RUNNING -> PENDING is refused by PreventPendingTransitions: an ABORT outcome,
    # not an HTTP error, and nothing is written
    res = sync_client.set_flow_run_state(fr.id, Pending())
    assert res.status == SetStateStatus.ABORT
    assert "cannot transition to a PENDING state" in res.details.reason
    assert res.state.type == StateType.RUNNING
    current = sync_client.read_flow_run(fr.id)
    assert current.state_type == StateType.RUNNING
    assert current.state.id == running_state_id
    assert current.run_count == 1
    assert current.start_time is not None

    res = sync_client.set_flow_run_state(fr.id, Completed())
    assert res.status == SetStateStatus.ACCEPT
    done = sync_client.read_flow_run(fr.id)
    assert done.state_type == StateType.COMPLETED
    assert done.end_time is not None
    assert [s.type for s in sorted(sync_client.read_flow_run_states(fr.id), key=lambda s: s.timestamp)] == [
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]

    # force=True bypasses the orchestration rules
    res = sync_client.set_flow_run_state(fr.id, Pending(), force=True)
    assert res.status == SetStateStatus.ACCEPT
    assert sync_client.read_flow_run(fr.id).state_type == StateType.PENDING


def test_set_state_duplicate_transition_id_rejected(uid, sync_client):
    fr = sync_client.create_flow_run(_flow(uid))
    body = {
        "state": {
            "type": "RUNNING",
            "name": "Running",
            "state_details": {"transition_id": str(uuid.uuid4())},
        },
        "force": False,
    }
    first = sync_client.request("POST", "/flow_runs/{id}/set_state", path_params={"id": fr.id}, json=body)
    second = sync_client.request("POST", "/flow_runs/{id}/set_state", path_params={"id": fr.id}, json=body)
    assert first.status_code == 201
    assert first.json()["status"] == "ACCEPT"
    # a retried request with the same transition id is a no-op (200, REJECT, current state)
    assert second.status_code == 200
    assert second.json()["status"] == "REJECT"
    assert second.json()["details"]["type"] == "reject_details"
    assert second.json()["state"]["id"] == first.json()["state"]["id"]
    assert len(sync_client.read_flow_run_states(fr.id)) == 2
    assert sync_client.read_flow_run(fr.id).run_count == 1


def test_set_state_wait_for_future_scheduled_time(uid, sync_client):
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    fr = sync_client.create_flow_run(_flow(uid), state=Scheduled(scheduled_time=when))
    assert fr.state.type == StateType.SCHEDULED
    assert fr.next_scheduled_start_time is not None
    assert abs((fr.next_scheduled_start_time - when).total_seconds()) < 1
    assert abs((fr.expected_start_time - when).total_seconds()) < 1

    res = sync_client.set_flow_run_state(fr.id, Running())
    assert res.status == SetStateStatus.WAIT
    assert 3500 <= res.details.delay_seconds <= 3600
    assert res.state.type == StateType.SCHEDULED
    assert sync_client.read_flow_run(fr.id).state_type == StateType.SCHEDULED


def test_missing_flow_run_raises_object_not_found(sync_client):
    missing = uuid.uuid4()
    with pytest.raises(ObjectNotFound):
        sync_client.read_flow_run(missing)
    with pytest.raises(ObjectNotFound):
        sync_client.set_flow_run_state(missing, Running())
    # read_flow / read_flow_by_name do not translate the 404 into ObjectNotFound in 3.8.8
    with pytest.raises(PrefectHTTPStatusError) as excinfo:
        sync_client.read_flow(uuid.uuid4())
    assert excinfo.value.response.status_code == 404
    with pytest.raises(PrefectHTTPStatusError) as excinfo:
        sync_client.read_flow_by_name(f"compat-no-such-flow-{uuid.uuid4().hex}")
    assert excinfo.value.response.status_code == 404


def test_delete_flow_run(uid, sync_client):
    fr = sync_client.create_flow_run(_flow(uid))
    keep = sync_client.create_flow_run(_flow(uid))
    sync_client.delete_flow_run(fr.id)
    with pytest.raises(ObjectNotFound):
        sync_client.read_flow_run(fr.id)
    with pytest.raises(ObjectNotFound):
        sync_client.delete_flow_run(fr.id)
    # only that run is gone
    assert sync_client.read_flow_run(keep.id).id == keep.id
    remaining = sync_client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[f"compat-api-{uid}"]))
    )
    assert [r.id for r in remaining] == [keep.id]
