"""Plain flows: creation, parameters, tasks, and the flow-run record the server keeps."""

from __future__ import annotations

import asyncio
import datetime as dt

from prefect import flow, get_client, task
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType


@flow
def returns_value():
    return 42


@flow
def with_params(a: int, b: str = "default", c: list | None = None):
    return {"a": a, "b": b, "c": c}


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def double(x: int) -> int:
    return x * 2


@task
def describe(x: int) -> str:
    return f"value={x}"


@flow
def three_tasks(n: int):
    s = add(n, 1)
    d = double(s)
    return describe(d)


def _flow_run_id(state):
    fr_id = state.state_details.flow_run_id
    assert fr_id is not None, state
    return fr_id


def test_plain_flow_returns_value(uid):
    f = returns_value.with_options(name=f"compat-plain-{uid}")
    assert f() == 42


def test_plain_flow_run_record(uid, sync_client):
    name = f"compat-record-{uid}"
    state = returns_value.with_options(name=name)(return_state=True)
    assert state.is_completed()
    assert state.result() == 42

    fr = sync_client.read_flow_run(_flow_run_id(state))
    assert fr.state is not None
    assert fr.state.type == StateType.COMPLETED
    assert fr.state.name == "Completed"
    assert fr.state_type == StateType.COMPLETED
    assert fr.state_name == "Completed"
    assert fr.run_count == 1
    assert fr.start_time is not None and fr.end_time is not None
    assert fr.start_time <= fr.end_time
    assert fr.start_time.tzinfo is not None
    assert fr.expected_start_time is not None
    assert isinstance(fr.total_run_time, dt.timedelta)
    assert fr.total_run_time >= dt.timedelta(0)
    assert fr.total_run_time <= (fr.end_time - fr.start_time) + dt.timedelta(seconds=1)
    assert fr.parent_task_run_id is None
    assert fr.empirical_policy.retries in (0, None)

    flow_obj = sync_client.read_flow(fr.flow_id)
    assert flow_obj.name == name
    assert flow_obj.id == fr.flow_id

    # the state history is PENDING -> RUNNING -> COMPLETED
    states = sync_client.read_flow_run_states(fr.id)
    assert [s.type for s in sorted(states, key=lambda s: s.timestamp)] == [
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]
    assert all(s.state_details.flow_run_id == fr.id for s in states)


def test_flow_parameters_round_trip(uid, sync_client):
    f = with_params.with_options(name=f"compat-params-{uid}")
    state = f(7, b="hello", c=[1, "two", None], return_state=True)
    assert state.result() == {"a": 7, "b": "hello", "c": [1, "two", None]}

    fr = sync_client.read_flow_run(_flow_run_id(state))
    assert fr.parameters == {"a": 7, "b": "hello", "c": [1, "two", None]}
    assert fr.state_type == StateType.COMPLETED


def test_flow_with_three_tasks(uid, sync_client, wait_for):
    f = three_tasks.with_options(name=f"compat-3tasks-{uid}")
    state = f(4, return_state=True)
    assert state.result() == "value=10"
    fr_id = _flow_run_id(state)

    fr = sync_client.read_flow_run(fr_id)
    assert fr.state_type == StateType.COMPLETED
    assert fr.run_count == 1

    # task runs reach the server as events, possibly after the flow finished
    flt = FlowRunFilter(id=FlowRunFilterId(any_=[fr_id]))

    def all_three_completed():
        trs = sync_client.read_task_runs(flow_run_filter=flt)
        if len(trs) == 3 and all(tr.state_type == StateType.COMPLETED for tr in trs):
            return trs
        return None

    trs = wait_for(all_three_completed, timeout=30, message="3 completed task runs")
    by_prefix = {tr.name.rsplit("-", 1)[0]: tr for tr in trs}
    assert set(by_prefix) == {"add", "double", "describe"}
    for tr in trs:
        assert tr.flow_run_id == fr_id
        assert tr.run_count == 1
        assert tr.state is not None and tr.state.name == "Completed"
        assert tr.start_time is not None and tr.end_time is not None
        # a task run can be read individually too
        assert sync_client.read_task_run(tr.id).id == tr.id


def test_read_flow_and_flow_by_name(uid, sync_client):
    name = f"compat-byname-{uid}"
    state = returns_value.with_options(name=name)(return_state=True)
    fr = sync_client.read_flow_run(_flow_run_id(state))

    by_name = sync_client.read_flow_by_name(name)
    by_id = sync_client.read_flow(fr.flow_id)
    assert by_name.id == by_id.id == fr.flow_id
    assert by_name.name == by_id.name == name
    assert by_name.created is not None

    # running the same flow again reuses the flow row (POST /flows/ is an upsert)
    state2 = returns_value.with_options(name=name)(return_state=True)
    fr2 = sync_client.read_flow_run(_flow_run_id(state2))
    assert fr2.flow_id == fr.flow_id
    assert fr2.id != fr.id


def test_async_client_reads_flow_run(uid):
    name = f"compat-async-{uid}"
    state = returns_value.with_options(name=name)(return_state=True)
    fr_id = _flow_run_id(state)

    async def read():
        async with get_client() as client:
            fr = await client.read_flow_run(fr_id)
            flow_obj = await client.read_flow_by_name(name)
            return fr, flow_obj

    fr, flow_obj = asyncio.run(read())
    assert fr.state_type == StateType.COMPLETED
    assert flow_obj.id == fr.flow_id
