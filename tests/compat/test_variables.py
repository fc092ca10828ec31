"""Workspace variables through the real client (`prefect.variables.Variable`
and the client's variable methods), raw HTTP shapes, and parameter hydration
of deployment runs (json, jinja and workspace_variable kinds)."""

from __future__ import annotations

import httpx
import pytest
from prefect import flow
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.variables import Variable


@flow
def hydrated_flow(cfg: dict | None = None, label: str = "", zone: dict | None = None):
    return cfg, label, zone


def test_variable_set_get_unset(uid):
    name = f"compat_var_{uid}"
    assert Variable.get(name) is None
    assert Variable.get(name, default="fallback") == "fallback"

    v = Variable.set(name, {"region": "eu", "sizes": [1, 2]}, tags=["compat", uid])
    assert v.name == name
    assert Variable.get(name) == {"region": "eu", "sizes": [1, 2]}

    with pytest.raises(ValueError, match="already exists"):
        Variable.set(name, "other")
    v = Variable.set(name, "replaced", overwrite=True)
    assert v.value == "replaced"
    assert Variable.get(name) == "replaced"

    assert Variable.unset(name) is True
    assert Variable.get(name) is None
    assert Variable.unset(name) is False
    # One stays behind, so the suite's closing replay check covers variables.
    Variable.set(f"compat_kept_{uid}", ["kept", 1], tags=[uid])


def test_client_variable_methods(uid, sync_client):
    name = f"compat-client-{uid}"
    created = sync_client.create_variable(VariableCreate(name=name, value=42, tags=[uid]))
    assert (created.name, created.value, created.tags) == (name, 42, [uid])

    with pytest.raises(ObjectAlreadyExists):
        sync_client.create_variable(VariableCreate(name=name, value=1))

    read = sync_client.read_variable_by_name(name)
    assert read.id == created.id and read.value == 42
    assert sync_client.read_variable_by_name(f"missing-{uid}") is None

    sync_client.update_variable(VariableUpdate(name=name, value=[True, None, 1.5]))
    assert sync_client.read_variable_by_name(name).value == [True, None, 1.5]
    assert sync_client.read_variable_by_name(name).tags == [uid]

    listed = [v.name for v in sync_client.read_variables()]
    assert name in listed

    sync_client.delete_variable_by_name(name)
    with pytest.raises(ObjectNotFound):
        sync_client.delete_variable_by_name(name)


def test_variable_http_shapes(uid, api_url):
    name = f"compat_http_{uid}"
    with httpx.Client(base_url=api_url) as http:
        r = http.post("/variables/", json={"name": name, "value": "v", "tags": ["a", uid]})
        assert r.status_code == 201, r.text
        body = r.json()
        assert list(body) == ["id", "created", "updated", "name", "value", "tags"]

        r = http.post("/variables/", json={"name": name, "value": "again"})
        assert r.status_code == 409
        assert r.json() == {"detail": f"A variable with the name '{name}' already exists."}

        r = http.post("/variables/", json={"name": "Not Valid", "value": 1})
        assert r.status_code == 422
        r = http.post("/variables/", json={"name": f"big_{uid}", "value": "x" * 5000})
        assert r.status_code == 422

        assert http.get(f"/variables/{body['id']}").json()["value"] == "v"
        r = http.get(f"/variables/name/missing-{uid}")
        assert (r.status_code, r.json()) == (404, {"detail": "Variable not found."})

        second = f"compat_http_{uid}_b"
        assert http.post("/variables/", json={"name": second, "value": 2}).status_code == 201
        filt = {"variables": {"name": {"like_": uid}, "tags": {"all_": [uid]}}}
        r = http.post("/variables/filter", json=filt)
        assert [v["name"] for v in r.json()] == [name]
        r = http.post("/variables/filter", json={"variables": {"name": {"like_": uid}}, "sort": "NAME_DESC"})
        assert [v["name"] for v in r.json()] == [second, name]
        r = http.post("/variables/count", json={"variables": {"name": {"like_": uid}}})
        assert r.json() == 2

        r = http.patch(f"/variables/{body['id']}", json={"tags": []})
        assert r.status_code == 204
        assert http.get(f"/variables/name/{name}").json()["tags"] == []
        r = http.patch(f"/variables/name/missing-{uid}", json={"value": 1})
        assert (r.status_code, r.json()) == (404, {"detail": "Variable not found."})

        assert http.delete(f"/variables/{body['id']}").status_code == 204
        assert http.delete(f"/variables/name/{second}").status_code == 204
        assert http.delete(f"/variables/name/{second}").status_code == 404


def test_deployment_run_parameters_are_hydrated(uid, sync_client):
    var = f"compat_zone_{uid}"
    Variable.set(var, {"zone": "eu-1"})
    flow_id = sync_client.create_flow(hydrated_flow.with_options(name=f"compat-hydrate-{uid}"))
    dep_id = sync_client.create_deployment(
        flow_id=flow_id,
        name=f"dep-{uid}",
        parameters={"label": "default"},
        enforce_parameter_schema=False,
    )
    run = sync_client.create_flow_run_from_deployment(
        dep_id,
        parameters={
            "cfg": {"__prefect_kind": "json", "value": '{"retries": 3}'},
            "label": {"__prefect_kind": "jinja", "template": "run-{{ 40 + 2 }}"},
            "zone": {"__prefect_kind": "workspace_variable", "variable_name": var},
            "gone": {"__prefect_kind": "json"},
        },
    )
    assert run.parameters == {"label": "run-42", "cfg": {"retries": 3}, "zone": {"zone": "eu-1"}}

    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_flow_run_from_deployment(
            dep_id, parameters={"zone": {"__prefect_kind": "workspace_variable", "variable_name": f"nope_{uid}"}}
        )
    assert exc.value.response.status_code == 400
    assert exc.value.response.json() == {
        "detail": f"Error hydrating flow run parameters: Variable 'nope_{uid}' not found in workspace."
    }

    with pytest.raises(PrefectHTTPStatusError) as exc:
        sync_client.create_flow_run_from_deployment(dep_id, parameters={"cfg": {"__prefect_kind": "json", "value": "nope"}})
    assert exc.value.response.json() == {
        "detail": "Error hydrating flow run parameters: Invalid JSON: Expecting value: line 1 column 1 (char 0)"
    }
    Variable.unset(var)
