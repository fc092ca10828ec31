"""`POST /ui/schemas/validate`: the UI's check of form values against a
flow's parameter schema, with hydration as Prefect runs it there."""

from __future__ import annotations

import httpx
import pydantic
from prefect.utilities.callables import parameter_schema


class Point(pydantic.BaseModel):
    x: int
    y: int = 0


def target(name: str, count: int, points: list[Point], tag: str | None = None, scale: float = 1.0) -> None:
    pass


SCHEMA = parameter_schema(target).model_dump_for_openapi()


def _validate(http: httpx.Client, values: dict) -> dict:
    response = http.post("/ui/schemas/validate", json={"schema": SCHEMA, "values": values})
    assert response.status_code == 200, response.text
    return response.json()


def test_values_that_fit_are_valid(api_url):
    with httpx.Client(base_url=api_url) as http:
        ok = _validate(http, {"name": "a", "count": 2, "points": [{"x": 1}], "tag": None})
        assert ok == {"errors": [], "valid": True}


def test_every_failure_comes_back_as_a_tree(api_url):
    with httpx.Client(base_url=api_url) as http:
        bad = _validate(http, {"name": 5, "points": [{"x": 1}, {"y": "no"}], "scale": "big"})
    assert bad["valid"] is False
    assert bad["errors"] == [
        {"property": "name", "errors": ["5 is not of type 'string'"]},
        {"property": "points", "errors": [{"index": 1, "errors": [
            {"property": "y", "errors": ["'no' is not of type 'integer'"]},
            {"property": "x", "errors": ["'x' is a required property"]},
        ]}]},
        {"property": "scale", "errors": ["'big' is not of type 'number'"]},
        {"property": "count", "errors": ["'count' is a required property"]},
    ]


def test_hydration_placeholders(api_url, uid):
    with httpx.Client(base_url=api_url) as http:
        values = {
            "name": {"__prefect_kind": "jinja", "template": "{{ 1 + 1 }}"},
            "count": {"__prefect_kind": "json", "value": "{not json"},
            "points": {"__prefect_kind": "json", "value": '[{"x": 1}]'},
            "tag": {"__prefect_kind": "workspace_variable", "variable_name": f"missing_{uid}"},
        }
        result = _validate(http, values)
        bad_schema = http.post("/ui/schemas/validate", json={"schema": "nope", "values": {}})
    assert result["valid"] is False
    by_property = {e["property"]: e["errors"] for e in result["errors"]}
    assert "name" not in by_property, "an unrendered template is not checked"
    assert "points" not in by_property, "valid JSON is hydrated, then checked"
    assert by_property["count"][0].startswith("Invalid JSON")
    assert by_property["tag"] == [f"Variable 'missing_{uid}' not found in workspace."]
    assert bad_schema.status_code == 422
