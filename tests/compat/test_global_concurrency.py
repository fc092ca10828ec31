"""Global (v2) concurrency limits through the real client: CRUD, the
`concurrency()` and `rate_limit()` context managers, tag limits on tasks
(leases), and a deployment's own limit."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.concurrency.sync import concurrency as sync_concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Pending


def test_limits_crud_through_the_client(uid, sync_client):
    name = f"gcl-{uid}"
    limit_id = sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=3))
    read = sync_client.read_global_concurrency_limit_by_name(name)
    assert (read.id, read.name, read.limit, read.active, read.active_slots) == (limit_id, name, 3, True, 0)

    sync_client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=5, active=False))
    read = sync_client.read_global_concurrency_limit_by_name(name)
    assert (read.limit, read.active) == (5, False)
    assert name in [limit.name for limit in sync_client.read_global_concurrency_limits(limit=200)]

    with pytest.raises(ObjectAlreadyExists):
        sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))

    sync_client.delete_global_concurrency_limit_by_name(name)
    with pytest.raises(ObjectNotFound):
        sync_client.read_global_concurrency_limit_by_name(name)


def test_concurrency_context_holds_and_releases_a_lease(uid, sync_client):
    name = f"ctx-{uid}"
    sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=2))

    async def hold() -> tuple[int, int]:
        async with get_client() as client:
            async with concurrency(name, occupy=2):
                during = (await client.read_global_concurrency_limit_by_name(name)).active_slots
            after = (await client.read_global_concurrency_limit_by_name(name)).active_slots
        return during, after

    assert asyncio.run(hold()) == (2, 0)
    with sync_concurrency(name, occupy=1):
        assert sync_client.read_global_concurrency_limit_by_name(name).active_slots == 1
    assert sync_client.read_global_concurrency_limit_by_name(name).active_slots == 0


def test_a_full_limit_makes_the_second_holder_wait(uid, sync_client):
    name = f"wait-{uid}"
    sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    order: list[str] = []

    async def holder(tag: str, hold: float) -> None:
        async with concurrency(name, occupy=1):
            order.append(f"{tag}-in")
            await asyncio.sleep(hold)
            order.append(f"{tag}-out")

    async def both() -> None:
        first = asyncio.create_task(holder("a", 1.0))
        while "a-in" not in order:
            await asyncio.sleep(0.01)
        await asyncio.gather(first, holder("b", 0))

    asyncio.run(both())
    # b is refused (423) while a holds the only slot, and gets in after.
    assert order == ["a-in", "a-out", "b-in", "b-out"]


def test_rate_limit_needs_a_decaying_limit(uid, sync_client):
    name = f"rl-{uid}"
    sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=5, slot_decay_per_second=1.0))

    async def take() -> None:
        await rate_limit(name, occupy=2)

    asyncio.run(take())
    assert sync_client.read_global_concurrency_limit_by_name(name).active_slots == 2

    plain = f"plain-{uid}"
    sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=plain, limit=5))
    with httpx.Client(base_url=sync_client.api_url) as http:
        refused = http.post("/v2/concurrency_limits/increment", json={"names": [plain], "slots": 1, "mode": "rate_limit"})
    assert refused.status_code == 422
    assert "do not have a decay configured" in refused.json()["detail"]


def test_tag_limit_on_a_task_is_taken_and_released(uid, sync_client):
    tag = f"db-{uid}"
    sync_client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=f"tag:{tag}", limit=1))
    seen: list[int] = []

    @task(tags=[tag])
    def query(i: int) -> int:
        with get_client(sync_client=True) as client:
            seen.append(client.read_global_concurrency_limit_by_name(f"tag:{tag}").active_slots)
        return i

    @flow(name=f"compat-tag-limit-{uid}")
    def tagged() -> list[int]:
        return [query(i) for i in range(3)]

    assert tagged() == [0, 1, 2]
    assert seen == [1, 1, 1]
    assert sync_client.read_global_concurrency_limit_by_name(f"tag:{tag}").active_slots == 0


def test_a_deployment_answers_its_own_limit(uid, sync_client):
    @flow(name=f"compat-dep-limit-{uid}")
    def limited() -> None:
        pass

    flow_id = sync_client.create_flow(limited)
    dep_id = sync_client.create_deployment(flow_id=flow_id, name=f"d-{uid}", concurrency_limit=2)
    dep = sync_client.read_deployment(dep_id)
    assert dep.global_concurrency_limit is not None
    assert (dep.global_concurrency_limit.name, dep.global_concurrency_limit.limit) == (f"deployment:{dep_id}", 2)
    assert dep.global_concurrency_limit.active_slots == 0
    assert sync_client.read_global_concurrency_limit_by_name(f"deployment:{dep_id}").limit == 2

    run = sync_client.create_flow_run_from_deployment(dep_id)
    assert sync_client.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
    assert sync_client.read_deployment(dep_id).global_concurrency_limit.active_slots == 1
    sync_client.delete_deployment(dep_id)
    with pytest.raises(ObjectNotFound):
        sync_client.read_global_concurrency_limit_by_name(f"deployment:{dep_id}")


def test_tag_limits_v1_routes_and_context(uid, sync_client):
    from prefect.concurrency.v1.sync import concurrency as v1_concurrency

    tag = f"v1-{uid}"
    limit_id = sync_client.create_concurrency_limit(tag=tag, concurrency_limit=2)
    assert sync_client.create_concurrency_limit(tag=tag, concurrency_limit=1) == limit_id
    read = sync_client.read_concurrency_limit_by_tag(tag)
    assert (read.id, read.tag, read.concurrency_limit, read.active_slots) == (limit_id, tag, 1, [])
    # The v1 limit is the v2 limit named tag:<tag>.
    assert sync_client.read_global_concurrency_limit_by_name(f"tag:{tag}").id == limit_id

    run_a, run_b = uuid.uuid4(), uuid.uuid4()
    with v1_concurrency(tag, task_run_id=run_a):
        assert sync_client.read_concurrency_limit_by_tag(tag).active_slots == [run_a]
        with httpx.Client(base_url=sync_client.api_url) as http:
            full = http.post("/concurrency_limits/increment", json={"names": [tag], "task_run_id": str(run_b)})
        assert full.status_code == 423
        assert full.json() == {"detail": f"Concurrency limit for the {tag} tag has been reached"}
        assert float(full.headers["retry-after"]) == 10
    assert sync_client.read_concurrency_limit_by_tag(tag).active_slots == []

    sync_client.reset_concurrency_limit_by_tag(tag, slot_override=[run_b])
    assert sync_client.read_concurrency_limit_by_tag(tag).active_slots == [run_b]
    sync_client.reset_concurrency_limit_by_tag(tag)
    assert sync_client.read_concurrency_limit_by_tag(tag).active_slots == []
    assert tag in [cl.tag for cl in sync_client.read_concurrency_limits(limit=200, offset=0)]

    sync_client.delete_concurrency_limit_by_tag(tag)
    with pytest.raises(ObjectNotFound):
        sync_client.read_concurrency_limit_by_tag(tag)
