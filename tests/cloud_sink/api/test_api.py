"""The HTTP API on a real uvicorn, over a sink database a real shift filled (SQLite and
PostgreSQL): scope, roles, tokens, the clip with ranges, figures equal to ``sink report``."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import httpx
import pytest

from cloud_sink import report, wire
from cloud_sink.alerts import OFFLINE_RULE, DeviceWatch, SiteAlerts, stored_alerts
from cloud_sink.api import accounts, queries
from cloud_sink.db import transaction
from cloud_sink.models import tables
from cloud_sink.speech.engines import Transcript
from cloud_sink.speech.worker import Transcriber
from tests.cloud_sink.api.conftest import OTHER_SITE, PASSWORD, SITE, Server, World


def all_contacts(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/contacts", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_health_openapi_docs_and_metrics(world: World) -> None:
    with world.client() as c:
        health = c.get("/healthz").json()
        assert health["status"] == "ok"
        assert health["database"]
        assert health["last_ingest"]
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert "/api/v1/contacts" in spec["paths"]
        assert c.get("/docs").status_code == 200
        metrics = c.get("/metrics").text
    total = sum(world.filled.contacts.values())
    assert re.search(rf"^contactpoint_sink_contacts {total}\.0$", metrics, re.M), metrics
    assert "contactpoint_devices_online" in metrics
    assert "contactpoint_api_request_seconds_bucket" in metrics


def test_no_token_401_bad_token_401_wrong_role_403(world: World) -> None:
    with world.client() as c:
        r = c.get("/api/v1/contacts")
        assert r.status_code == 401
        assert r.json()["field"] == "Authorization"
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.get("/api/v1/contacts", headers={"Authorization": "Bearer cpt_not-a-token"})
        assert r.status_code == 401
    with world.client("viewer_a") as c:
        assert c.get("/api/v1/contacts").status_code == 403
        assert c.get("/api/v1/figures").status_code == 200
        assert c.get("/api/v1/alerts").status_code == 200
        assert c.get("/api/v1/dead-letters").status_code == 403
    with world.client("manager_a") as c:
        assert c.get("/api/v1/dead-letters").status_code == 403
        assert c.get("/api/v1/audit").status_code == 403
    with world.client("admin") as c:
        assert c.get("/api/v1/dead-letters").status_code == 200


def test_expired_and_revoked_tokens_are_refused(world: World) -> None:
    db = world.db()
    now = time.time_ns()
    try:
        short = accounts.create_token(
            db, role="admin", sites=[], name="short", now_ns=now, expires_ns=now + 1_500_000_000
        )
        revoked = accounts.create_token(db, role="admin", sites=[], name="gone", now_ns=now)
    finally:
        db.close()
    with httpx.Client(base_url=world.url) as c:
        for new in (short, revoked):
            ok = c.get("/api/v1/me", headers={"Authorization": f"Bearer {new.token}"})
            assert ok.status_code == 200
            assert ok.json()["role"] == "admin"
        db = world.db()
        try:
            assert accounts.revoke_token(db, revoked.id, time.time_ns())
        finally:
            db.close()
        r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {revoked.token}"})
        assert r.status_code == 401
        deadline = short.expires_ns or 0
        while time.time_ns() < deadline:  # the token's own expiry, not a guess
            time.sleep(0.05)
        r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {short.token}"})
        assert r.status_code == 401


def test_contacts_scope_pagination_and_filters(world: World) -> None:
    with world.client("admin") as admin, world.client("manager_a") as manager:
        everything = all_contacts(admin, limit=500)
        assert len(everything) == sum(world.filled.contacts.values())
        paged = all_contacts(admin, limit=3)
        assert [(c["device"], c["id"]) for c in paged] == [
            (c["device"], c["id"]) for c in everything
        ]
        keys = [(c["start"], c["device"], c["id"]) for c in everything]
        assert keys == sorted(keys)
        mine = all_contacts(manager, limit=4)
        assert len(mine) == world.filled.contacts[SITE]
        assert {c["site"] for c in mine} == {SITE}
        # asking for another site's contacts gives nothing of it
        assert all_contacts(manager, site=OTHER_SITE) == []
        negative = all_contacts(admin, tag="negative")
        others = all_contacts(admin, tag_none="negative")
        assert negative
        assert all("negative" in c["tags"] for c in negative)
        assert all("negative" not in c["tags"] for c in others)
        assert len(negative) + len(others) == len(everything)
        either = all_contacts(admin, tag_any=["negative", "positive"])
        assert {c["id"] for c in either} == {
            c["id"] for c in everything if {"negative", "positive"} & set(c["tags"])
        }
        first = everything[len(everything) // 2]
        later = all_contacts(admin, **{"from": first["start"]})
        assert later
        assert min(c["start"] for c in later) >= first["start"]
        with_audio = all_contacts(admin, has_audio=True)
        assert len(with_audio) == len(everything)
        bad = admin.get("/api/v1/contacts", params={"from": "yesterday"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "from"
        assert "2026-11-23" in bad.json()["detail"]
        bad = admin.get("/api/v1/contacts", params={"cursor": "garbage!"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "cursor"
        # PostgreSQL refuses NUL in text: a clear 422 on both engines, never a 500
        bad = admin.get("/api/v1/contacts", params={"staff": "an\x00na"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "staff"
        bad = admin.get("/api/v1/alerts", params={"site": "\x00"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "site"
        bad = admin.get("/api/v1/contacts", params={"limit": 0})
        assert bad.status_code == 422
        assert bad.json()["field"] == "limit"


def test_other_site_is_404_never_data(world: World) -> None:
    with world.client("admin") as admin, world.client("manager_a") as manager:
        theirs = all_contacts(admin, site=OTHER_SITE)[0]
        base = f"/api/v1/contacts/{theirs['device']}/{theirs['id']}"
        assert admin.get(base).status_code == 200
        for path in (base, base + "/clip"):
            r = manager.get(path)
            assert r.status_code == 404
            assert theirs["site"] not in r.text
        r = manager.post(base + "/reasons", json={"reasons": ["rude"]})
        assert r.status_code == 404


def test_one_contact_and_its_clip_with_ranges(world: World) -> None:
    with world.client("manager_a") as c:
        item = all_contacts(c, tag="negative")[0]
        detail = c.get(f"/api/v1/contacts/{item['device']}/{item['id']}").json()
        assert detail["tags"] == item["tags"]
        assert detail["events"]
        assert any(e["kind"] == "red" for e in detail["events"])
        audio = detail["audio"]
        assert audio["available"]
        assert audio["codec"] == "wav"
        whole = c.get(audio["url"])
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "audio/wav"
        assert hashlib.sha256(whole.content).hexdigest() == audio["sha256"]
        assert whole.headers["etag"] == f'"{audio["sha256"]}"'
        assert len(whole.content) == audio["bytes"]
        disposition = whole.headers["content-disposition"]
        assert disposition.startswith("inline; filename=")
        assert item["id"][:8] in disposition
        part = c.get(audio["url"], headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206
        assert part.content == whole.content[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
        tail = c.get(audio["url"], headers={"Range": "bytes=-10"})
        assert tail.status_code == 206
        assert tail.content == whole.content[-10:]
        beyond = c.get(audio["url"], headers={"Range": f"bytes={len(whole.content)}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(whole.content)}"
        same = c.get(audio["url"], headers={"If-None-Match": whole.headers["etag"]})
        assert same.status_code == 304
        assert same.content == b""
    with world.client("admin") as admin:
        log = admin.get("/api/v1/audit").json()
    mine = [r for r in log if r["contact_id"] == item["id"] and r["who"].endswith("t-mgr")]
    assert mine
    assert mine[0]["action"] == "listen"
    assert mine[0]["site"] == SITE


def test_path_traversal_on_clip_routes(world: World) -> None:
    with world.client("admin") as c:
        item = all_contacts(c, site=SITE)[0]
        for path in (
            "/api/v1/contacts/..%2F..%2F..%2Fetc/passwd/clip",
            "/api/v1/contacts/../../etc/passwd/clip",
            f"/api/v1/contacts/{item['device']}/..%2F{item['id']}/clip",
            "/api/v1/contacts/%2e%2e/%2e%2e/clip",
        ):
            r = c.get(path)
            assert r.status_code in (404, 422), (path, r.status_code)
            assert "root:" not in r.text
        # a row whose path leads out of the clips directory is refused, never opened
        secret = world.filled.data_dir / "secret.txt"
        secret.write_text("root:x:0:0\n")
        db = world.db()
        k = tables(db).clips
        where = (k.device == item["device"]) & (k.clip_id == item["id"])
        try:
            original = k.select(k.path).where(where).scalar()
            with transaction(db):
                k.update(path="clips/../secret.txt").where(where).execute()
            r = c.get(f"/api/v1/contacts/{item['device']}/{item['id']}/clip")
            assert r.status_code == 404
            assert "root:" not in r.text
        finally:
            with transaction(db):
                k.update(path=original).where(where).execute()
            db.close()


def test_figures_are_the_numbers_of_sink_report(world: World) -> None:
    db = world.db()
    try:
        contacts, events = report.load(db, world.filled.data_dir)
    finally:
        db.close()
    for by in ("day", "hour", "staff", "device", "site"):
        expected = report.build(contacts, events, by=by)
        with world.client("admin") as c:
            got = c.get("/api/v1/figures", params={"by": by, "tz": "UTC"}).json()
        assert got["groups"] == [row.as_json() for row in expected.rows]
        assert got["total"] == expected.total.as_json()
    # a viewer of site A gets site A's numbers only
    mine = [c for c in contacts if c["site"] == SITE]
    loose = [e for e in events if e["site"] == SITE]
    with world.client("viewer_a") as c:
        got = c.get("/api/v1/figures").json()
    assert got["total"] == report.build(mine, loose).total.as_json()
    with world.client("admin") as c:
        bad = c.get("/api/v1/figures", params={"tz": "Mars/Olympus"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "tz"


def test_reasons_tick_report_and_remove(world: World) -> None:
    with world.client("manager_a") as c:
        codes = [r["code"] for r in c.get("/api/v1/reasons").json()]
        assert "rude" in codes
        item = all_contacts(c, tag="negative")[-1]
        url = f"/api/v1/contacts/{item['device']}/{item['id']}/reasons"
        before = {r["reason"]: r["contacts"] for r in c.get("/api/v1/reasons/report").json()}
        r = c.post(url, json={"reasons": ["long_wait", "rude"], "note": "queue"})
        assert r.status_code == 201
        assert {a["reason"] for a in r.json()} >= {"long_wait", "rude"}
        after = {r["reason"]: r["contacts"] for r in c.get("/api/v1/reasons/report").json()}
        assert after.get("long_wait", 0) == before.get("long_wait", 0) + 1
        listed = all_contacts(c, reason="long_wait")
        assert item["id"] in {x["id"] for x in listed}
        assert c.delete(url + "/long_wait").status_code == 200
        assert c.delete(url + "/long_wait").status_code == 404
        bad = c.post(url, json={"reasons": ["not_a_reason"]})
        assert bad.status_code == 422
        assert "rude" in bad.json()["detail"]
        empty = c.post(url, json={"reasons": []})
        assert empty.status_code == 422
        assert empty.json()["field"] == "reasons"
    with world.client("viewer_a") as v:
        assert v.post(url, json={"reasons": ["rude"]}).status_code == 403


def test_devices_and_alerts_are_scoped(world: World) -> None:
    with world.client("manager_a") as c:
        devices = c.get("/api/v1/devices").json()
        assert {d["site"] for d in devices} == {SITE}
        assert all(d["version"] for d in devices)
        alerts = c.get("/api/v1/alerts").json()
        assert all(a["site"] == SITE for a in alerts)
    with world.client("admin") as c:
        assert {d["site"] for d in c.get("/api/v1/devices").json()} == {SITE, OTHER_SITE}


def login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token.group(1)}
    )


def test_browser_session_csrf_and_cookie_flags(world: World) -> None:
    with httpx.Client(base_url=world.url) as c:
        r = login(c, "maria", PASSWORD)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "cp_session=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        me = c.get("/api/v1/me").json()
        assert me["name"] == "maria"
        assert me["role"] == "manager"
        assert me["sites"] == [SITE]
        item = all_contacts(c, tag="negative")[0]
        url = f"/api/v1/contacts/{item['device']}/{item['id']}/reasons"
        refused = c.post(url, json={"reasons": ["rude"]})
        assert refused.status_code == 403
        assert refused.json()["field"] == "X-CSRF-Token"
        done = c.post(url, json={"reasons": ["rude"]}, headers={"X-CSRF-Token": me["csrf"]})
        assert done.status_code == 201
        # the web page's form post: the session's token in the form, or refused
        form = f"/contacts/{item['device']}/{item['id']}/reasons"
        forged = c.post(form, data={"reason": ["equipment"], "csrf_token": "forged"})
        assert forged.status_code == 403
        assert forged.json()["field"] == "csrf_token"
        ok = c.post(form, data={"reason": ["rude", "equipment"], "csrf_token": me["csrf"]})
        assert ok.status_code == 303
        assert "saved=1" in ok.headers["location"]
    with httpx.Client(base_url=world.url) as c:
        c.get("/login")
        r = c.post("/login", data={"username": "maria", "password": PASSWORD, "csrf_token": "x"})
        assert r.status_code == 403  # a login form posted from elsewhere


class _NoEngine:
    """The transcripts below are stored as a worker stores them; nothing is recognised here."""

    name = "scripted"
    model = "none"

    def transcribe(self, samples: Any) -> Transcript:
        raise AssertionError("not called: the test stores the transcripts itself")


@pytest.fixture(scope="module")
def said(world: World) -> tuple[tuple[str, str], ...]:
    """Transcripts for two contacts of SITE (a, b) and one of OTHER_SITE (x), stored by the
    worker's own claim and store; returns (a, b, x)."""
    with world.client("admin") as c:
        mine = [i for i in all_contacts(c, site=SITE) if i["has_audio"]]
        other = [i for i in all_contacts(c, site=OTHER_SITE) if i["has_audio"]]
    a, b = (mine[0]["device"], mine[0]["id"]), (mine[1]["device"], mine[1]["id"])
    x = (other[0]["device"], other[0]["id"])
    texts = {
        a: "Здравствуйте! Спасибо за покупку, we recommended the blue one",
        b: "hello there, anything else",
        x: "оплата покупки картой",
    }
    db = world.db()
    try:
        worker = Transcriber(db, world.filled.data_dir, _NoEngine(), worker_id="api-test")
        stored = 0
        for cand in worker.candidates(limit=10_000):
            text = texts.get((cand.device, cand.clip_id))
            if text is not None:
                assert worker.claim(cand)
                assert worker.store(cand, Transcript(text, (), "ru", "scripted", "none"), 1.0, 0.1)
                stored += 1
        assert stored == len(texts)
    finally:
        db.close()
    return a, b, x


@pytest.mark.parametrize("per_row", [False, True], ids=["joined", "per-row"])
def test_text_finds_contacts_by_the_words_of_their_transcript(
    world: World, said: tuple[tuple[str, str], ...], per_row: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways the list finds words on PostgreSQL (through the index, or per contact when
    the words are common: here from one match on) give the same contacts."""
    if per_row:
        monkeypatch.setattr(queries, "TEXT_PER_ROW_FROM", 1)
    a, b, x = said

    def found(who: str, **params: Any) -> set[tuple[str, str]]:
        with world.client(who) as client:
            return {(i["device"], i["id"]) for i in all_contacts(client, **params)}

    # a Russian lemma finds its inflected forms; English by its stem; every word must be there
    assert found("admin", text="покупка") == {a, x}
    assert found("admin", text="ПОКУПКУ") == {a, x}
    assert found("admin", text="recommends") == {a}
    assert found("admin", text="спасибо покупка") == {a}
    assert found("admin", text="hello") == {b}
    assert found("admin", text="absent words") == set()
    # with the other filters, by pages of one, and within a manager's sites only
    assert found("admin", text="покупка", site=OTHER_SITE) == {x}
    assert found("admin", text="покупка", limit=1) == {a, x}
    assert found("manager_a", text="покупка") == {a}
    with world.client("admin") as c:
        r = c.get("/api/v1/contacts", params={"text": "?! --"})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "text"
        params = c.get("/openapi.json").json()["paths"]["/api/v1/contacts"]["get"]["parameters"]
        assert "text" in {p["name"] for p in params}


def test_a_viewer_may_not_search_transcripts(world: World) -> None:
    with world.client("viewer_a") as c:
        r = c.get("/api/v1/contacts", params={"text": "покупка"})
    assert r.status_code == 403, r.text
    assert r.json()["field"] == "text"
    assert "may not search transcripts" in r.json()["detail"]


def test_the_contacts_page_searches_transcripts(
    world: World, said: tuple[tuple[str, str], ...]
) -> None:
    a, _, _ = said
    with httpx.Client(base_url=world.url) as c:
        assert login(c, "maria", PASSWORD).status_code == 303
        page = c.get("/contacts", params={"text": "покупка", "lang": "ru"})
    assert page.status_code == 200, page.text
    assert re.findall(r'class="contact" data-id="([^"]+)"', page.text) == [a[1]]
    assert 'name="text" value="покупка"' in page.text
    assert "Слова в записи" in page.text


def test_login_is_rate_limited(world: World) -> None:
    db = world.db()
    try:
        accounts.add_user(db, "victim", PASSWORD, role="viewer", sites=[], now_ns=time.time_ns())
    finally:
        db.close()
    # a server of its own: its limiter's memory must not lock the other tests out
    with Server(world.settings) as server, httpx.Client(base_url=server.url) as c:
        for _ in range(world.settings.login_attempts):
            assert login(c, "victim", "wrong password!").status_code == 303
        r = login(c, "victim", PASSWORD)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        # the address is locked out for every user name, the right password included
        assert login(c, "maria", PASSWORD).status_code == 429


def test_no_password_token_or_session_id_in_any_log_line(
    world: World, api_log: pytest.LogCaptureFixture
) -> None:
    with httpx.Client(base_url=world.url) as c:
        r = login(c, "maria", PASSWORD)
        session = r.cookies.get("cp_session") or c.cookies.get("cp_session")
        assert session
        c.get("/api/v1/contacts")
        c.get("/api/v1/contacts", headers={"Authorization": f"Bearer {world.tokens['admin']}"})
        c.get("/api/v1/contacts", headers={"Authorization": "Bearer cpt_wrong-secret-xyz"})
    client_side = ("httpx", "httpcore")  # the test's own HTTP client, not the server
    lines = [r.getMessage() for r in api_log.records if not r.name.startswith(client_side)]
    assert any("/api/v1/contacts" in line for line in lines), "the access log was not captured"
    for secret in (PASSWORD, world.tokens["admin"], session, "cpt_wrong-secret-xyz"):
        assert not [line for line in lines if secret in line]


def test_token_and_user_commands(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from cloud_sink.cli import main

    place = ["--data", str(world.filled.data_dir)]
    if world.filled.db_url:
        place += ["--db", world.filled.db_url]
    assert main(["sink", "token", "create", "--role", "manager", "--site", SITE, *place]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("cpt_")
    assert token not in out.err
    with httpx.Client(base_url=world.url) as c:
        me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["role"] == "manager"
        assert me["sites"] == [SITE]
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert main(["sink", "user", "add", "ivan", "--role", "viewer", *place]) == 0
    assert main(["sink", "user", "remove", "nobody", *place]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err
    assert main(["sink", "token", "create", "--role", "admin", "--expires", "soon", *place]) == 2
    assert "--expires 'soon'" in capsys.readouterr().err


def test_device_offline_alerts_are_the_stored_ones(world: World) -> None:
    """The sink's stored device_offline alerts are listed (active, then cleared); nothing is
    made up at read time for a device that is silent or whose last status said offline."""
    watch = DeviceWatch(None, SiteAlerts([]))
    now = time.time_ns()
    gone = wire.Status(
        online=False, version="1", boot_id="b", outbox_depth=0, free_disk_bytes=0,
        clock_synced=True, at="2026-11-23T09:10:00.000Z",
    )  # fmt: skip
    db = world.db()
    try:
        d = tables(db).devices
        devices = [r for (r,) in d.select(d.device).where(d.site == SITE).tuples()]
        with transaction(db):  # (the filling sink may have raised it already: stopped devices)
            for device in devices:
                watch.seen(db, SITE, device, gone, now)
        stored = {a["id"] for a in stored_alerts(db) if a["rule"] == OFFLINE_RULE}
    finally:
        db.close()

    def offline(who: str) -> list[dict[str, Any]]:
        with world.client(who) as c:
            rows = c.get("/api/v1/alerts").json()
        return [a for a in rows if a["rule"] == OFFLINE_RULE]

    listed = offline("manager_a")
    assert sorted(a["device"] for a in listed if a["active"]) == sorted(devices)
    assert all(a["site"] == SITE for a in listed)
    assert {a["id"] for a in offline("admin")} == stored  # only stored ones, none made up
    db = world.db()
    try:
        with transaction(db):
            watch.seen(db, SITE, devices[0], None, now + 1)
    finally:
        db.close()
    back = [a for a in offline("manager_a") if a["device"] == devices[0]]
    assert [a["active"] for a in back][-1] is False
    assert back[-1]["cleared_at"]
    assert sum(a["active"] for a in back) == 0
