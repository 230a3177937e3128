"""Compliance alerts in the sink: raised while the share of contacts meeting a service standard
is below the threshold, cleared when it recovers, per site and per staff member; fed by real
pocketsphinx transcripts (espeak-ng speech) and by the worker's check code on SQLite and
PostgreSQL; published on contactpoint/v1/<site>/_site/alert by ``sink run`` (real mosquitto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peewee import Database

from cloud_sink import Sink, SinkConfig, cli
from cloud_sink.alerts import ComplianceAlerts, SiteAlerts, stored_alerts, to_ns
from cloud_sink.config import load_sink_file
from cloud_sink.db import open_database, transaction
from cloud_sink.ingest import Ingest, Outcome
from cloud_sink.migrations import migrate
from cloud_sink.models import from_json, tables
from cloud_sink.speech.config import RulesFile, SpeechSection
from cloud_sink.speech.engines import open_engine
from cloud_sink.speech.worker import Transcriber, check_contact
from contract.alerts import ComplianceRule
from contract.config import ConfigError
from contract.wire import iso
from provisioning.broker import LocalBroker
from tests.cloud_sink.helpers import (
    NS,
    SITE,
    Clip,
    FakeClock,
    TestClient,
    contact_message,
    encode,
    new_id,
    topic,
    wait_until,
)
from tests.cloud_sink.speech_helpers import silence, speak, wav_bytes

GOLDEN_START = to_ns("2026-11-23T09:00:10.000Z")  # the golden contact's start
GREETING = "Good morning, welcome to our shop. How can I help you today?"
NO_GREETING = "The card terminal is broken, please pay in cash."
RULES = RulesFile.from_dict(
    {
        "fuzzy_threshold": 85,
        "rules": [
            {"name": "greeting", "phrases": ["good morning", "hello"], "within_s": 10},
            {"name": "recommend", "phrases": ["would you recommend us"]},
        ],
    }
)


def shifted(msg: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The contact message with every time moved by ``seconds``."""
    delta = round(seconds * NS)
    c = msg["contact"]
    for holder, key in [(c, "start"), (c, "end"), *((e, "at") for e in c["events"])]:
        holder[key] = iso(to_ns(holder[key]) + delta)
    if c.get("clip"):
        for key in ("start", "end"):
            c["clip"][key] = iso(to_ns(c["clip"][key]) + delta)
    return msg


def store_contact(
    ingest: Ingest,
    clock: FakeClock,
    at_s: float,
    staff: str | None,
    samples: Any = None,
    *,
    site: str = SITE,
) -> str:
    """A contact of ``staff`` at ``site`` starting ``at_s`` after the golden one; with
    ``samples``, its WAV clip too, assembled and verified as ``sink run`` does."""
    clip = Clip(wav_bytes(samples), chunk_size=64 * 1024) if samples is not None else None
    msg = shifted(contact_message(new_id(), new_id(), clip=clip), at_s)
    msg["site"] = site
    msg["contact"]["staff"] = staff
    result = ingest.handle(topic("contact"), encode(msg))
    assert result.outcome == Outcome.STORED, result
    if clip is not None:
        ready = None
        for seq in range(clip.total):
            ready = ingest.handle(topic("clip"), clip.frame(seq)).ready or ready
        assert ready is not None
        assert ingest.assemble(ready)
    clock.advance(1.0)  # clips are transcribed in the order they were completed
    return str(msg["contact"]["id"])


def alerts_of(db: Database, rule: str) -> list[dict[str, Any]]:
    a = tables(db).alerts
    rows = a.select(a.body, a.cleared_ns, a.published_ns).where(a.rule == rule).order_by(a.at_iso)
    return [
        {**from_json(body)["alert"], "cleared_ns": cleared, "published": published is not None}
        for body, cleared, published in rows.tuples()
    ]


def test_pocketsphinx_transcripts_raise_and_clear_the_compliance_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sink"
    db = open_database(None, data)
    migrate(db)
    clock = FakeClock()
    ingest = Ingest(db, data, clock=clock)
    greeted = np.concatenate([silence(1.0), speak(GREETING, tmp_path)])
    not_greeted = np.concatenate([silence(1.0), speak(NO_GREETING, tmp_path)])
    said = [greeted, not_greeted, not_greeted, greeted]
    ids = [store_contact(ingest, clock, 60 * i, "anna", s) for i, s in enumerate(said)]
    per_staff = ComplianceRule(
        name="greeting_low", standard="greeting", below=0.5, last=2, per="staff"
    )
    per_site = ComplianceRule(name="site_greeting_low", standard="greeting", below=0.4, last=3)
    alerts = ComplianceAlerts([per_staff, per_site])
    worker_clock = FakeClock(start_ns=clock.now + 3600 * NS)
    worker = Transcriber(
        db,
        data,
        open_engine(SpeechSection(engine="pocketsphinx")),
        rules=RULES,
        alerts=alerts,
        clock=worker_clock,
    )
    try:
        assert worker.step()  # c0 greeted: one checked contact, the window needs two
        assert worker.step()  # c1 not greeted: 1 of 2 = 50 %, exactly the threshold: no alert
        assert alerts_of(db, "greeting_low") == []
        assert alerts.changes == []
        worker_clock.advance(60)
        assert worker.step()  # c2 not greeted: 0 of the last 2 -> raised
        raised_at = worker_clock.now
        (alert,) = alerts_of(db, "greeting_low")
        assert alert["cleared_ns"] is None
        assert alert["at"] == iso(raised_at)
        assert alert["refs"] == [ids[2], ids[1]]  # the contacts to listen to, newest first
        assert alert["compliance"]["staff"] == "anna"
        assert (alert["compliance"]["checked"], alert["compliance"]["met"]) == (2, 0)
        assert alert["text"].startswith(
            "greeting_low: 0% of the last 2 checked contacts at site site-1, staff anna met "
            "'greeting' (0 of 2), below 50%"
        )
        (site_alert,) = alerts_of(db, "site_greeting_low")  # 1 of 3 = 33 % < 40 %
        assert site_alert["compliance"]["staff"] is None
        [listed] = [a for a in stored_alerts(db) if a["rule"] == "greeting_low"]
        assert listed["active"] is True
        worker_clock.advance(60)
        assert worker.step()  # c3 greeted: 1 of the last 2 = 50 %, not below: cleared
        assert not worker.step()
        (alert,) = alerts_of(db, "greeting_low")
        assert alert["cleared_ns"] == worker_clock.now
        assert alert["cleared_at"] == iso(worker_clock.now)
        assert alert["compliance"]["recovered"]["share"] == 0.5
        assert not alert["published"]  # published once more by sink run
        (site_alert,) = alerts_of(db, "site_greeting_low")  # 1 of the last 3: still active
        assert site_alert["cleared_ns"] is None
        assert [(r, s, raised) for r, s, _, raised in alerts.changes] == [
            ("greeting_low", "anna", True),
            ("site_greeting_low", None, True),
            ("greeting_low", "anna", False),
        ]
        # the rules file changed (a greeting is forbidden now: c1 and c2 meet it, c3 not):
        # `sink standards --config --rules` checks every transcript again and updates every
        # figure once: the site recovers
        rules_file = tmp_path / "rules.toml"
        rules_file.write_text(
            '[[rules]]\nname = "greeting"\nkind = "forbidden"\nphrases = ["good morning"]\n'
        )
        config = tmp_path / "sink.toml"
        config.write_text(
            '[[alerts.compliance]]\nname = "site_greeting_low"\nstandard = "greeting"\n'
            "below = 0.4\nlast = 3\n"
        )
        code = cli.main(["sink", "standards", "--data", str(data), "--rules", str(rules_file),
                         "--config", str(config)])  # fmt: skip
        assert code == 0
        assert "checked 4 transcript(s)" in capsys.readouterr().out
        (site_alert,) = alerts_of(db, "site_greeting_low")
        assert site_alert["cleared_ns"] is not None
        assert site_alert["compliance"]["recovered"]["share"] == round(2 / 3, 4)
    finally:
        db.close()


@pytest.fixture
def db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


def check(db: Database, alerts: ComplianceAlerts, contact_id: str, text: str, now: int) -> None:
    """The worker's own check of a transcript (``text``, no word times) of a stored contact."""
    with transaction(db):
        check_contact(db, RULES, device="cp-0001", contact_id=contact_id, text=text, words=[],
                      now_ns=now, alerts=alerts)  # fmt: skip


def test_a_period_window_per_staff_member_with_hysteresis(db: Database, data_dir: Path) -> None:
    clock = FakeClock()
    ingest = Ingest(db, data_dir, clock=clock)
    rule = ComplianceRule(
        name="recommend_low", standard="recommend", below=0.5, clear_at=0.75,
        within_s=3600, min_checked=2, per="staff",
    )  # fmt: skip
    alerts = ComplianceAlerts([rule])
    asked, not_asked = "would you recommend us to a friend", "thank you goodbye"
    now = FakeClock(start_ns=clock.now + 86400 * NS)

    def contact(at_s: float, staff: str | None, text: str) -> str:
        contact_id = store_contact(ingest, clock, at_s, staff)
        now.advance(10)
        check(db, alerts, contact_id, text, now.now)
        return contact_id

    contact(0, "anna", not_asked)  # one checked: fewer than min_checked
    contact(60, "boris", not_asked)  # boris is a figure of his own
    contact(120, None, not_asked)  # no staff: in no staff figure
    assert alerts.changes == []
    contact(180, "anna", not_asked)  # anna 0 of 2 -> raised
    assert [(s, r) for _, s, _, r in alerts.changes] == [("anna", True)]
    contact(4000, "anna", asked)  # 0 s and 180 s are more than an hour before: 1 of 1 < min
    contact(4100, "anna", not_asked)  # 1 of 2 = 50 %: not below, not back to 75 %: still on
    assert len(alerts.changes) == 1
    contact(4200, "anna", asked)
    contact(4300, "anna", asked)  # 3 of 4 = 75 % = clear_at: cleared
    assert [(s, r) for _, s, _, r in alerts.changes] == [("anna", True), ("anna", False)]
    (row,) = alerts_of(db, "recommend_low")
    assert row["cleared_ns"] == now.now
    assert row["compliance"]["recovered"] == {
        "checked": 4, "met": 3, "share": 0.75, "window_end": iso(GOLDEN_START + 4300 * NS),
    }  # fmt: skip
    contact(3000, "boris", not_asked)  # boris 0 of 2 (60, 3000 s): his own alert; anna unmoved
    assert alerts.changes[-1][1:4:2] == ("boris", True)
    active = [a for a in stored_alerts(db) if a["rule"] == "recommend_low" and a["active"]]
    assert [a["compliance"]["staff"] for a in active] == ["boris"]


def test_sink_run_publishes_compliance_alerts_stored_by_another_process(
    broker: LocalBroker, tmp_path: Path
) -> None:
    manager = TestClient(broker.port)
    manager.subscribe("contactpoint/v1/+/_site/alert")
    data = tmp_path / "sink"
    sink = Sink(
        SinkConfig(broker=broker.url, data_dir=data, check_every_s=0.1),
        alerts=SiteAlerts([], look_every_s=0.1),
    ).start()
    db = open_database(None, data)  # the transcribing process's own connection
    try:
        wait_until(sink.subscribed.is_set, "the sink's subscription")
        clock = FakeClock()
        ingest = Ingest(db, data, clock=clock)
        rule = ComplianceRule(name="greeting_low", standard="greeting", below=0.5, last=1)
        alerts = ComplianceAlerts([rule])
        first = store_contact(ingest, clock, 0, "anna")
        check(db, alerts, first, "the terminal is broken", clock.now)
        got_topic, raw = manager.next_message()
        assert got_topic == f"contactpoint/v1/{SITE}/_site/alert"
        raised = json.loads(raw)
        assert raised["device"] == "_site"
        assert raised["alert"]["rule"] == "greeting_low"
        assert raised["alert"]["compliance"]["share"] == 0.0
        assert "cleared_at" not in raised["alert"]
        second = store_contact(ingest, clock, 60, "anna")
        check(db, alerts, second, "good morning how can I help", clock.now)
        _, raw = manager.next_message()
        cleared = json.loads(raw)
        assert cleared["alert"]["id"] == raised["alert"]["id"]
        assert cleared["msg_id"] != raised["msg_id"]
        assert cleared["alert"]["cleared_at"] == iso(clock.now)
    finally:
        db.close()
        sink.stop()
        manager.close()


def test_the_sink_config_takes_compliance_rules_and_names_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "sink.toml"
    path.write_text(
        '[[alerts.compliance]]\nname = "greeting_low"\nstandard = "greeting"\nbelow = 0.8\n'
        'last = 20\nper = "staff"\n'
    )
    (rule,) = load_sink_file(path).alerts.compliance
    assert (rule.standard, rule.below, rule.last, rule.per) == ("greeting", 0.8, 20, "staff")
    path.write_text(
        '[[alerts.compliance]]\nname = "greeting_low"\nstandard = "greeting"\nbelow = 0.8\n'
        "last = 20\nwithin_s = 3600\n"
    )
    with pytest.raises(ConfigError, match=r"alerts\.compliance\[0\].*set exactly one of last"):
        load_sink_file(path)
    path.write_text(
        '[[alerts.compliance]]\nname = "x"\nstandard = "greeting"\nbelow = 0.8\nlst = 2\n'
    )
    with pytest.raises(ConfigError, match="Did you mean 'last'"):
        load_sink_file(path)
