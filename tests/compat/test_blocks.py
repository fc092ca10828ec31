"""Blocks through the real client: `Block.save` / `Block.load` (which register
the block type and schema first), secrets hidden unless asked for, saving
over an existing document, nested blocks saved by reference or inline, the
client's block-document reads, and a flow whose results go to a block's
storage (named by `slug/name`, read back by id for the result)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.filesystems import LocalFileSystem
from pydantic import SecretStr


class CompatCredentials(Block):
    username: str
    token: SecretStr
    region: str = "eu"


class CompatService(Block):
    credentials: CompatCredentials
    endpoint: str
    timeout: float = 10.0


def test_secret_save_load_and_overwrite(uid):
    name = f"compat-secret-{uid}"
    Secret(value="hunter2").save(name)
    assert Secret.load(name).get() == "hunter2"

    with pytest.raises(ValueError, match="already in use"):
        Secret(value="other").save(name)
    Secret(value="hunter3").save(name, overwrite=True)
    assert Secret.load(name).get() == "hunter3"


def test_secrets_are_hidden_unless_asked_for(uid, sync_client):
    name = f"compat-creds-{uid}"
    CompatCredentials(username="ann", token="t0ken").save(name)

    hidden = sync_client.read_block_document_by_name(name, "compatcredentials", include_secrets=False)
    assert hidden.data == {"username": "ann", "token": "********", "region": "eu"}
    shown = sync_client.read_block_document_by_name(name, "compatcredentials")
    assert shown.data["token"] == "t0ken"

    # The UI posts back what it read: the hidden token keeps its value.
    from prefect.client.schemas.actions import BlockDocumentUpdate

    sync_client.update_block_document(hidden.id, BlockDocumentUpdate(data={**hidden.data, "region": "us"}))
    loaded = CompatCredentials.load(name)
    assert (loaded.region, loaded.token.get_secret_value()) == ("us", "t0ken")


def test_nested_blocks_by_reference_and_inline(uid, sync_client):
    creds = CompatCredentials(username="bob", token="s3cret")
    creds.save(f"compat-nested-creds-{uid}")
    CompatService(credentials=creds, endpoint="https://example.invalid").save(f"compat-by-ref-{uid}")
    CompatService(credentials=CompatCredentials(username="eve", token="inline"), endpoint="e").save(f"compat-inline-{uid}")

    by_ref = CompatService.load(f"compat-by-ref-{uid}")
    assert (by_ref.credentials.username, by_ref.credentials.token.get_secret_value(), by_ref.timeout) == ("bob", "s3cret", 10.0)
    inline = CompatService.load(f"compat-inline-{uid}")
    assert inline.credentials.token.get_secret_value() == "inline"

    doc = sync_client.read_block_document_by_name(f"compat-by-ref-{uid}", "compatservice")
    ref = doc.block_document_references["credentials"]["block_document"]
    assert ref["name"] == f"compat-nested-creds-{uid}"
    assert doc.block_schema.fields["block_schema_references"]["credentials"]["block_type_slug"] == "compatcredentials"

    names = {d.name for d in sync_client.read_block_documents()}
    assert {f"compat-by-ref-{uid}", f"compat-inline-{uid}", f"compat-nested-creds-{uid}"} <= names


def test_block_documents_are_deleted_through_the_client(uid, sync_client):
    name = f"compat-gone-{uid}"
    block_id = Secret(value="x").save(name)
    sync_client.delete_block_document(block_id)
    with pytest.raises(ValueError):
        Secret.load(name)


def test_results_persisted_to_a_storage_block(uid, tmp_path: Path):
    LocalFileSystem(basepath=str(tmp_path)).save(f"compat-storage-{uid}")

    @flow(name=f"compat-block-results-{uid}", persist_result=True, result_storage=f"local-file-system/compat-storage-{uid}")
    def stored() -> dict:
        return {"answer": 42}

    state = stored(return_state=True)
    assert state.is_completed()
    assert state.result() == {"answer": 42}
    assert any(tmp_path.iterdir()), "the result was written under the block's basepath"


def test_server_default_result_storage(uid, tmp_path: Path, api_url):
    """`PUT /admin/storage` names a block; flows without their own result
    storage then persist there (the client reads the setting per run)."""
    import httpx

    block_id = LocalFileSystem(basepath=str(tmp_path)).save(f"compat-default-storage-{uid}")

    @flow(name=f"compat-default-storage-{uid}", persist_result=True)
    def answer() -> int:
        return 7

    with httpx.Client(base_url=api_url) as http:
        r = http.put("/admin/storage", json={"default_result_storage_block_id": str(block_id)})
        assert r.status_code == 200, r.text
        try:
            assert http.get("/admin/storage").json() == {"default_result_storage_block_id": str(block_id)}
            state = answer(return_state=True)
            assert state.result() == 7
            assert any(tmp_path.iterdir()), "the result was written to the default storage block"
        finally:
            assert http.delete("/admin/storage").status_code == 204
        assert http.get("/admin/storage").json() == {"default_result_storage_block_id": None}
