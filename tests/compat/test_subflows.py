"""Subflows: the parent's placeholder task run and the child's link to it."""

from __future__ import annotations

from prefect import flow, task
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentTaskRunId,
)
from prefect.client.schemas.objects import StateType


@task
def square(n: int) -> int:
    return n * n


@flow
def child(n: int) -> int:
    return square(n)


@flow
def parent(child_name: str, n: int):
    child_flow = child.with_options(name=child_name)
    child_state = child_flow(n, return_state=True)
    return {
        "value": child_state.result(),
        "child_flow_run_id": str(child_state.state_details.flow_run_id),
    }


def test_subflow_links_to_parent_task_run(uid, sync_client, wait_for):
    child_name = f"compat-child-{uid}"
    state = parent.with_options(name=f"compat-parent-{uid}")(child_name, 6, return_state=True)
    assert state.is_completed(), state
    out = state.result()
    assert out["value"] == 36
    parent_id = state.state_details.flow_run_id
    child_id = out["child_flow_run_id"]

    parent_run = sync_client.read_flow_run(parent_id)
    child_run = sync_client.read_flow_run(child_id)
    assert parent_run.state_type == StateType.COMPLETED
    assert child_run.state_type == StateType.COMPLETED
    assert parent_run.parent_task_run_id is None

    # the child points at a task run that belongs to the parent's flow run
    assert child_run.parent_task_run_id is not None
    placeholder = sync_client.read_task_run(child_run.parent_task_run_id)
    assert placeholder.flow_run_id == parent_run.id
    assert placeholder.name.startswith(f"{child_name}-")

    # every child state carries the placeholder id (UpdateSubflowStateDetails)
    assert child_run.state.state_details.task_run_id == child_run.parent_task_run_id
    child_states = sync_client.read_flow_run_states(child_run.id)
    assert child_states
    for s in child_states:
        if s.type != StateType.PENDING:
            assert s.state_details.task_run_id == child_run.parent_task_run_id

    # the child's states are mirrored onto the placeholder (UpdateSubflowParentTask)
    mirrored = wait_for(
        lambda: (
            tr := sync_client.read_task_run(child_run.parent_task_run_id)
        ).state_type == StateType.COMPLETED and tr,
        timeout=30,
        message="placeholder task run to mirror the child's COMPLETED state",
    )
    assert mirrored.state.state_details.child_flow_run_id == child_run.id

    # the child is discoverable by its parent task run id (the client's subflow lookup)
    found = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(
                any_=[child_run.parent_task_run_id]
            )
        )
    )
    assert [fr.id for fr in found] == [child_run.id]

    # the child's own task ran inside the child flow run, not the parent's
    def child_task_completed():
        trs = sync_client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[child_run.id]))
        )
        return trs if len(trs) == 1 and trs[0].state_type == StateType.COMPLETED else None

    (child_task,) = wait_for(child_task_completed, timeout=30, message="child's task run")
    assert child_task.name.startswith("square-")

    # the parent's only task run is the placeholder
    def parent_task_runs():
        trs = sync_client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[parent_run.id]))
        )
        return trs if trs else None

    parent_trs = wait_for(parent_task_runs, timeout=30, message="parent's task runs")
    assert [tr.id for tr in parent_trs] == [child_run.parent_task_run_id]
