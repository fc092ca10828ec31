"""Many flow runs at once, from threads of one client process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prefect import flow, task
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

N_FLOWS = 10
TASKS_PER_FLOW = 3


@task
def step(i: int, j: int) -> int:
    return i * 100 + j


@flow
def worker_flow(i: int) -> list[int]:
    return [step(i, j) for j in range(TASKS_PER_FLOW)]


def test_concurrent_flows_from_threads(uid, sync_client, wait_for):
    f = worker_flow.with_options(name=f"compat-concurrent-{uid}")

    with ThreadPoolExecutor(max_workers=N_FLOWS) as pool:
        states = list(pool.map(lambda i: f(i, return_state=True), range(N_FLOWS)))

    for i, state in enumerate(states):
        assert state.is_completed(), state
        assert state.result() == [i * 100 + j for j in range(TASKS_PER_FLOW)]
    ids = [s.state_details.flow_run_id for s in states]
    assert len(set(ids)) == N_FLOWS

    runs = sync_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
        sort=FlowRunSort.START_TIME_ASC,
    )
    assert sorted(r.id for r in runs) == sorted(ids)
    assert all(r.state_type == StateType.COMPLETED for r in runs)
    assert all(r.run_count == 1 for r in runs)
    assert len({r.flow_id for r in runs}) == 1  # one flow row despite concurrent upserts
    assert {r.parameters["i"] for r in runs} == set(range(N_FLOWS))
    starts = [r.start_time for r in runs]
    assert starts == sorted(starts)

    assert sync_client.count_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
    ) == N_FLOWS

    def all_task_runs_completed():
        trs = sync_client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
        )
        if len(trs) == N_FLOWS * TASKS_PER_FLOW and all(
            tr.state_type == StateType.COMPLETED for tr in trs
        ):
            return trs
        return None

    trs = wait_for(
        all_task_runs_completed,
        timeout=60,
        interval=0.25,
        message=f"{N_FLOWS * TASKS_PER_FLOW} completed task runs",
    )
    per_flow: dict = {}
    for tr in trs:
        per_flow[tr.flow_run_id] = per_flow.get(tr.flow_run_id, 0) + 1
    assert per_flow == {fr_id: TASKS_PER_FLOW for fr_id in ids}
