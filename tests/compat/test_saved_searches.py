"""`/saved_searches`: the UI's saved filter views, upserted by name."""

from __future__ import annotations

import httpx


def test_saved_searches_upsert_read_filter_delete(uid, api_url):
    flt = {"object": "flow_run", "property": "state", "type": "state", "operation": "or", "value": ["FAILED", "CRASHED"]}
    with httpx.Client(base_url=api_url) as http:
        created = http.put("/saved_searches/", json={"name": f"b-{uid}", "filters": [flt]})
        assert created.status_code == 201
        body = created.json()
        assert set(body) == {"id", "created", "updated", "name", "filters"}
        assert (body["name"], body["filters"]) == (f"b-{uid}", [flt])

        # Same name: the same search, with the new filters.
        replaced = http.put("/saved_searches/", json={"name": f"b-{uid}", "filters": [{**flt, "value": None}]})
        assert replaced.status_code == 200
        assert replaced.json()["id"] == body["id"]
        assert replaced.json()["filters"] == [{**flt, "value": None}]
        assert http.get(f"/saved_searches/{body['id']}").json()["filters"] == [{**flt, "value": None}]

        other = http.put("/saved_searches/", json={"name": f"a-{uid}"}).json()
        assert other["filters"] == []
        names = [s["name"] for s in http.post("/saved_searches/filter", json={}).json()]
        assert names.index(f"a-{uid}") < names.index(f"b-{uid}")
        assert len(http.post("/saved_searches/filter", json={"limit": 1}).json()) == 1

        bad = http.put("/saved_searches/", json={"name": f"c-{uid}", "filters": [{"object": "flow_run"}]})
        assert bad.status_code == 422
        extra = http.put("/saved_searches/", json={"name": f"c-{uid}", "nope": 1})
        assert extra.status_code == 422

        assert http.delete(f"/saved_searches/{other['id']}").status_code == 204
        gone = http.get(f"/saved_searches/{other['id']}")
        assert (gone.status_code, gone.json()) == (404, {"detail": "Saved search not found"})
        assert http.delete(f"/saved_searches/{other['id']}").status_code == 404
        # b-{uid} stays, so the suite's closing replay check covers saved searches.
