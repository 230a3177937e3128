"""Routing by tag: rules, the durable per-destination queue, and every destination against a
real server on loopback (Bot-API-like HTTP, webhook receiver, pyftpdlib, aiosmtpd)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.clock import NS
from edge.config import Config, ConfigError, RoutesSection, parse_model
from edge.publish import wire
from edge.records import ClipInfo, ContactRecord, OutboxMessage
from edge.routes import (
    RetryLater,
    Route,
    RouteRunner,
    RouteWorker,
    SlidingWindow,
    TokenBucket,
    build_routes,
    destinations,
    plan_routes,
)
from edge.routes.ftp import Ftp
from edge.routes.mail import Email
from edge.routes.telegram import Telegram
from edge.routes.webhook import Webhook
from edge.store import RouteRow, Store
from tests.edge.routes_servers import (
    TOKEN,
    bot_api,
    free_port,
    ftp_server,
    self_signed,
    smtp_server,
    webhook_receiver,
)

START = 1_795_424_400 * NS  # 2026-11-23T05:00:00Z
KEY = b"hmac-key-for-tests"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def contact(
    data: Path, n: int, tags: tuple[str, ...], *, size: int = 3000, staff: str | None = None
) -> ContactRecord:
    cid = f"{n:032x}"
    rel = f"clips/{cid}.wav"
    body = b"RIFF" + bytes((i * 7 + n) % 256 for i in range(size - 4))
    (data / "clips").mkdir(parents=True, exist_ok=True)
    (data / rel).write_bytes(body)
    start = START + n * 60 * NS
    clip = ClipInfo(
        contact_id=cid,
        path=rel,
        codec="wav",
        sample_rate=16000,
        start_index=0,
        end_index=16000,
        start_ns=n * 60 * NS,
        end_ns=n * 60 * NS + NS,
        sha256=hashlib.sha256(body).hexdigest(),
        bytes=size,
    )
    return ContactRecord(
        id=cid,
        mode="presence",
        start_ns=n * 60 * NS,
        end_ns=n * 60 * NS + 30 * NS,
        start_wall_ns=start,
        end_wall_ns=start + 30 * NS,
        ended_by="departure",
        tags=tags,
        events=(),
        clip=clip,
        clock_synced=True,
        boot_id="boot",
        staff=staff,
    )


def routes_cfg(**sections: Any) -> RoutesSection:
    return parse_model(Config, {"routes": sections}, "test.toml").routes


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "bot-token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "hmac-key"
    path.write_bytes(KEY + b"\n")
    return str(path)


@pytest.fixture
def store(data: Path) -> Iterator[Store]:
    with Store.open(data / "contactpoint.db") as opened:
        yield opened


def save_routed(
    store: Store, cfg: RoutesSection, record: ContactRecord, outbox: list[OutboxMessage]
) -> bool:
    """Save a contact as the core does: its routes planned by the rules, handed to the store."""
    jobs, extra = plan_routes(cfg, record, outbox, device="cp-0001", site="site-1")
    return store.save_contact(record, [*outbox, *extra], routes=jobs)


def save(store: Store, cfg: RoutesSection, *records: ContactRecord) -> None:
    for record in records:
        assert save_routed(store, cfg, record, [wire.contact_message(record, "cp-0001", "site-1")])


def worker(route: Route, store: Store, clock: FakeClock, rnd: float = 0.0) -> RouteWorker:
    return RouteWorker(
        route,
        store.routes,
        backoff_min_s=2.0,
        backoff_max_s=60.0,
        clock=clock,
        random_source=lambda: rnd,
    )


def pump(w: RouteWorker, clock: FakeClock, steps: int = 50) -> None:
    """Run ``w`` until its queue is empty, jumping the fake clock to each time it asks for."""
    for _ in range(steps):
        due = w.step()
        if due is None:
            return
        clock.t = max(clock.t, due)
    raise AssertionError(f"queue of {w.route.name} not empty after {steps} steps")


# --- rules and config --------------------------------------------------------------------------

RULES = {
    "ftp": [{"name": "archive", "host": "127.0.0.1"}],
    "telegram": [{"name": "quality", "chat_id": "42", "bot_token_file": "/x"}],
    "webhook": [{"name": "central", "url": "http://127.0.0.1:1/hook"}],
    "mqtt": [{"name": "managers"}],
    "rules": [
        {"to": ["archive"]},
        {"to": ["quality", "central"], "tags": ["negative"]},
        {"to": ["managers", "central"], "tags": ["request"], "unless_tags": ["force_majeure"]},
        {"to": ["quality"], "kinds": ["alert"]},
    ],
}


def test_rules_pick_destinations_by_tag_mode_and_kind() -> None:
    cfg = routes_cfg(**RULES)
    assert destinations(cfg, "contact", ["positive"], "presence") == ["archive"]
    assert destinations(cfg, "contact", ["negative"], "survey") == ["archive", "quality", "central"]
    assert destinations(cfg, "contact", ["request"], "window") == ["archive", "managers", "central"]
    assert destinations(cfg, "contact", ["request", "force_majeure"], "window") == ["archive"]
    assert destinations(cfg, "alert", ["negatives"]) == ["quality"]
    only_survey = routes_cfg(
        mqtt=[{"name": "m"}], rules=[{"to": ["m"], "tags": ["silent"], "modes": ["survey"]}]
    )
    assert destinations(only_survey, "contact", ["silent"], "survey") == ["m"]
    assert destinations(only_survey, "contact", ["silent"], "presence") == []


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({"mqtt": [{"name": "archive"}], "rules": [{"to": ["archiv"]}]}, "did you mean 'archive'"),
        ({"rules": [{"to": ["x"]}]}, "[[routes.telegram]]"),
        ({"mqtt": [{"name": "a"}, {"name": "a"}]}, "two route destinations are named 'a'"),
        (
            {"webhook": [{"name": "w", "url": "http://h/", "template": "{tag}"}]},
            "unknown placeholder {tag} (did you mean {tags}?)",
        ),
        ({"clip_url": "https://x/{contact}.wav"}, "unknown placeholder {contact}"),
        ({"telegram": [{"name": "t", "chat_id": "42"}]}, "bot_token_file"),
        ({"webhook": [{"name": "w", "url": "http://h/", "secret": "s"}]}, "Did you mean"),
    ],
)
def test_bad_routes_config_is_refused_naming_key_and_fix(
    routes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_model(Config, {"routes": routes}, "device.toml")
    assert expected in str(caught.value)
    assert "device.toml" in str(caught.value)


def test_a_missing_secret_file_stops_the_start_naming_the_key(data: Path) -> None:
    telegram = {"name": "quality", "chat_id": "42", "bot_token_file": "/nope"}
    cfg = routes_cfg(**{**RULES, "telegram": [telegram]})
    with pytest.raises(Exception, match=r"routes\.telegram\[quality\]\.bot_token_file.*/nope"):
        build_routes(cfg, data)


# --- the queue ---------------------------------------------------------------------------------


def test_deliveries_are_queued_with_their_contact_once_per_destination(
    store: Store, data: Path
) -> None:
    cfg = routes_cfg(**RULES)
    negative = contact(data, 1, ("negative", "not_positive"))
    request = contact(data, 2, ("request",))
    save(store, cfg, negative, request)
    rows = store.routes.open_rows()
    assert [(r.destination, r.ref) for r in rows] == [
        ("archive", negative.id),
        ("quality", negative.id),
        ("central", negative.id),
        ("archive", request.id),
        ("central", request.id),
    ]
    assert len({r.delivery_id for r in rows}) == 5
    # the mqtt destination is an outbox row, sent by the publisher on its own topic
    routed = [r for r in store.outbox.pending() if r.kind == "route"]
    assert [(r.ref, r.payload["route"], r.payload["about"]) for r in routed] == [
        (request.id, "managers", "contact")
    ]
    assert routed[0].payload["contact"]["tags"] == ["request"]
    # the same contact again writes nothing, routes included
    again = [wire.contact_message(request, "cp-0001", "site-1")]
    assert not save_routed(store, cfg, request, again)
    assert store.routes.depth() == 5


def test_alerts_saved_with_a_contact_are_routed_in_the_same_transaction(
    store: Store, data: Path
) -> None:
    cfg = routes_cfg(**RULES)
    record = contact(data, 3, ("positive",))
    alert = OutboxMessage(
        "a" * 32,
        "alert",
        "b" * 32,
        {"alert": {"id": "b" * 32, "rule": "negatives", "text": "4 red"}},
    )
    assert save_routed(
        store, cfg, record, [wire.contact_message(record, "cp-0001", "site-1"), alert]
    )
    assert [(r.destination, r.kind) for r in store.routes.open_rows()] == [
        ("archive", "contact"),
        ("quality", "alert"),
    ]


def test_token_bucket_and_sliding_window_with_a_given_clock() -> None:
    bucket = TokenBucket(1.0, 1)
    assert bucket.wait_s(10.0) == 0
    bucket.take(10.0)
    assert bucket.wait_s(10.25) == pytest.approx(0.75)
    assert bucket.wait_s(11.0) == 0
    window = SlidingWindow(3, 60.0)
    for t in (0.0, 1.0, 2.0):
        assert window.wait_s(t) == 0
        window.take(t)
    assert window.wait_s(30.0) == pytest.approx(30.0)  # the first of the three leaves at 60
    assert window.wait_s(60.0) == 0


# --- Telegram ----------------------------------------------------------------------------------


def telegram_cfg(base_url: str, token_file: str, **extra: Any) -> RoutesSection:
    tg = {"name": "quality", "chat_id": "42", "bot_token_file": token_file, "base_url": base_url}
    return routes_cfg(
        telegram=[{**tg, **extra}],
        rules=[{"to": ["quality"], "tags": ["negative"]}],
        clip_url="https://clips.example/{site}/{device}/{contact_id}.{ext}",
    )


def test_telegram_uploads_negative_contacts_with_their_clip_and_nothing_else(
    store: Store, data: Path, token_file: str
) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file)
        negative = contact(data, 1, ("negative", "not_positive"), staff="anna")
        save(store, cfg, negative, contact(data, 2, ("positive",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        pump(worker(route, store, clock), clock)
    [call] = api.calls
    assert call.method == "sendAudio"
    assert call.fields["chat_id"] == "42"
    assert call.file_bytes == (data / negative.clip.path).read_bytes()  # type: ignore[union-attr]
    assert call.file_name is not None
    assert call.file_name.endswith(f"_{negative.id}.wav")
    caption = call.fields["caption"]
    assert "[site-1/cp-0001] negative, not_positive" in caption
    assert "Staff: anna" in caption
    assert store.routes.open_rows() == []
    assert store.routes.counts()["quality"].done == 1
    assert TOKEN not in repr(route)
    assert TOKEN not in repr(route.__dict__)


def test_telegram_429_is_obeyed_to_the_second(store: Store, data: Path, token_file: str) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file)
        save(store, cfg, contact(data, 1, ("negative",)))
        api.throttle.append(7)
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        w = worker(route, store, clock)
        due = w.step()
        assert due == pytest.approx(clock.t + 7)  # retry_after, not the 2 s backoff
        [row] = store.routes.open_rows()
        assert row.attempts == 1
        assert "429" in row.last_error
        clock.t += 6.9
        assert w.step() == due  # too early: nothing is sent
        assert api.calls == []
        assert api.throttle == []
        assert due is not None
        clock.t = due
        w.step()
        assert len(api.calls) == 1
        assert store.routes.depth() == 0


def test_telegram_sends_one_message_a_second_per_chat_and_20_a_minute_per_group(
    store: Store, data: Path, token_file: str
) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file, chat_id="-100500", group_per_min=3, send_clip=False)
        save(store, cfg, *(contact(data, n, ("negative",)) for n in range(1, 6)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        w = worker(route, store, clock)
        start = clock.t
        sent_at: list[float] = []
        for _ in range(30):
            before = len(api.calls)
            due = w.step()
            if len(api.calls) > before:
                sent_at.append(clock.t - start)
            if due is None:
                break
            clock.t = max(clock.t, due)
    assert [c.method for c in api.calls] == ["sendMessage"] * 5
    # 1/s per chat, then the group's 3 a minute: the 4th waits for the 1st to age out
    assert sent_at == pytest.approx([0.0, 1.0, 2.0, 60.0, 61.0])


def test_telegram_400_becomes_a_dead_letter_and_the_queue_moves_on(
    store: Store, data: Path, token_file: str
) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file)
        first, second = contact(data, 1, ("negative",)), contact(data, 2, ("negative",))
        save(store, cfg, first, second)
        api.known_chats.discard("42")
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        w = worker(route, store, clock)
        w.step()
        api.known_chats.add("42")
        pump(w, clock)
    [dead] = store.routes.failed_rows()
    assert dead.ref == first.id
    assert "chat not found" in dead.last_error
    assert TOKEN not in dead.last_error
    [call] = api.calls
    assert call.file_name is not None
    assert call.file_name.endswith(f"_{second.id}.wav")
    assert w.stats.refused == 1
    assert w.stats.delivered == 1


def test_telegram_sends_a_link_for_a_clip_over_the_upload_limit(
    store: Store, data: Path, token_file: str
) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file, max_upload_mb=0.001)  # 1048 bytes
        big = contact(data, 1, ("negative",), size=5000)
        small = contact(data, 2, ("negative",), size=1000)
        save(store, cfg, big, small)
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        pump(worker(route, store, clock), clock)
    assert [c.method for c in api.calls] == ["sendMessage", "sendAudio"]
    assert f"Clip: https://clips.example/site-1/cp-0001/{big.id}.wav" in api.calls[0].fields["text"]


def test_nothing_is_sent_again_after_a_restart(store: Store, data: Path, token_file: str) -> None:
    with bot_api() as (url, api):
        cfg = telegram_cfg(url, token_file)
        save(store, cfg, contact(data, 1, ("negative",)), contact(data, 2, ("negative",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        pump(worker(route, store, clock), clock)
        assert len(api.calls) == 2
        [again] = build_routes(cfg, data)  # a new worker, as after a restart of the daemon
        assert worker(again, store, clock).step() is None
        assert len(api.calls) == 2


# --- webhook -----------------------------------------------------------------------------------


def webhook_cfg(url: str, key_file: str) -> RoutesSection:
    return routes_cfg(
        webhook=[{"name": "central", "url": url, "secret_file": key_file}],
        rules=[{"to": ["central"], "tags": ["negative"]}],
    )


def test_webhook_posts_signed_json_with_a_delivery_id(
    store: Store, data: Path, key_file: str
) -> None:
    with webhook_receiver(KEY) as (url, receiver):
        cfg = webhook_cfg(url, key_file)
        negative = contact(data, 1, ("negative",))
        save(store, cfg, negative, contact(data, 2, ("positive",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        pump(worker(route, store, clock), clock)
    assert receiver.bad_signatures == 0
    [(delivery, body)] = receiver.posts
    assert body["delivery_id"] == delivery
    assert body["kind"] == "contact"
    assert body["contact"]["id"] == negative.id
    assert body["contact"]["tags"] == ["negative"]
    assert (body["device"], body["site"]) == ("cp-0001", "site-1")


def test_webhook_absent_is_retried_with_growing_backoff_until_it_comes_back(
    store: Store, data: Path, key_file: str
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    url = f"http://127.0.0.1:{port}/hook"
    cfg = webhook_cfg(url, key_file)
    save(store, cfg, contact(data, 1, ("negative",)))
    clock = FakeClock()
    [route] = build_routes(cfg, data)
    w = worker(route, store, clock, rnd=0.999)
    delays = []
    for _ in range(4):
        start = clock.t
        due = w.step()
        assert due is not None
        delays.append(due - start)
        clock.t = due
    assert delays == pytest.approx([2.0, 4.0, 8.0, 16.0], rel=0.01)
    [row] = store.routes.open_rows()
    assert row.attempts == 4
    assert "cannot reach" in row.last_error
    with webhook_receiver(KEY, port) as (_, receiver):
        w.step()
    assert len(receiver.posts) == 1
    assert store.routes.depth() == 0


class _Killed(BaseException):
    """The process dies: nothing after it runs."""


class _DiesAfterSending(Route):
    def __init__(self, inner: Route) -> None:
        super().__init__(inner.name)
        self.inner = inner

    def send(self, row: RouteRow) -> None:
        self.inner.send(row)
        raise _Killed  # between the destination's acceptance and the done commit


def test_a_crash_between_send_and_commit_repeats_with_the_same_delivery_id(
    store: Store, data: Path, key_file: str
) -> None:
    with webhook_receiver(KEY) as (url, receiver):
        cfg = webhook_cfg(url, key_file)
        save(store, cfg, contact(data, 1, ("negative",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        with pytest.raises(_Killed):
            worker(_DiesAfterSending(route), store, clock).step()
        [restarted] = build_routes(cfg, data)
        pump(worker(restarted, store, clock), clock)
        [third] = build_routes(cfg, data)
        assert worker(third, store, clock).step() is None
    assert len(receiver.posts) == 2  # at least once ...
    assert len(receiver.unique) == 1  # ... and the receiver sees one delivery id


def test_webhook_400_is_a_dead_letter(store: Store, data: Path, key_file: str) -> None:
    with webhook_receiver(KEY) as (url, receiver):
        receiver.status = 400
        cfg = webhook_cfg(url, key_file)
        save(store, cfg, contact(data, 1, ("negative",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        pump(worker(route, store, clock), clock)
    [dead] = store.routes.failed_rows()
    assert "HTTP 400" in dead.last_error


# --- FTP / FTPS --------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["ftp", "ftps"])
def test_ftp_uploads_every_contact_atomically_into_its_day_directory(
    store: Store, data: Path, tmp_path: Path, tls: bool
) -> None:
    password = tmp_path / "ftp-password"
    password.write_text("s3cret\n")
    cert = self_signed(tmp_path) if tls else None
    root = tmp_path / "ftproot"
    with ftp_server(root, "s3cret", cert) as port:
        cfg = routes_cfg(
            ftp=[
                {
                    "name": "archive",
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "cp",
                    "password_file": str(password),
                    "tls": tls,
                    "ca_file": str(cert[0]) if cert else "",
                }
            ],
            rules=[{"to": ["archive"]}],
        )
        records = [contact(data, 1, ("negative",)), contact(data, 2, ("positive",))]
        save(store, cfg, *records)
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        assert isinstance(route, Ftp)
        pump(worker(route, store, clock), clock)
    day = root / "site-1" / "cp-0001" / "2026-11-23"
    names = sorted(p.name for p in day.iterdir())
    assert not [n for n in names if n.endswith(".part")]
    for record in records:
        [wav] = [n for n in names if n.endswith(f"_{record.id}.wav")]
        assert (day / wav).read_bytes() == (data / record.clip.path).read_bytes()  # type: ignore[union-attr]
        meta = json.loads((day / wav.replace(".wav", ".json")).read_text())
        assert meta["contact"]["id"] == record.id
        assert meta["delivery_id"]
    assert store.routes.depth() == 0


def test_ftp_server_absent_is_retried(store: Store, data: Path) -> None:
    cfg = routes_cfg(
        ftp=[{"name": "archive", "host": "127.0.0.1", "port": free_port(), "timeout_s": 2}],
        rules=[{"to": ["archive"]}],
    )
    save(store, cfg, contact(data, 1, ("positive",)))
    [route] = build_routes(cfg, data)
    [row] = store.routes.open_rows()
    with pytest.raises(RetryLater, match=r"ftp://127\.0\.0\.1"):
        route.send(row)


# --- e-mail ------------------------------------------------------------------------------------


def test_email_carries_the_clip_and_the_delivery_id(store: Store, data: Path) -> None:
    with smtp_server() as (port, box):
        cfg = routes_cfg(
            email=[
                {
                    "name": "quality-mail",
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "sender": "cp@shop.example",
                    "recipients": ["quality@shop.example", "boss@shop.example"],
                }
            ],
            rules=[{"to": ["quality-mail"], "tags": ["negative"]}],
        )
        negative = contact(data, 1, ("negative", "not_positive"))
        save(store, cfg, negative, contact(data, 2, ("positive",)))
        clock = FakeClock()
        [route] = build_routes(cfg, data)
        assert isinstance(route, Email)
        pump(worker(route, store, clock), clock)
    [(rcpt, msg)] = box.messages
    assert rcpt == ["quality@shop.example", "boss@shop.example"]
    assert msg["Subject"] == "[site-1/cp-0001] negative, not_positive"
    assert store.routes.depth() == 0
    assert store.routes.failed_rows() == []
    delivery = msg["X-Contactpoint-Delivery"]
    assert msg["Message-ID"] == f"<{delivery}@shop.example>"
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_content() == (data / negative.clip.path).read_bytes()  # type: ignore[union-attr]
    body = msg.get_body(("plain",))
    assert body is not None
    assert "Clip:" not in body.get_content()
    assert f"Delivery {delivery}" in body.get_content()


def test_smtp_server_absent_is_retried(store: Store, data: Path) -> None:
    cfg = routes_cfg(
        email=[
            {
                "name": "m",
                "host": "127.0.0.1",
                "port": free_port(),
                "security": "none",
                "recipients": ["q@x.example"],
                "timeout_s": 2,
            }
        ],
        rules=[{"to": ["m"]}],
    )
    save(store, cfg, contact(data, 1, ("positive",)))
    [route] = build_routes(cfg, data)
    [row] = store.routes.open_rows()
    with pytest.raises(RetryLater, match=r"smtp://127\.0\.0\.1"):
        route.send(row)


# --- the runner on threads -----------------------------------------------------------------------


def test_the_runner_delivers_every_destination_on_its_own_thread(
    store: Store, data: Path, token_file: str, key_file: str
) -> None:
    with bot_api() as (bot_url, api), webhook_receiver(KEY) as (hook_url, receiver):
        cfg = routes_cfg(
            telegram=[
                {
                    "name": "quality",
                    "chat_id": "42",
                    "bot_token_file": token_file,
                    "base_url": bot_url,
                }
            ],
            webhook=[{"name": "central", "url": hook_url, "secret_file": key_file}],
            rules=[{"to": ["central"]}, {"to": ["quality"], "tags": ["negative"]}],
        )
        runner = RouteRunner(cfg, store, data)
        runner.start()
        try:
            save(store, cfg, contact(data, 1, ("negative",)), contact(data, 2, ("positive",)))
            runner.notify()
            assert runner.drain(10.0)
        finally:
            runner.stop()
    assert len(api.calls) == 1
    assert len(receiver.unique) == 2
    assert {name: s.delivered for name, s in runner.stats().items()} == {"quality": 1, "central": 2}
    assert isinstance(runner.workers[0].route, Telegram)
    assert isinstance(runner.workers[1].route, Webhook)


def test_route_topics_are_spelled_once_and_ignored_by_the_sink(data: Path) -> None:
    from cloud_sink import wire as sink_wire

    record = contact(data, 1, ("negative",))
    message = wire.route_message(
        "managers", "contact", record.id, wire.contact_json(record), device="cp-0001", site="site-1"
    )
    assert message.kind == "route"
    assert message.payload["route"] == "managers"
    topic = wire.route_topic("site-1", "cp-0001", "managers")
    assert topic == "contactpoint/v1/site-1/cp-0001/route/managers"
    parsed = sink_wire.parse(topic, wire.encode_json(message.payload))
    assert isinstance(parsed, sink_wire.Ignored)
