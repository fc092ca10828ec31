"""Automations through the real client (`prefect.automations.Automation`, the
client's automation methods, deployment triggers) and the triggers service:
events sent with `emit_event` fire a trigger, and its actions change the
work pool or start a deployment run."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest
from prefect import flow
from prefect.automations import Automation
from prefect.deployments import run_deployment
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.events.actions import DoNothing, PauseWorkPool
from prefect.events.schemas.automations import EventTrigger, Posture

from test_deployments import FLOWS, create_pool, deployment_runs


@pytest.fixture
def flow_dir(tmp_path):
    src = tmp_path / "flows"
    src.mkdir()
    (src / "compat_flows.py").write_text(FLOWS)
    return src


def test_automation_lifecycle_through_the_client(uid, sync_client):
    trigger = EventTrigger(expect={f"compat.{uid}.*"}, match={"prefect.resource.id": f"compat.{uid}.*"}, posture=Posture.Reactive, threshold=3, within=120)
    created = Automation(name=f"auto-{uid}", description="compat", tags=[uid], trigger=trigger, actions=[DoNothing()]).create()
    assert isinstance(created.id, UUID)
    assert created.trigger.threshold == 3 and created.trigger.within.total_seconds() == 120

    read = Automation.read(id=created.id)
    assert (read.name, read.description, read.enabled, read.tags) == (f"auto-{uid}", "compat", True, [uid])
    assert Automation.read(name=f"auto-{uid}").id == created.id
    assert [a.id for a in sync_client.read_automations_by_name(f"auto-{uid}")] == [created.id]

    read.description = "changed"
    read.update()
    assert Automation.read(id=created.id).description == "changed"

    read.disable()
    assert Automation.read(id=created.id).enabled is False
    read.enable()
    assert Automation.read(id=created.id).enabled is True

    assert read.delete() is True
    with pytest.raises(ValueError):
        Automation.read(id=created.id)
    assert read.delete() is False


def test_bad_automations_are_refused_with_422(api_url):
    with httpx.Client(base_url=api_url) as http:
        r = http.post("/automations/", json={"name": "x", "trigger": {"posture": "Sideways"}, "actions": []})
        assert r.status_code == 422
        r = http.post("/automations/", json={"name": "x", "trigger": {"posture": "Proactive", "within": 5}, "actions": []})
        assert r.status_code == 422
        r = http.post("/automations/", json={"name": "x", "trigger": {"posture": "Reactive"}, "actions": [{"type": "pause-deployment"}]})
        assert r.status_code == 422
        r = http.patch("/automations/00000000-0000-0000-0000-000000000000", json={"enabled": False})
        assert r.status_code == 404
        r = http.post("/templates/validate", json="{{ unclosed")
        assert r.status_code == 422 and r.json()["error"]["source"] == "{{ unclosed"


def test_events_fire_a_trigger_that_pauses_a_work_pool(uid, sync_client, wait_for):
    pool = f"auto-pool-{uid}"
    create_pool(pool)
    pool_id = sync_client.read_work_pool(pool).id
    trigger = EventTrigger(
        expect={f"compat.alarm.{uid}"},
        match={"prefect.resource.id": f"compat.sensor.{uid}.*"},
        for_each={"prefect.resource.id"},
        posture=Posture.Reactive,
        threshold=2,
        within=300,
    )
    automation = Automation(name=f"pause-{uid}", trigger=trigger, actions=[PauseWorkPool(work_pool_id=pool_id)]).create()

    # Two alarms from two different sensors: no sensor reached two.
    emit_event(f"compat.alarm.{uid}", resource={"prefect.resource.id": f"compat.sensor.{uid}.a"})
    emit_event(f"compat.alarm.{uid}", resource={"prefect.resource.id": f"compat.sensor.{uid}.b"})
    # A second from sensor a fires it.
    emit_event(f"compat.alarm.{uid}", resource={"prefect.resource.id": f"compat.sensor.{uid}.a"})
    wait_for(lambda: sync_client.read_work_pool(pool).is_paused, timeout=60, message="the automation to pause the pool")
    automation.delete()


def test_a_deployment_trigger_runs_its_deployment(uid, sync_client, flow_dir, wait_for):
    pool = f"trig-pool-{uid}"
    create_pool(pool)
    go = f"compat.go.{uid}"
    deployment_id = flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_add").deploy(
        name=f"trig-{uid}",
        work_pool_name=pool,
        build=False,
        push=False,
        triggers=[DeploymentEventTrigger(expect={go}, parameters={"n": "{{ event.payload.n }}"})],
    )
    resource = f"prefect.deployment.{deployment_id}"
    owned = sync_client.read_resource_related_automations(resource)
    assert len(owned) == 1 and owned[0].actions[0].deployment_id == deployment_id

    # Deploying again replaces the deployment's automations, not adds to them.
    flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_add").deploy(
        name=f"trig-{uid}",
        work_pool_name=pool,
        build=False,
        push=False,
        triggers=[DeploymentEventTrigger(expect={go}, parameters={"n": "{{ event.payload.n }}"})],
    )
    assert len(sync_client.read_resource_related_automations(resource)) == 1

    # The trigger's parameters are Jinja, rendered with the triggering event.
    emit_event(go, resource={"prefect.resource.id": f"compat.button.{uid}"}, payload={"n": 7})
    runs = wait_for(lambda: deployment_runs(sync_client, deployment_id), timeout=60, message="the triggered deployment run")
    assert len(runs) == 1
    assert runs[0].parameters == {"n": 7}
    assert runs[0].state.is_scheduled()

    sync_client.delete_resource_owned_automations(resource)
    assert sync_client.read_resource_related_automations(resource) == []


def test_a_trigger_matches_the_deployment_a_run_belongs_to(uid, sync_client, flow_dir, wait_for):
    """Flow-run state events name the run's deployment, queue and pool as
    related resources, so a trigger can match on them."""
    pool = f"rel-pool-{uid}"
    create_pool(pool)
    deployment_id = flow.from_source(source=str(flow_dir), entrypoint="compat_flows.py:compat_add").deploy(
        name=f"rel-{uid}", work_pool_name=pool, build=False, push=False
    )
    trigger = EventTrigger(
        expect={"prefect.flow-run.Scheduled"},
        match_related={"prefect.resource.id": f"prefect.deployment.{deployment_id}", "prefect.resource.role": "deployment"},
        posture=Posture.Reactive,
    )
    pool_id = sync_client.read_work_pool(pool).id
    automation = Automation(name=f"rel-{uid}", trigger=trigger, actions=[PauseWorkPool(work_pool_id=pool_id)]).create()
    run_deployment(f"compat-add/rel-{uid}", timeout=0)
    wait_for(lambda: sync_client.read_work_pool(pool).is_paused, timeout=60, message="the automation to pause the pool")
    automation.delete()
