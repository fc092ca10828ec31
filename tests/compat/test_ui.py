"""The Prefect UI served from the client's own bundles, as `prefect server
start` serves it: `/ui-settings`, a browser opening `/` sent to the V2 UI
(or to V1 with its cookie), the scripts and styles the two index pages load
with the base-path placeholder replaced, and the UI's own routes answered
with its index page."""

from __future__ import annotations

import re

import httpx

PLACEHOLDER = "PREFECT_UI_SERVE_BASE_REPLACE_PLACEHOLDER"
HTML = {"accept": "text/html"}


def _local_assets(html: str) -> list[str]:
    """The scripts and styles an index page loads (its icon links name files
    the bundles do not all ship, which both servers answer with 404)."""
    return sorted({u for u in re.findall(r'(?:src|href)="(/[^"]+)"', html) if "/assets/" in u})


def test_ui_settings(base_url):
    settings = httpx.get(f"{base_url}/ui-settings").json()
    assert set(settings) == {
        "api_url", "csrf_enabled", "auth", "flags", "default_ui", "available_uis", "v1_base_url", "v2_base_url",
    }
    # Prefect reports its PREFECT_SERVER_API_PORT (4200 here, whatever
    # `--port` says); this server reports where it listens.
    assert settings["api_url"].startswith("http://") and settings["api_url"].endswith("/api")
    assert (settings["default_ui"], settings["available_uis"]) == ("v2", ["v1", "v2"])
    assert (settings["v1_base_url"], settings["v2_base_url"]) == ("/", "/v2")


def test_browsers_land_on_their_preferred_ui(base_url):
    r = httpx.get(f"{base_url}/", headers=HTML)
    assert r.status_code == 307 and r.headers["location"].rstrip("/") == "/v2"
    r = httpx.get(f"{base_url}/", headers=HTML, cookies={"prefect_ui_version": "v1"})
    assert r.status_code == 200 and "<html" in r.text.lower()


def test_both_uis_load_all_their_files(base_url):
    for index_path in ("/", "/v2/"):
        cookies = {"prefect_ui_version": "v1" if index_path == "/" else "v2"}
        index = httpx.get(f"{base_url}{index_path}", headers=HTML, cookies=cookies, follow_redirects=True)
        assert index.status_code == 200, index_path
        assert PLACEHOLDER not in index.text
        assets = _local_assets(index.text)
        assert assets, f"{index_path} loads no files"
        for asset in assets:
            r = httpx.get(f"{base_url}{asset}")
            assert r.status_code == 200, asset
            if asset.endswith((".js", ".css")):
                assert PLACEHOLDER not in r.text, asset


def test_ui_routes_load_the_index_page(base_url):
    for path in ("/v2/runs", "/flow-runs"):
        r = httpx.get(f"{base_url}{path}", headers=HTML, cookies={"prefect_ui_version": "v1"})
        assert r.status_code == 200 and "<html" in r.text.lower(), path
