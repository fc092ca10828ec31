"""Raw HTTP against the server: status codes and error body shapes the client relies on."""

from __future__ import annotations

import uuid

import httpx
import pytest
from packaging.version import Version

import prefect


@pytest.fixture
def http(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def _assert_validation_error(resp: httpx.Response) -> dict:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["exception_message"] == "Invalid request received."
    assert isinstance(body["exception_detail"], list) and body["exception_detail"]
    assert "request_body" in body
    return body


def test_health(http):
    resp = http.get("/health")
    assert resp.status_code == 200
    assert resp.json() is True


def test_admin_version_is_json_string(http):
    resp = http.get("/admin/version")
    assert resp.status_code == 200
    version = resp.json()
    assert isinstance(version, str)
    # the client refuses a different major version and warns on an older server
    assert Version(version).major == Version(prefect.__version__).major
    assert Version(version) >= Version(prefect.__version__)


def test_api_version(http):
    resp = http.get("/version")
    assert resp.status_code == 200
    assert resp.json() == "0.8.4"


def test_csrf_token_disabled(http):
    resp = http.get("/csrf-token", params={"client": "x"})
    assert resp.status_code == 422
    assert resp.json() == {"detail": "CSRF protection is disabled."}


def test_malformed_json_body(http):
    resp = http.post(
        "/flows/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    body = _assert_validation_error(resp)
    assert body["exception_detail"][0]["type"] == "json_invalid"
    assert body["request_body"] == "{not json"


def test_unknown_field_is_forbidden(http):
    resp = http.post("/flows/", json={"name": f"compat-extra-{uuid.uuid4().hex}", "bogus": 1})
    body = _assert_validation_error(resp)
    (err,) = body["exception_detail"]
    assert err["type"] == "extra_forbidden"
    assert err["loc"] == ["body", "bogus"]


def test_unknown_field_in_nested_filter_is_forbidden(http):
    resp = http.post("/flow_runs/filter", json={"flow_runs": {"bogus": 1}})
    body = _assert_validation_error(resp)
    assert body["exception_detail"][0]["loc"] == ["body", "flow_runs", "bogus"]


def test_missing_required_field(http):
    resp = http.post("/flows/", json={})
    body = _assert_validation_error(resp)
    (err,) = body["exception_detail"]
    assert err["type"] == "missing"
    assert err["loc"] == ["body", "name"]


def test_non_uuid_path_id_does_not_match_route(http):
    # routes are declared as /{id:uuid}, so a non-UUID id matches no route at all
    for method, path in [
        ("GET", "/flow_runs/not-a-uuid"),
        ("GET", "/flows/not-a-uuid"),
        ("GET", "/task_runs/not-a-uuid"),
        ("DELETE", "/flow_runs/not-a-uuid"),
    ]:
        resp = http.request(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json() == {"detail": "Not Found"}


def test_non_uuid_query_parameter(http):
    resp = http.get("/flow_run_states/", params={"flow_run_id": "not-a-uuid"})
    body = _assert_validation_error(resp)
    assert body["exception_detail"][0]["type"] == "uuid_parsing"
    assert body["exception_detail"][0]["loc"] == ["query", "flow_run_id"]


def test_missing_object_404(http):
    resp = http.get(f"/flow_runs/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Flow run not found"}
    resp = http.get(f"/flows/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Flow not found"}


def test_filter_limit_bounds(http):
    resp = http.post("/flow_runs/filter", json={"limit": 201})
    assert resp.status_code == 422
    assert "Invalid limit" in resp.json()["detail"]
    assert "200" in resp.json()["detail"]

    resp = http.post("/flow_runs/filter", json={"limit": 200})
    assert resp.status_code == 200
    assert isinstance(resp.json(), list)

    resp = http.post("/flow_runs/filter", json={"offset": -1})
    _assert_validation_error(resp)


def test_bad_sort_value(http):
    resp = http.post("/flow_runs/filter", json={"sort": "BOGUS"})
    body = _assert_validation_error(resp)
    assert body["exception_detail"][0]["loc"] == ["body", "sort"]


def test_flow_upsert_status_codes(http):
    name = f"compat-upsert-{uuid.uuid4().hex}"
    first = http.post("/flows/", json={"name": name})
    second = http.post("/flows/", json={"name": name})
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["name"] == name

    by_name = http.get(f"/flows/name/{name}")
    assert by_name.status_code == 200
    assert by_name.json()["id"] == first.json()["id"]


def test_post_without_content_type_is_json(http):
    name = f"compat-noctype-{uuid.uuid4().hex}"
    resp = http.post("/flows/", content=f'{{"name": "{name}"}}'.encode())
    assert "content-type" not in {k.lower() for k in resp.request.headers}
    assert resp.status_code == 201
    assert resp.json()["name"] == name


def test_api_version_header_enforced(http):
    resp = http.post("/flows/filter", json={"limit": 1}, headers={"X-PREFECT-API-VERSION": "0.7.0"})
    assert resp.status_code == 400
    assert "0.8.0" in resp.json()["detail"]
    resp = http.post("/flows/filter", json={"limit": 1}, headers={"X-PREFECT-API-VERSION": "garbage"})
    assert resp.status_code == 400
    resp = http.post("/flows/filter", json={"limit": 1}, headers={"X-PREFECT-API-VERSION": "0.8.4"})
    assert resp.status_code == 200
    # /health is outside the routers and ignores the header
    resp = http.get("/health", headers={"X-PREFECT-API-VERSION": "garbage"})
    assert resp.status_code == 200


def test_flow_run_for_unknown_flow_conflicts(http):
    resp = http.post("/flow_runs/", json={"flow_id": str(uuid.uuid4())})
    assert resp.status_code == 409
    assert resp.json()["detail"].startswith("Data integrity conflict.")


def test_logs_create_returns_null(http):
    resp = http.post("/logs/", json=[])
    assert resp.status_code == 201
    assert resp.json() is None


def test_admin_storage(http):
    resp = http.get("/admin/storage")
    assert resp.status_code == 200
    assert resp.json() == {"default_result_storage_block_id": None}


def test_admin_settings_has_prefects_shape_for_the_server_settings(http):
    # The UI's dashboard reads this; both servers run with default loops here.
    resp = http.get("/admin/settings")
    assert resp.status_code == 200
    server = resp.json()["server"]
    assert server["services"]["scheduler"]["loop_seconds"] == 60.0
    assert server["services"]["scheduler"]["max_scheduled_time"] == "P100D"
    assert server["services"]["late_runs"]["after_seconds"] == "PT15S"
    assert server["services"]["repossessor"]["enabled"] is True
    assert server["api"]["default_limit"] == 200
    assert server["api"]["csrf_protection_enabled"] is False
    assert server["events"]["retention_period"] == "P7D"
    assert server["flow_run_graph"]["max_nodes"] == 10000
    assert "connection_url" in server["database"]
    assert "postgres" not in str(server["database"]["connection_url"])
