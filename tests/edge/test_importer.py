"""``contactpoint import``: a dictaphone's day cut around a CRM's events (issue #15, import).

The day: one recorder whose clock is 90 s slow (``offset_s = 90`` in the config); file A dated
by its name, file B (continuing A without a gap) by its bext chunk, file C (after a 5-minute
gap) by its mtime; events before, inside, across A|B, across the gap, and after. Every clip is
compared sample by sample with the audio the test wrote, at the true times.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf

from cloud_sink import Sink, SinkConfig
from edge.clock import NS, FakeClock
from edge.config import Config
from edge.importer import run_import
from edge.importer.cut import windows
from edge.importer.events import CrmEvent, read_events
from edge.importer.run import Progress
from edge.importer.sources import bext_start, correction_ns, filename_start, read_bext
from edge.publish.wire import contact_json
from edge.records import ContactRecord
from edge.runtime import STORE_NAME, Runtime, assemble
from edge.store import Store
from hardware import BackendSpec, open_backend
from provisioning.broker import LocalBroker
from provisioning.main import main
from tests.edge.importer_files import Samples, set_mtime, speech, write_bwf, write_wav
from tests.waiting import STALL_S

RATE = 16000
ZONE = ZoneInfo("Europe/Moscow")
SLOW_S = 90  # the dictaphone's clock is this far behind the true time
DAY = datetime(2026, 11, 24, tzinfo=ZONE)


def local(h: int, m: int, s: int = 0) -> datetime:
    return DAY.replace(hour=h, minute=m, second=s)


def ns(when: datetime) -> int:
    return round(when.timestamp()) * NS


def config(**importer: Any) -> Config:
    return Config.from_dict(
        {
            "device": {"id": "courier-pc", "site": "delivery"},
            "importer": {
                "timezone": "Europe/Moscow",
                "recorders": [{"name": "dict7", "match": ["*/dict7/*"], "offset_s": SLOW_S}],
                **importer,
            },
        }
    )


@dataclass
class Day:
    folder: Path
    events: Path
    ab: Samples  # A and B: one continuous recording, split in two files
    ab_start_ns: int  # true time of its first sample
    c: Samples
    c_start_ns: int
    a_seconds: int = 600


def write_events(path: Path, rows: list[dict[str, str]]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["id", "time", "kind", "order_id", "staff", "rating"])
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def event(i: int, when: datetime, rating: str = "", staff: str = "ivan") -> dict[str, str]:
    return {
        "id": f"D-{i}",
        "time": when.strftime("%Y-%m-%d %H:%M:%S"),  # local time, no zone: importer.timezone
        "kind": "delivery",
        "order_id": f"ORD-{100 + i}",
        "staff": staff,
        "rating": rating,
    }


@pytest.fixture
def day(tmp_path: Path) -> Day:
    folder = tmp_path / "dict7"
    ab = speech(1200, RATE, seed=1)
    c = speech(600, RATE, seed=2)
    # recorder times are SLOW_S behind: A starts at 09:00:00 on the recorder = 09:01:30 true
    write_wav(folder / "REC_20261124_090000.wav", ab[: 600 * RATE])
    write_bwf(folder / "second.wav", ab[600 * RATE :], datetime(2026, 11, 24, 9, 10, 0))
    c_path = write_wav(folder / "memo3.wav", c)
    set_mtime(c_path, local(9, 35).timestamp())  # ends 09:35 on the recorder: starts 09:25
    rows = [
        event(1, local(8, 50)),  # before every recording
        event(2, local(9, 5), rating="5"),  # inside A
        event(3, local(9, 11, 20)),  # across A|B (A ends 09:11:30 true)
        event(4, local(9, 15)),  # inside B
        event(5, local(9, 21)),  # across the gap (B ends 09:21:30, C starts 09:26:30)
        event(6, local(9, 30), rating="1"),  # inside C
        event(7, local(10, 0)),  # after every recording
    ]
    events = write_events(tmp_path / "crm.csv", rows)
    lines = events.read_text().splitlines()
    lines.insert(4, "D-bad,yesterday,delivery,ORD-999,ivan,")  # line 5 of the file
    events.write_text("\n".join(lines) + "\n")
    return Day(
        folder=folder,
        events=events,
        ab=ab,
        ab_start_ns=ns(local(9, 1, 30)),
        c=c,
        c_start_ns=ns(local(9, 26, 30)),
    )


def stored(data: Path) -> tuple[list[ContactRecord], int, int]:
    store = Store.open(data / STORE_NAME)
    try:
        return store.contacts(), len(store.orphan_events()), store.outbox.depth()
    finally:
        store.close()


def by_order(contacts: list[ContactRecord]) -> dict[str, ContactRecord]:
    out = {}
    for contact in contacts:
        for e in contact.events:
            if "order_id" in e.data:
                out[e.data["order_id"]] = contact
    return out


def note(contact: ContactRecord) -> dict[str, Any]:
    (found,) = [e for e in contact.events if e.kind == "import"]
    return found.data


def clip_samples(data: Path, contact: ContactRecord) -> Samples:
    assert contact.clip is not None
    samples, rate = sf.read(str(data / contact.clip.path), dtype="int16")
    assert rate == RATE
    return np.asarray(samples, dtype=np.int16)


def expected(signal: Samples, start_ns: int, from_ns: int, to_ns: int) -> Samples:
    a = max(0, (from_ns - start_ns) * RATE // NS)
    b = min(len(signal), (to_ns - start_ns) * RATE // NS)
    return signal[a:b]


def test_a_dictaphone_day_is_cut_around_its_events(day: Day, tmp_path: Path) -> None:
    data = tmp_path / "data"
    summary = run_import(config(), [day.folder], day.events, data)
    assert summary.files == 3
    assert summary.events == 7
    assert [line for line, _ in summary.row_problems] == [5]
    assert "'yesterday'" in summary.row_problems[0][1]
    assert summary.contacts == 5
    assert sorted(e.id for e in summary.not_covered) == ["D-1", "D-7"]
    assert (summary.stitched, summary.cut_short) == (1, 1)

    contacts, orphans, _ = stored(data)
    assert orphans == 2  # the events no recording covers: kept, and sent like the rest
    orders = by_order(contacts)
    assert set(orders) == {"ORD-102", "ORD-103", "ORD-104", "ORD-105", "ORD-106"}
    before, after = 60 * NS, 60 * NS
    for order, at in [("ORD-102", local(9, 5)), ("ORD-103", local(9, 11, 20))]:
        contact = orders[order]
        assert contact.mode == "import"
        assert contact.staff == "ivan"
        got = clip_samples(data, contact)
        want = expected(day.ab, day.ab_start_ns, ns(at) - before, ns(at) + after)
        assert len(got) == 120 * RATE
        assert np.array_equal(got, want)  # exact to the sample, across the file boundary
    assert note(orders["ORD-102"])["time_source"] == "filename"
    stitched = note(orders["ORD-103"])
    assert [f["name"] for f in stitched["files"]] == ["REC_20261124_090000.wav", "second.wav"]
    assert [f["time_source"] for f in stitched["files"]] == ["filename", "bext"]
    assert stitched["stitched"] is True
    assert "corrected by +90.000 s" in stitched["note"]

    inside_b = orders["ORD-104"]
    assert note(inside_b)["time_source"] == "bext"
    want = expected(day.ab, day.ab_start_ns, ns(local(9, 14)), ns(local(9, 16)))
    assert np.array_equal(clip_samples(data, inside_b), want)

    gap = orders["ORD-105"]  # B ends 09:21:30: the window 09:20 .. 09:22 is cut short there
    assert gap.clip is not None
    assert gap.clip.truncated
    assert note(gap)["cut_short"] == ["end"]
    got = clip_samples(data, gap)
    assert len(got) == 90 * RATE
    assert np.array_equal(
        got, expected(day.ab, day.ab_start_ns, ns(local(9, 20)), ns(local(9, 22)))
    )

    mtime = orders["ORD-106"]
    assert note(mtime)["time_source"] == "mtime"
    want = expected(day.c, day.c_start_ns, ns(local(9, 29)), ns(local(9, 31)))
    assert np.array_equal(clip_samples(data, mtime), want)

    # tags by the device's rules: a CRM rating is a colour, no rating is silent
    assert "positive" in orders["ORD-102"].tags
    assert "negative" in orders["ORD-106"].tags
    assert "silent" in orders["ORD-104"].tags
    assert "silent" not in orders["ORD-102"].tags


def test_reimport_makes_nothing_new(day: Day, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = config()
    first = run_import(cfg, [day.folder], day.events, data)
    contacts, orphans, depth = stored(data)
    copy = tmp_path / "backup" / "memo3 (1).wav"  # the same file again, under another name
    copy.parent.mkdir()
    shutil.copyfile(day.folder / "memo3.wav", copy)
    again = run_import(cfg, [day.folder, copy.parent], day.events, data)
    assert again.contacts == 0
    assert again.already_imported == first.contacts == 5
    assert again.files == 3
    assert again.duplicates == [(copy, day.folder / "memo3.wav")]
    after = stored(data)
    assert [c.id for c in after[0]] == [c.id for c in contacts]
    assert after[1:] == (orphans, depth)


def test_an_interrupted_import_resumes_where_it_stopped(day: Day, tmp_path: Path) -> None:
    """Ctrl-C after the second window: run again, the import makes exactly the rest, and the
    result equals one uninterrupted run."""
    done: list[str] = []

    def advance(stage: str) -> None:
        done.append(stage)
        if done.count("windows") == 2:
            raise KeyboardInterrupt

    data = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_import(config(), [day.folder], day.events, data, progress=Progress(noop, advance))
    assert len(stored(data)[0]) == 1  # the first window is D-1 (not covered), then one contact
    rest = run_import(config(), [day.folder], day.events, data)
    assert (rest.contacts, rest.already_imported) == (4, 1)
    whole = tmp_path / "whole"
    run_import(config(), [day.folder], day.events, whole)
    resumed, whole_contacts = stored(data), stored(whole)
    assert [c.id for c in resumed[0]] == [c.id for c in whole_contacts[0]]
    assert resumed[1] == whole_contacts[1]  # the orphan events once each
    assert [c.tags for c in resumed[0]] == [c.tags for c in whole_contacts[0]]


def noop(stage: str, total: int) -> None:
    pass


def test_an_event_not_covered_gets_its_contact_when_its_recording_comes(
    day: Day, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    c = day.folder / "memo3.wav"
    later = tmp_path / "later" / c.name
    later.parent.mkdir()
    c.rename(later)  # the first import lacks file C
    first = run_import(config(), [day.folder], day.events, data)
    assert "D-6" in [e.id for e in first.not_covered]
    contacts, orphans, _ = stored(data)
    assert orphans == 3
    assert "ORD-106" not in by_order(contacts)
    recorders = [{"name": "dict7", "match": ["*/dict7/*", "*/later/*"], "offset_s": SLOW_S}]
    second = run_import(config(recorders=recorders), [day.folder, later], day.events, data)
    assert second.contacts == 1
    contacts, orphans, _ = stored(data)
    assert note(by_order(contacts)["ORD-106"])["time_source"] == "mtime"
    assert orphans == 3  # what was sent as "not covered" stays sent; nothing is taken back


# --- bad input -------------------------------------------------------------------------------


def test_bad_files_and_rows_are_named_and_the_rest_is_imported(day: Day, tmp_path: Path) -> None:
    corrupt = day.folder / "REC_20261124_080000.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    timeless = write_wav(tmp_path / "odd" / "memo9.wav", speech(5, RATE, seed=9))
    set_mtime(timeless, datetime(1980, 1, 1, tzinfo=UTC).timestamp())  # a reset FAT clock
    data = tmp_path / "data"
    summary = run_import(config(), [day.folder, timeless.parent], day.events, data)
    problems = {p.path.name: p.reason for p in summary.file_problems}
    assert set(problems) == {"REC_20261124_080000.wav", "memo9.wav"}
    assert "not a readable recording" in problems["REC_20261124_080000.wav"]
    reason = problems["memo9.wav"]
    assert "no usable start time" in reason
    assert "no bext chunk" in reason
    assert "no file name pattern matches" in reason
    assert "before 2001" in reason
    assert summary.contacts == 5  # the good files and rows all went in


def test_a_jsonl_events_file_names_its_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "time": "2026-11-24T09:05:00+03:00", "order_id": "1"}),
                "",
                "{not json",
                json.dumps({"id": "b", "time": 1795500000, "rating": "meh"}),
                json.dumps({"id": "c", "time": "2026-11-24 09:06:00", "kind": "Pickup"}),
                json.dumps({"id": "a", "time": "2026-11-24T09:07:00+03:00"}),
                json.dumps(["a list"]),
            ]
        )
    )
    got = read_events(path, config().importer)
    assert [e.id for e in got.events] == ["a", "c"]
    assert got.events[0].kind == "delivery"  # no kind: a delivery
    assert got.events[1].kind == "pickup"
    assert got.events[1].wall_ns == ns(local(9, 6))  # no zone: importer.timezone
    lines = {p.line: p.message for p in got.problems}
    assert set(lines) == {3, 4, 6, 7}
    assert "'meh' is not a known rating" in lines[4]
    assert "line 1" in lines[6]


def test_a_csv_with_semicolons_and_other_column_names(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "\ufeffWhen;Order;Courier;Score\n24.11.2026 09:05;A-1;anna;4\n"
        "2026-11-24 09:06:00;A-2;anna;\n",
        encoding="utf-8",
    )
    columns = {"time": "When", "order_id": "Order", "staff": "Courier", "rating": "Score"}
    got = read_events(path, config(columns=columns).importer)
    assert [(e.order_id, e.staff, e.rating) for e in got.events] == [("A-2", "anna", None)]
    assert [p.line for p in got.problems] == [2]
    assert "'When'" in got.problems[0].message
    assert "ISO 8601" in got.problems[0].message


def test_the_command_prints_a_summary_and_says_what_was_left_out(
    day: Day, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "device.toml"
    cfg.write_text(
        '[importer]\ntimezone = "Europe/Moscow"\n\n[[importer.recorders]]\nname = "dict7"\n'
        f'match = ["*/dict7/*"]\noffset_s = {SLOW_S}\n'
    )
    data = tmp_path / "data"
    args = ["import", str(day.folder), "--events", str(day.events), "--data", str(data)]
    code = main([*args, "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == 1  # a bad row and two events not covered
    assert "recordings: 3 read" in out
    assert "contacts made: 5" in out
    assert f"{day.events}:5: time ('time')" in out
    assert "events not covered by any recording: 2" in out
    assert "order ORD-101" in out
    assert "order ORD-107" in out
    code = main([*args, "--config", str(cfg)])
    out = capsys.readouterr().out
    assert "contacts made: 0" in out
    assert "5 imported before" in out


def test_the_command_refuses_a_missing_events_file(
    day: Day, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    code = main(["import", str(day.folder), "--events", str(missing), "--data", str(tmp_path)])
    assert code == 2
    assert f"--events {missing}: no such file" in capsys.readouterr().err


# --- formats ---------------------------------------------------------------------------------


def test_any_wav_width_rate_and_channels_flac_ogg_and_a_pyav_only_format(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "rec"
    folder.mkdir()
    rate = 44100
    mono = speech(30, rate, seed=4)
    stereo = np.stack([mono, mono], axis=1)
    sf.write(str(folder / "REC_20261124_100000.wav"), stereo, rate, subtype="PCM_24")
    sf.write(str(folder / "REC_20261124_100100.flac"), mono, rate, subtype="PCM_16")
    sf.write(str(folder / "REC_20261124_100200.ogg"), mono, rate, subtype="VORBIS")
    m4a = folder / "REC_20261124_100300.m4a"
    _write_aac(m4a, mono, rate)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(m4a))  # soundfile cannot: PyAV decodes it
    rows = [event(i, local(10, i, 15)) for i in range(4)]
    events = write_events(tmp_path / "e.csv", rows)
    cfg = config(before_s=5, after_s=5, recorders=[])
    data = tmp_path / "data"
    summary = run_import(cfg, [folder], events, data)
    assert not summary.file_problems
    assert summary.contacts == 4
    contacts = by_order(stored(data)[0])
    wav = clip_samples_any(data, contacts["ORD-100"])
    assert np.array_equal(wav, mono[10 * rate : 20 * rate])  # 24-bit stereo -> the mono source
    flac = clip_samples_any(data, contacts["ORD-101"])
    assert np.array_equal(flac, mono[10 * rate : 20 * rate])
    for order in ("ORD-102", "ORD-103"):  # lossy: the length is exact, the audio close
        lossy = clip_samples_any(data, contacts[order])
        assert len(lossy) == 10 * rate
    (aac,) = [f for f in note(contacts["ORD-103"])["files"]]
    assert aac["name"] == m4a.name


def clip_samples_any(data: Path, contact: ContactRecord) -> Samples:
    assert contact.clip is not None
    samples, _ = sf.read(str(data / contact.clip.path), dtype="int16")
    return np.asarray(samples, dtype=np.int16)


def _write_aac(path: Path, samples: Samples, rate: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(samples), 1024):
            block = samples[start : start + 1024].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# --- the rules on their own ------------------------------------------------------------------


def crm(i: int, at_s: int) -> CrmEvent:
    return CrmEvent(id=str(i), line=i, wall_ns=at_s * NS, kind="delivery")


def test_windows_merge_when_they_overlap_or_touch_and_split_at_the_maximum() -> None:
    got = windows([crm(2, 1000), crm(1, 880), crm(3, 1500)], 60 * NS, 60 * NS, 900 * NS)
    assert [(w.start_ns // NS, w.end_ns // NS, [e.id for e in w.events]) for w in got] == [
        (820, 1060, ["1", "2"]),  # 880+60 touches 1000-60: one window
        (1440, 1560, ["3"]),
    ]
    long = windows([crm(i, 100 * i) for i in range(1, 12)], 60 * NS, 60 * NS, 500 * NS)
    assert [(w.start_ns // NS, w.end_ns // NS, w.ended_by) for w in long] == [
        (40, 540, "timeout"),
        (540, 1040, "timeout"),
        (1040, 1160, "window"),
    ]
    assert [e.id for e in long[1].events] == ["6", "7", "8", "9", "10"]


def test_bext_time_reference_gives_the_time_of_the_first_sample(tmp_path: Path) -> None:
    start = datetime(2026, 11, 24, 23, 59, 58)
    path = write_bwf(tmp_path / "a.wav", speech(1, RATE), start)
    bext = read_bext(path)
    assert bext is not None
    assert bext.time_reference == (86400 - 2) * RATE
    assert bext_start(bext, RATE, ZONE) == start.replace(tzinfo=ZONE)
    assert read_bext(write_wav(tmp_path / "b.wav", speech(1, RATE))) is None


def test_filename_patterns_find_their_time_in_their_zone() -> None:
    utc = ZoneInfo("UTC")
    assert filename_start("REC_20261124_143210.wav", "REC_%Y%m%d_%H%M%S", ZONE) == datetime(
        2026, 11, 24, 14, 32, 10, tzinfo=ZONE
    )
    assert filename_start("x 2026-11-24 14-32.mp3", "%Y-%m-%d %H-%M", utc) == datetime(
        2026, 11, 24, 14, 32, tzinfo=utc
    )
    assert filename_start("REC_20261324_143210.wav", "REC_%Y%m%d_%H%M%S", ZONE) is None


def test_a_recorder_clock_is_corrected_by_its_offset_and_drift() -> None:
    recorder = config(
        recorders=[
            {
                "name": "d",
                "match": ["*"],
                "offset_s": 90,
                "drift_s_per_day": 2,
                "offset_at": "2026-11-20T09:00:00+03:00",
            }
        ]
    ).importer.recorders[0]
    at = ns(datetime(2026, 11, 24, 21, 0, tzinfo=ZONE))  # 4.5 days later
    assert correction_ns(recorder, at) == 99 * NS
    with pytest.raises(ValueError, match="drift_s_per_day needs offset_at"):
        config(recorders=[{"name": "d", "match": ["*"], "drift_s_per_day": 1}])


# --- events posted to the device (POST /event on the till's server) --------------------------


def post_event(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/event",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=STALL_S) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def posting_device(cfg: Config, data: Path) -> Runtime:
    """The device as the daemon assembles it, with its till's server on a free port."""
    backend = open_backend(BackendSpec(backend="simulated"))
    return assemble(cfg, FakeClock(), data, backend, publish=False, till=True)


def with_till(cfg: Config) -> Config:
    return cfg.replace(receipts=cfg.receipts.replace(port=0))


def test_events_posted_to_the_device_are_cut_by_the_next_import(day: Day, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = with_till(config())
    posted = [
        event(21, local(9, 5), rating="5"),  # inside A
        event(22, local(9, 30), rating="1"),  # inside C
        event(23, local(10, 30)),  # after every recording: reported, not lost
    ]
    with posting_device(cfg, data) as device:
        device.start()
        assert device.till is not None
        port = device.till.port
        for row in posted:
            status, answer = post_event(port, json.dumps(row).encode())
            assert (status, answer) == (201, {"stored": True, "new": True, "id": row["id"]})
        # the same id again (a CRM retrying): nothing new
        status, answer = post_event(port, json.dumps(posted[0]).encode())
        assert (status, answer) == (200, {"stored": True, "new": False, "id": "D-21"})
        # a bad row: 400 naming the field, the value and the fix; nothing stored
        bad = {**event(24, local(9, 6)), "rating": "meh"}
        status, answer = post_event(port, json.dumps(bad).encode())
        assert status == 400
        assert "rating ('rating') 'meh' is not a known rating" in str(answer["error"])
        status, answer = post_event(port, json.dumps({"order_id": "ORD-1"}).encode())
        assert status == 400
        assert "time ('time') is missing" in str(answer["error"])
        status, answer = post_event(port, b"[1, 2]")
        assert status == 400
        assert "JSON object" in str(answer["error"])
    # the device stopped (a restart): the posted events are in its store, not in memory
    summary = run_import(config(), [day.folder], None, data)
    assert (summary.events, summary.posted) == (0, 3)
    assert summary.contacts == 2
    assert [e.id for e in summary.not_covered] == ["D-23"]
    contacts, orphans, _ = stored(data)
    orders = by_order(contacts)
    assert set(orders) == {"ORD-121", "ORD-122"}
    assert "positive" in orders["ORD-121"].tags
    assert "negative" in orders["ORD-122"].tags
    crm = [e for e in orders["ORD-121"].events if e.kind == "delivery"]
    assert crm[0].data["source"] == "POST /event"
    want = expected(day.ab, day.ab_start_ns, ns(local(9, 4)), ns(local(9, 6)))
    assert np.array_equal(clip_samples(data, orders["ORD-121"]), want)
    assert orphans == 1  # D-23, kept and sent as an event outside any contact

    # the next import, merged with a file: the posted events already cut are not read again,
    # the one not covered is still waiting for its recording
    again = run_import(config(), [day.folder], day.events, data)
    assert again.posted == 1
    assert again.contacts == 5  # the file's events
    assert sorted(e.id for e in again.not_covered) == ["D-1", "D-23", "D-7"]
    assert len(stored(data)[0]) == 7


def test_a_posted_event_and_the_same_event_in_the_file_are_one(day: Day, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with posting_device(with_till(config()), data) as device:
        device.start()
        assert device.till is not None
        row = event(2, local(9, 5), rating="5")  # D-2, also in the events file
        assert post_event(device.till.port, json.dumps(row).encode())[0] == 201
    summary = run_import(config(), [day.folder], day.events, data)
    assert (summary.events, summary.posted, summary.contacts) == (7, 0, 5)


def test_the_command_imports_posted_events_without_an_events_file(
    day: Day, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = tmp_path / "device.toml"
    cfg_file.write_text(
        '[receipts]\nport = 0\n\n[importer]\ntimezone = "Europe/Moscow"\n\n'
        '[[importer.recorders]]\nname = "dict7"\nmatch = ["*/dict7/*"]\n'
        f"offset_s = {SLOW_S}\n"
    )
    data = tmp_path / "data"
    with posting_device(with_till(config()), data) as device:
        device.start()
        assert device.till is not None
        for row in (event(31, local(9, 15)), event(32, local(11, 0))):
            assert post_event(device.till.port, json.dumps(row).encode())[0] == 201
    code = main(["import", str(day.folder), "--data", str(data), "--config", str(cfg_file)])
    out = capsys.readouterr().out
    assert code == 1  # D-32 is not covered: named in the summary
    assert "events: 2 posted to the device" in out
    assert "contacts made: 1" in out
    assert "posted D-32: delivery at" in out


# --- to the sink -----------------------------------------------------------------------------


def test_imported_contacts_arrive_in_the_sink_through_a_real_broker(
    day: Day, tmp_path: Path, broker: LocalBroker
) -> None:
    sink = Sink(
        SinkConfig(
            broker=broker.url,
            data_dir=tmp_path / "sink",
            resend_after_s=2,
            check_every_s=0.5,
            backoff_min_s=0.05,
            backoff_max_s=0.5,
        )
    )
    sink.start()
    try:
        assert sink.subscribed.wait(10)
        data = tmp_path / "data"
        cfg = config().replace(mqtt=config().mqtt.replace(backoff_min_s=0.05))
        summary = run_import(cfg, [day.folder], day.events, data, broker=broker.url)
        assert summary.delivered is True
        contacts, _, depth = stored(data)
        assert depth == 0  # every row acknowledged by the sink's delivery receipt

        def arrived() -> list[dict[str, Any]]:
            with sink.db.connection_context():
                return [c for c in sink.ingest.contacts() if c["audio"]]

        wait_for(lambda: len(arrived()) == len(contacts))
        central = {c["id"]: c for c in arrived()}
        for record in contacts:
            row = central[record.id]
            assert row["mode"] == "import"
            assert row["events"] == contact_json(record)["events"]
            assert record.clip is not None
            assert Path(row["audio"]).read_bytes() == (data / record.clip.path).read_bytes()
        orders = sorted(
            e["data"]["order_id"]
            for c in central.values()
            for e in c["events"]
            if "data" in e and "order_id" in e["data"]
        )
        assert orders == ["ORD-102", "ORD-103", "ORD-104", "ORD-105", "ORD-106"]
    finally:
        sink.stop()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
