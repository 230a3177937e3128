"""Routing by tag through the real pipeline: the README's example shift played by
``run_simulation`` with a broker, a Bot-API-like server and a webhook receiver on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.config import Config, load_config, parse_model
from edge.routes import RouteRunner
from edge.scenario import load_scenario
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from provisioning.broker import LocalBroker
from provisioning.main import main
from tests.edge.routes_servers import TOKEN, bot_api, free_port, webhook_receiver
from tests.edge.test_publisher import Sink

ROOT = Path(__file__).resolve().parents[2]
SHIFT = ROOT / "examples" / "shift.toml"
KEY = b"pipeline-key"


def test_a_shift_is_routed_by_tag_to_telegram_webhook_and_mqtt(
    tmp_path: Path, broker: LocalBroker
) -> None:
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "key").write_bytes(KEY)
    data = tmp_path / "data"
    sink = Sink(broker.port, "contactpoint/v1/+/+/route/#", client_id="managers")
    try:
        with bot_api() as (bot_url, api), webhook_receiver(KEY) as (hook_url, receiver):
            routes = {
                "drain_s": 30,
                "telegram": [
                    {
                        "name": "quality-team",
                        "chat_id": "42",
                        "bot_token_file": str(tmp_path / "token"),
                        "base_url": bot_url,
                    }
                ],
                "webhook": [
                    {"name": "central", "url": hook_url, "secret_file": str(tmp_path / "key")}
                ],
                "mqtt": [{"name": "managers"}],
                "rules": [
                    {"to": ["central"]},
                    {"to": ["quality-team"], "tags": ["negative"]},
                    {"to": ["managers"], "tags": ["request", "negative"]},
                ],
            }
            cfg = parse_model(Config, {"routes": routes}, "device.toml")
            summary = run_simulation(cfg, load_scenario(SHIFT, cfg), SHIFT, data, broker=broker.url)
        messages = sink.wait_for(lambda ms: len(ms) >= 2, "two routed MQTT messages")
    finally:
        sink.close()
    with Store.open(data / STORE_NAME) as store:
        contacts = store.contacts()
    assert len(contacts) == 6
    assert summary.routes_open == 0
    assert summary.outbox_depth == 0
    by_tag = {tag: [c.id for c in contacts if tag in c.tags] for tag in ("negative", "request")}
    # Telegram: the one negative contact, with its clip
    [call] = api.calls
    assert call.method == "sendAudio"
    assert call.file_name is not None
    assert call.file_name.endswith(f"_{by_tag['negative'][0]}.wav")
    # the webhook: every contact, once each
    assert sorted(body["contact"]["id"] for body in receiver.unique.values()) == sorted(
        c.id for c in contacts
    )
    assert receiver.bad_signatures == 0
    # MQTT: negative and request contacts on the managers' topic
    assert {m.topic for m in messages} == {"contactpoint/v1/site-1/cp-0001/route/managers"}
    routed = sorted(json.loads(m.payload)["contact"]["id"] for m in messages)
    assert routed == sorted(by_tag["negative"] + by_tag["request"])


def test_a_destination_that_is_away_keeps_the_shift_queued_and_the_cli_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "key").write_bytes(KEY)
    port = free_port()  # nobody listens: connection refused
    config = tmp_path / "device.toml"
    config.write_text(
        "[routes]\ndrain_s = 0.5\nbackoff_min_s = 60\n"
        f'[[routes.webhook]]\nname = "central"\nurl = "http://127.0.0.1:{port}/hook"\n'
        f'secret_file = "{tmp_path / "key"}"\n'
        '[[routes.rules]]\nto = ["central"]\n'
    )
    data = tmp_path / "data"
    argv = ["simulate", str(SHIFT), "--data", str(data), "--config", str(config)]
    assert main(argv) == 0
    assert "routes: 6 deliveries waiting" in capsys.readouterr().out
    assert main(["routes", "--data", str(data), "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    report = json.loads(line)
    assert (report["destination"], report["waiting"], report["delivered"]) == ("central", 6, 0)
    assert report["next"]["attempts"] == 1
    assert "cannot reach" in report["next"]["last_error"]
    # the destination is back: a new start delivers what the last run kept, each once
    cfg = load_config(config)
    with webhook_receiver(KEY, port) as (_, receiver), Store.open(data / STORE_NAME) as store:
        runner = RouteRunner(cfg.routes, store, data)
        runner.start()
        try:
            assert runner.drain(20.0)
        finally:
            runner.stop()
    assert len(receiver.posts) == len(receiver.unique) == 6
