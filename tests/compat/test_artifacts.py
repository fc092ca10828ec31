"""Artifacts: what a flow's `create_*_artifact` calls write, read back
through the client, the latest artifact of a key, and the rules Prefect
applies on update and delete."""

from __future__ import annotations

import httpx
import pytest
from prefect import flow, task
from prefect.artifacts import (
    Artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey, ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import ArtifactSort


@pytest.fixture
def http(api_url):
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def test_a_flow_and_its_task_create_artifacts(uid, sync_client):
    key = f"report-{uid}"

    @task
    def tabulate() -> None:
        create_table_artifact(key=f"{key}-table", table=[{"a": 1, "b": 2}], description="a table")

    @flow
    def reporting() -> str:
        create_markdown_artifact(key=key, markdown="# first", description="v1")
        create_link_artifact(link="https://example.com", link_text="example")
        progress = create_progress_artifact(progress=10.0)
        update_progress_artifact(progress, progress=90.0)
        tabulate()
        create_markdown_artifact(key=key, markdown="# second", description="v2")
        from prefect.runtime import flow_run

        return flow_run.id

    run_id = reporting()
    artifacts = sync_client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), sort=ArtifactSort.KEY_ASC)
    kinds = sorted(a.type for a in artifacts)
    assert kinds == ["markdown", "markdown", "markdown", "progress", "table"]  # a link artifact is markdown
    progress = next(a for a in artifacts if a.type == "progress")
    assert progress.data == 90.0
    table = next(a for a in artifacts if a.type == "table")
    assert table.task_run_id is not None and str(table.flow_run_id) == str(run_id)
    # The latest of the key is the second markdown artifact.
    latest = sync_client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])))
    assert [(a.key, a.data, a.description) for a in latest] == [(key, "# second", "v2")]
    assert Artifact.get(key).data == "# second"


def test_deleting_the_latest_artifact_hands_its_key_to_the_previous_one(uid, sync_client, http):
    key = f"handover-{uid}"
    first = http.post("/artifacts/", json={"key": key, "type": "markdown", "data": "one", "metadata_": {"k": "v"}})
    second = http.post("/artifacts/", json={"key": key, "type": "markdown", "data": "two"})
    assert first.status_code == second.status_code == 201
    first_id, second_id = first.json()["id"], second.json()["id"]
    def latest_of_key():
        found = http.post("/artifacts/latest/filter", json={"artifacts": {"key": {"any_": [key]}}}).json()
        assert len(found) == 1
        return found[0]

    latest = latest_of_key()
    assert (latest["latest_id"], latest["data"]) == (second_id, "two")
    assert set(latest) == {"id", "created", "updated", "key", "latest_id", "type", "description", "data", "metadata_", "flow_run_id", "task_run_id"}
    # GET /artifacts/{key}/latest answers the same in the Artifact shape
    by_key = http.get(f"/artifacts/{key}/latest").json()
    assert by_key == {k: v for k, v in latest.items() if k != "latest_id"}

    # Updating the latest artifact updates the key's copy too
    assert http.patch(f"/artifacts/{second_id}", json={"data": "two, edited"}).status_code == 204
    assert http.get(f"/artifacts/{key}/latest").json()["data"] == "two, edited"

    assert http.delete(f"/artifacts/{second_id}").status_code == 204
    latest = latest_of_key()
    assert (latest["latest_id"], latest["data"], latest["metadata_"]) == (first_id, "one", {"k": "v"})
    assert http.post("/artifacts/count", json={"artifacts": {"key": {"any_": [key]}}}).json() == 1

    assert http.delete(f"/artifacts/{first_id}").status_code == 204
    assert http.get(f"/artifacts/{key}/latest").status_code == 404
    assert http.get(f"/artifacts/{first_id}").json() == {"detail": "Artifact not found."}
    assert http.post("/artifacts/latest/count", json={"artifacts": {"key": {"any_": [key]}}}).json() == 0


def test_artifact_filters_and_bad_input(uid, http):
    keyed = http.post("/artifacts/", json={"key": f"f-{uid}", "type": "table", "data": [1]}).json()
    unkeyed = http.post("/artifacts/", json={"type": f"kind-{uid}", "data": {"x": 1}}).json()
    assert unkeyed["key"] is None
    by_type = http.post("/artifacts/filter", json={"artifacts": {"type": {"any_": [f"kind-{uid}"]}}}).json()
    assert [a["id"] for a in by_type] == [unkeyed["id"]]
    with_key = http.post("/artifacts/filter", json={"artifacts": {"key": {"like_": uid, "exists_": True}}}).json()
    assert [a["id"] for a in with_key] == [keyed["id"]]
    # Bad input: a key with capitals, an unknown field, an unknown sort
    assert http.post("/artifacts/", json={"key": "Bad_Key"}).status_code == 422
    assert http.post("/artifacts/", json={"data": 1, "nope": 2}).status_code == 422
    assert http.post("/artifacts/filter", json={"sort": "NAME_ASC"}).status_code == 422
    assert http.patch(f"/artifacts/{keyed['id']}", json={"key": "other"}).status_code == 422
