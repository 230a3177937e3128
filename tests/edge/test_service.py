"""The daemons under systemd: what a real ``contactpoint edge run`` / ``sink run`` process sends
to a real ``NOTIFY_SOCKET`` (an AF_UNIX datagram socket bound by the test, as systemd's), and
the journal logging."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.service import (
    Notifier,
    journal_logging,
    set_journal_device,
    under_journal,
    watchdog_interval_s,
)
from provisioning.broker import LocalBroker
from tests.notify import NotifySocket

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def _env(notify: NotifySocket, watchdog_s: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "JOURNAL_STREAM")}
    env["NOTIFY_SOCKET"] = notify.path
    env["WATCHDOG_USEC"] = str(round(watchdog_s * 1e6))
    env["PYTHONPATH"] = str(ROOT)
    return env


def _edge_run(tmp_path: Path, broker: LocalBroker, notify: NotifySocket, gaps: str) -> str:
    config = tmp_path / "device.toml"
    config.write_text(
        f"[mqtt]\nbroker = '{broker.url}'\n[receipts]\nport = 0\n"
        "[contacts]\npre_roll_s = 0.5\npost_roll_s = 0.5\n"
    )
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'start = "2026-11-23T09:00:00Z"\nduration = 7.0\n'
        "[[customers]]\narrive = 0.5\nleave = 4.0\n" + gaps
    )
    cmd = [sys.executable, "-m", "provisioning.main", "edge", "run", "--config", str(config)]
    cmd += ["--scenario", str(scenario), "--data", str(tmp_path / "data")]
    done = subprocess.run(
        cmd, env=_env(notify, 1.0), capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert notify.wait_for("STOPPING=1", 10)
    return done.stdout


def test_edge_daemon_is_ready_pings_reports_and_says_it_stops(
    tmp_path: Path, broker: LocalBroker, notify: NotifySocket
) -> None:
    out = _edge_run(tmp_path, broker, notify, "")
    assert "1 contacts" in out
    texts = notify.texts()
    ready = [i for i, m in enumerate(texts) if "READY=1" in m]
    assert len(ready) == 1, texts
    # nothing before READY: no ping before the store, the backend and the first audio period
    assert ready[0] == 0, texts
    assert "STATUS=0 contacts today, outbox 0, faults: none" in texts[0]
    pings = [m for m in texts if m == "WATCHDOG=1"]
    assert len(pings) >= 4, texts  # a 7 s scenario, a ping every 0.5 s
    assert not any("stalled" in m for m in texts), texts
    # the contact closed and was written: the status line says so
    assert any(m.startswith("STATUS=1 contacts today") for m in texts), texts
    last = texts[-1]
    assert last.startswith("STOPPING=1\nEXTEND_TIMEOUT_USEC="), texts
    assert int(last.split("\n")[1].partition("=")[2]) >= 120_000_000  # the drain timeout


def test_edge_watchdog_pings_stop_while_audio_capture_stalls(
    tmp_path: Path, broker: LocalBroker, notify: NotifySocket
) -> None:
    # the simulated microphone delivers nothing from 2.5 s to 5.5 s (hardware/fake.py SimGap)
    _edge_run(tmp_path, broker, notify, "[[audio_gaps]]\nat = 2.5\nlength = 3.0\n")
    texts = notify.texts()
    stalled = [i for i, m in enumerate(texts) if "audio capture stalled" in m]
    assert stalled, texts
    first = stalled[0]
    back = next(
        i
        for i in range(first + 1, len(texts))
        if texts[i].startswith("STATUS=") and i not in stalled
    )
    assert "WATCHDOG=1" not in texts[first:back], texts  # held while capture stalled
    assert "WATCHDOG=1" in texts[:first], texts
    assert "WATCHDOG=1" in texts[back:], texts
    when = dict(enumerate(t for t, _ in notify.messages))
    assert when[back] - when[first] >= 1.0  # a 3 s stall: at least two pings were withheld


def test_sink_is_ready_pings_and_says_it_stops(
    tmp_path: Path, broker: LocalBroker, notify: NotifySocket
) -> None:
    cmd = [sys.executable, "-m", "provisioning.main", "sink", "run", "--broker", broker.url]
    cmd += ["--data", str(tmp_path / "sink")]
    with subprocess.Popen(
        cmd, env=_env(notify, 1.0), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert notify.wait_for("READY=1"), notify.texts()
            assert notify.wait_for("STATUS=subscribed"), notify.texts()
            deadline = time.monotonic() + 60
            while notify.texts().count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    texts = notify.texts()
    assert texts.count("WATCHDOG=1") >= 3, texts
    assert texts[0].startswith("READY=1\nSTATUS="), texts
    assert any(m.startswith("STOPPING=1\nEXTEND_TIMEOUT_USEC=") for m in texts), texts


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.sent == []


def test_notifier_sends_to_the_socket_it_was_given(notify: NotifySocket) -> None:
    # not the environment's socket: the datagram is written directly (the protocol is one
    # datagram of KEY=value lines)
    assert Notifier({"NOTIFY_SOCKET": notify.path}).status("a\nb")
    assert notify.wait_for("STATUS=a b", 10)


def test_watchdog_interval_is_half_the_timeout_for_this_process_only() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000"}) == 1.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}) is None
    mine = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 1.5
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        assert not under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, stream)
        assert not under_journal({}, stream)


def test_journal_entries_carry_structured_fields_and_no_timestamp_of_ours() -> None:
    sent: list[dict[str, Any]] = []

    def sender(message: str, /, **fields: Any) -> None:
        sent.append({"MESSAGE": message, **fields})

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        journal_logging(logging.INFO, sender=sender)
        set_journal_device("till-3")
        logging.getLogger("edge.app").warning(
            "device %s failed: %s", "microphone", "gone", extra={"FAULT": "microphone"}
        )
        logging.getLogger("edge.app").info("contact c1 saved", extra={"CONTACT_ID": "c1"})
        logging.getLogger("edge.app").debug("not at INFO")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert [e["MESSAGE"] for e in sent] == [
        "edge.app: device microphone failed: gone",
        "edge.app: contact c1 saved",
    ]
    assert sent[0]["FAULT"] == "microphone"
    assert sent[0]["DEVICE"] == "till-3"
    assert sent[0]["PRIORITY"] == "4"
    assert sent[1]["CONTACT_ID"] == "c1"
    assert all(e["SYSLOG_IDENTIFIER"] == "contactpoint" for e in sent)
