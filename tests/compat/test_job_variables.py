"""Job variables checked against a work pool's base job template, through
the real client: the pool's own defaults when it is created, a deployment's
variables, and a flow run's (where required variables are enforced), with
Prefect's status codes and messages."""

from __future__ import annotations

import httpx
import pytest
from prefect.client.schemas.actions import DeploymentUpdate, WorkPoolCreate
from prefect.exceptions import PrefectHTTPStatusError


def template(retries_default=3):
    return {
        "job_configuration": {"command": "{{ command }}", "image": "{{ image }}", "retries": "{{ retries }}"},
        "variables": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "title": "Command"},
                "image": {"type": "string", "title": "Image"},
                "retries": {"type": "integer", "default": retries_default},
            },
            "required": ["image"],
        },
    }


def status_and_detail(exc: pytest.ExceptionInfo) -> tuple[int, str]:
    response = exc.value.response
    return response.status_code, response.json()["detail"]


def test_a_pool_whose_defaults_do_not_fit_its_schema_is_refused(uid, sync_client):
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_work_pool(
            WorkPoolCreate(name=f"jv-bad-{uid}", type="process", base_job_template=template("three"))
        )
    assert status_and_detail(exc) == (
        422,
        "Validation failed for work pool's job variable defaults: Validation failed for field 'retries'. "
        "Failure reason: 'three' is not valid under any of the given schemas",
    )
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_work_pool(
            WorkPoolCreate(
                name=f"jv-block-{uid}",
                type="process",
                base_job_template=template({"$ref": {"block_document_id": "6b2f6bd8-c8e6-4d16-a4f4-4b1ba27b43e8"}}),
            )
        )
    assert status_and_detail(exc) == (404, "Block not found.")


def test_deployment_and_run_variables_are_checked_layer_by_layer(uid, sync_client):
    pool = f"jv-pool-{uid}"
    sync_client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template()))
    flow_id = sync_client.create_flow_from_name(f"jv-flow-{uid}")

    # A deployment may leave required variables to its runs, but not
    # send one of the wrong type.
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_deployment(flow_id=flow_id, name="bad", work_pool_name=pool, job_variables={"retries": "x"})
    assert status_and_detail(exc) == (
        422,
        "Error creating deployment: Validation failed for field 'retries'. "
        "Failure reason: 'x' is not valid under any of the given schemas",
    )
    deployment_id = sync_client.create_deployment(
        flow_id=flow_id, name="ok", work_pool_name=pool, job_variables={"command": "echo hi"}
    )

    # A run is where required variables are enforced.
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_flow_run_from_deployment(deployment_id)
    assert status_and_detail(exc) == (
        422,
        "Error creating flow run: Validation failed. Failure reason: 'image' is a required property",
    )
    run = sync_client.create_flow_run_from_deployment(deployment_id, job_variables={"image": "python:3.12"})
    assert run.job_variables == {"image": "python:3.12"}  # only its own; the worker layers them

    # A scheduled run's variables can change, and are checked again.
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.update_flow_run(run.id, job_variables={"image": 12})
    assert status_and_detail(exc) == (
        422,
        "Error updating flow run: Validation failed for field 'image'. Failure reason: 12 is not of type 'string'",
    )
    sync_client.update_flow_run(run.id, job_variables={"image": "python:3.13"})
    assert sync_client.read_flow_run(run.id).job_variables == {"image": "python:3.13"}

    # An update that names the pool checks the variables it sends (409,
    # with the error's repr, as Prefect words it).
    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.update_deployment(
            deployment_id, DeploymentUpdate(work_pool_name=pool, job_variables={"retries": "y"})
        )
    assert status_and_detail(exc) == (409, "Error creating deployment: <ValidationError: \"'y' is not of type 'integer'\">")


def test_only_a_scheduled_deployment_run_may_change_its_variables(uid, sync_client, api_url):
    flow_id = sync_client.create_flow_from_name(f"jv-plain-{uid}")
    with httpx.Client(base_url=api_url) as http:
        run = http.post("/flow_runs/", json={"flow_id": str(flow_id)}).json()

        def patch() -> tuple[int, str]:
            response = http.patch(f"/flow_runs/{run['id']}", json={"job_variables": {"a": 1}})
            return response.status_code, response.json()["detail"]

        # A run created without a state is PENDING.
        assert patch() == (400, "Job variables for a flow run in state PENDING cannot be updated")
        http.post(f"/flow_runs/{run['id']}/set_state", json={"state": {"type": "SCHEDULED"}, "force": True})
        assert patch() == (400, "A deployment for the flow run could not be found")
        http.post(f"/flow_runs/{run['id']}/set_state", json={"state": {"type": "RUNNING"}, "force": True})
        assert patch() == (400, "Job variables for a flow run in state RUNNING cannot be updated")
