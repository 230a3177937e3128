"""Speech analytics: pocketsphinx (the English model its wheel ships) on espeak-ng speech stored
in a real sink database as ingest stores a clip; the standard checks, their tags and matches;
the transcript search; claims that never let two workers transcribe one clip."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from peewee import Database

from cloud_sink import cli
from cloud_sink.db import open_database
from cloud_sink.ingest import Ingest
from cloud_sink.migrations import migrate
from cloud_sink.models import tables
from cloud_sink.speech.config import RulesFile
from cloud_sink.speech.engines import Samples, Transcript, Word
from cloud_sink.speech.search import matching
from cloud_sink.speech.worker import Candidate, Stats, Transcriber, transcript_of
from tests.cloud_sink.helpers import DEVICE, FakeClock
from tests.cloud_sink.speech_helpers import (
    silence,
    speak,
    store_clip,
    wav_bytes,
    word_error_rate,
)

GREETING = "Good morning, welcome to our shop. How can I help you today?"
NO_GREETING = "The card terminal is broken, please pay in cash."
RULES = """
fuzzy_threshold = 85
[[rules]]
name = "greeting"
phrases = ["good morning", "hello", "здравствуйте"]
within_s = 10
"""


@pytest.fixture
def sink_db(db_url: str | None, data_dir: Path) -> Iterator[Database]:
    database = open_database(db_url, data_dir)
    migrate(database)
    yield database
    database.close()


def new_sink(data: Path) -> None:
    db = open_database(None, data)
    migrate(db)
    db.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["sink", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_pocketsphinx_transcribes_stored_clips_and_the_greeting_rule_tags_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sink"
    db = open_database(None, data)
    migrate(db)
    ingest = Ingest(db, data)
    said = {  # clip -> what was said in it; the contact starts 3 s into each clip
        "greeted": (GREETING, np.concatenate([silence(1.0), speak(GREETING, tmp_path)])),
        "not_greeted": (NO_GREETING, np.concatenate([silence(1.0), speak(NO_GREETING, tmp_path)])),
        "greeted_late": (GREETING, np.concatenate([silence(15.0), speak(GREETING, tmp_path)])),
    }
    ids = {name: store_clip(ingest, wav_bytes(samples)) for name, (_, samples) in said.items()}
    db.close()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)

    code, out, err = run_cli(capsys, "transcribe", "--data", str(data), "--engine",
                             "pocketsphinx", "--rules", str(rules))  # fmt: skip
    assert code == 0, err
    assert "transcribed 3 clip(s)" in out
    # a second run finds nothing left: transcription is idempotent
    code, out, err = run_cli(capsys, "transcribe", "--data", str(data), "--engine",
                             "pocketsphinx", "--rules", str(rules))  # fmt: skip
    assert code == 0, err
    assert "transcribed 0 clip(s)" in out, err

    db = open_database(None, data)
    try:
        for name, (reference, _) in said.items():
            row = transcript_of(db, DEVICE, ids[name])
            assert row is not None
            assert row["state"] == "done"
            assert (row["engine"], row["language"]) == ("pocketsphinx", "en")
            wer = word_error_rate(re.sub(r"[^\w ]", "", reference), row["text"])
            with capsys.disabled():  # printed with -s: what pocketsphinx made of espeak-ng
                print(f"\n{name}: WER {wer:.2f}: said {reference!r}, heard {row['text']!r}")
        t = tables(db)
        checks = {
            cid: bool(passed)
            for cid, passed in t.standard_checks.select(
                t.standard_checks.contact_id, t.standard_checks.passed
            ).tuples()
        }
        assert checks == {ids["greeted"]: True, ids["not_greeted"]: False,
                          ids["greeted_late"]: False}  # fmt: skip
        # the match is stored with its time in the clip: the greeting starts about 1 s in
        (start,) = (
            t.standard_matches.select(t.standard_matches.start_s)
            .where(t.standard_matches.contact_id == ids["greeted"])
            .tuples()
            .first()
        )
        assert 0.5 <= start <= 2.5
        # the late greeting was heard, but 15 s into the clip (12 s into the contact)
        late = t.standard_matches.select().where(
            t.standard_matches.contact_id == ids["greeted_late"]
        )
        assert [round(m["start_s"]) for m in late.dicts()] in ([15], [16])
    finally:
        db.close()

    code, out, err = run_cli(capsys, "contacts", "--data", str(data), "--json")
    tags = {c["id"]: c["tags"] for c in map(json.loads, out.splitlines())}
    assert "no_greeting" not in tags[ids["greeted"]]
    assert tags[ids["not_greeted"]][-1] == "no_greeting"
    assert tags[ids["greeted_late"]][-1] == "no_greeting"
    code, out, err = run_cli(capsys, "contacts", "--data", str(data), "--json",
                             "--text", "Morning")  # fmt: skip
    assert code == 0, err
    assert {json.loads(line)["id"] for line in out.splitlines()} == {
        ids["greeted"],
        ids["greeted_late"],
    }


class Scripted:
    """An engine that "hears" a clip's first sample value as a word (the claim tests need the
    database, not speech) and records which clips it was given; the first call of each worker
    waits until every worker is inside a transcription, so the workers really overlap."""

    name = "scripted"
    model = "none"

    def __init__(self, barrier: threading.Barrier | None, calls: list[int]) -> None:
        self.barrier = barrier
        self.calls = calls
        self.first = True

    def transcribe(self, samples: Samples) -> Transcript:
        if self.first and self.barrier is not None:
            self.first = False
            self.barrier.wait(timeout=60)
        self.calls.append(int(samples[100]))
        text = f"clip{int(samples[100])} покупку"
        return Transcript(text, (Word(text, 0.0, 1.0),), "ru", self.name, self.model)


def test_two_workers_at_once_never_transcribe_one_clip_twice(
    sink_db: Database, db_url: str | None, data_dir: Path
) -> None:
    ingest = Ingest(sink_db, data_dir)
    clips = 8
    for i in range(clips):
        store_clip(ingest, wav_bytes(np.full(16000, 100 * (i + 1), np.int16)))
    barrier = threading.Barrier(2)
    calls: list[int] = []
    stats: list[Stats] = []

    def worker(name: str) -> None:
        db = open_database(db_url, data_dir)  # each worker its own connection, as processes
        try:
            t = Transcriber(db, data_dir, Scripted(barrier, calls), worker_id=name)
            stats.append(t.run())
        finally:
            db.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(calls) == [100 * (i + 1) for i in range(clips)]  # each clip exactly once
    assert sorted(s.transcribed for s in stats) != [0, clips]  # both did work
    assert sum(s.transcribed for s in stats) == clips
    tr = tables(sink_db).transcripts
    assert {r["state"] for r in tr.select(tr.state).dicts()} == {"done"}
    assert tr.select().count() == clips
    # inflected Russian and the words of a transcript are searchable on either engine
    assert len(matching(sink_db, "покупка")) == clips
    assert len(matching(sink_db, "clip300")) == 1


def test_a_claim_that_ran_out_is_taken_over_and_its_first_worker_stores_nothing(
    sink_db: Database, data_dir: Path
) -> None:
    ingest = Ingest(sink_db, data_dir)
    clip_id = store_clip(ingest, wav_bytes(np.full(16000, 700, np.int16)))
    clock = FakeClock()
    calls: list[int] = []
    slow = Transcriber(sink_db, data_dir, Scripted(None, calls), worker_id="slow",
                       lease_s=60, clock=clock)  # fmt: skip
    other = Transcriber(sink_db, data_dir, Scripted(None, calls), worker_id="other",
                        lease_s=60, clock=clock)  # fmt: skip
    [candidate] = slow.candidates()
    assert candidate == Candidate(DEVICE, clip_id, candidate.path)
    assert slow.claim(candidate)
    assert not other.claim(candidate)
    assert other.candidates() == []
    clock.advance(61)
    assert other.claim(candidate)  # the lease ran out: taken over
    heard = Transcript("late", (), "en", "scripted", "none")
    assert not slow.store(candidate, heard, 1.0, 70.0)  # no longer its claim
    assert other.step(Stats()) is False  # nothing else to claim, its claim is still open
    assert other.store(candidate, heard, 1.0, 1.0)
    row = transcript_of(sink_db, DEVICE, clip_id)
    assert row is not None
    assert (row["state"], row["worker"], row["attempts"]) == ("done", "other", 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "faster-whisper"], "speech.model_dir is not set"),
        (["--engine", "vosk"], "speech.model_dir is not set"),
        (["--engine", "pocketsphinx", "--model-dir", "{tmp}/nowhere"],
         "speech.model_dir = '{tmp}/nowhere' is not a directory"),
        (["--engine", "faster-whisper", "--model-dir", "{tmp}"],
         "speech.model_dir = '{tmp}' holds no CTranslate2 Whisper model"),
        (["--engine", "pocketsphinx", "--model-dir", "{tmp}"],
         "holds no PocketSphinx model"),
    ],
)  # fmt: skip
def test_a_missing_model_names_the_setting(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sink"
    new_sink(data)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run_cli(capsys, "transcribe", "--data", str(data), *argv)
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "speech.model_dir" in err
    db = open_database(None, data)
    assert tables(db).transcripts.select().count() == 0  # nothing claimed
    db.close()


def test_the_model_directory_comes_from_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sink"
    new_sink(data)
    config = tmp_path / "sink.toml"
    config.write_text(f'[speech]\nengine = "vosk"\nmodel_dir = "{tmp_path}/vosk-model-ru"\n')
    code, _, err = run_cli(capsys, "transcribe", "--data", str(data), "--config", str(config))
    assert code == 2
    assert f"speech.model_dir = '{tmp_path}/vosk-model-ru' is not a directory" in err
    config.write_text('[speech]\nengine = "whisper"\n')
    code, _, err = run_cli(capsys, "transcribe", "--data", str(data), "--config", str(config))
    assert code == 2
    assert "speech.engine" in err
    assert "faster-whisper" in err


def test_a_bad_rules_file_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nname = "greeting"\nphrase = ["hello"]\n')
    code, _, err = run_cli(capsys, "standards", "--data", str(tmp_path), "--rules", str(rules))
    assert code == 2
    assert "rules[0].phrase: unknown key. Did you mean 'phrases'?" in err
    code, out, _ = run_cli(capsys, "standards", "example")
    assert code == 0
    assert "fuzzy_threshold = 85" in out
    assert RulesFile.from_dict({}).rules == []


class Greeter:
    """Greets ("здравствуйте") in the clips whose sample value is a multiple of 200."""

    name = "scripted"
    model = "none"

    def transcribe(self, samples: Samples) -> Transcript:
        greets = int(samples[100]) % 200 == 0
        words: tuple[Word, ...] = (Word("здравствуйте", 3.5, 4.0),) if greets else ()
        words += (Word("спасибо", 5.0, 5.5),)
        return Transcript(" ".join(w.text for w in words), words, "ru", self.name, self.model)


def test_the_report_shows_compliance_per_staff_and_site(
    sink_db: Database, db_url: str | None, data_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ingest = Ingest(sink_db, data_dir)
    for value in (100, 200, 300, 400):  # 200 and 400 greet
        store_clip(ingest, wav_bytes(np.full(16000, value, np.int16)))
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(RULES)
    from cloud_sink.speech.config import load_rules

    done = Transcriber(sink_db, data_dir, Greeter(), rules=load_rules(rules_path)).run()
    assert done.transcribed == 4
    db_args = [] if db_url is None else ["--db", db_url]
    code, out, err = run_cli(capsys, "report", "--data", str(data_dir), *db_args,
                             "--compliance", "--by", "staff", "--format", "json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["groups"] == [
        {"key": "anna", "rules": {"greeting": {"checked": 4, "met": 2, "share": 0.5}}}
    ]
    code, out, err = run_cli(capsys, "report", "--data", str(data_dir), *db_args,
                             "--compliance", "--by", "site", "--format", "csv")  # fmt: skip
    assert out.splitlines() == ["site,rule,checked,met,share", "site-1,greeting,4,2,0.5",
                                "(total),greeting,4,2,0.5"]  # fmt: skip
    # a changed rules file is applied to the stored transcripts again
    rules_path.write_text(RULES.replace('"hello"', '"hello", "спасибо"'))
    code, out, err = run_cli(capsys, "standards", "--data", str(data_dir), *db_args,
                             "--rules", str(rules_path))  # fmt: skip
    assert code == 0, err
    assert "checked 4 transcript(s)" in out, err
    code, out, err = run_cli(capsys, "report", "--data", str(data_dir), *db_args,
                             "--compliance", "--format", "json")  # fmt: skip
    assert json.loads(out)["total"] == {"greeting": {"checked": 4, "met": 4, "share": 1.0}}
    code, out, err = run_cli(capsys, "contacts", "--data", str(data_dir), *db_args, "--json")
    assert not any("no_greeting" in json.loads(line)["tags"] for line in out.splitlines())
