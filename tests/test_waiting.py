"""tests/waiting.py: a wait goes on while progress moves and fails, saying why, when it stalls
or reaches its cap (on a fake clock: each look at the condition is one second)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.waiting import (
    WaitError,
    Watch,
    child_processes,
    reap_children,
    tree_state,
    wait_exit,
    wait_for,
)


class Ticking:
    """A fake monotonic clock that moves one second at every look at the condition."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def condition(self, done_at: float) -> bool:
        self.now += 1.0
        return self.now >= done_at


def test_a_wait_outlasts_the_stall_limit_while_progress_moves() -> None:
    clock = Ticking()
    counter = itertools.count()
    waited = wait_for(
        lambda: clock.condition(40), "forty", progress=lambda: next(counter),
        stall_s=3, cap_s=100, poll_s=0, clock=clock,
    )  # fmt: skip
    assert waited == 40  # far beyond stall_s: it kept moving


def test_a_stalled_wait_fails_saying_what_was_expected_and_seen() -> None:
    clock = Ticking()
    rows = iter([1, 2, 3, 4, 5])

    def progress() -> int:
        return next(rows, 5)  # moves four times, then stays at 5

    with pytest.raises(WaitError) as failed:
        wait_for(
            lambda: clock.condition(1000), "13 rows", progress=progress,
            seen=lambda: "5 rows", stall_s=3, poll_s=0, clock=clock,
        )  # fmt: skip
    message = str(failed.value)
    assert message.startswith("waited ")
    assert "for 13 rows: no progress for 3 s" in message
    assert message.endswith("seen: 5 rows")
    assert 7 <= clock.now <= 10  # the last move, then three seconds of nothing


def test_the_cap_ends_a_wait_that_moves_forever() -> None:
    clock = Ticking()
    counter = itertools.count()
    with pytest.raises(WaitError, match=r"gave up at the cap of 20 s .*progress last at \d+"):
        wait_for(
            lambda: clock.condition(1000), "never", progress=lambda: next(counter),
            stall_s=3, cap_s=20, poll_s=0, clock=clock,
        )  # fmt: skip
    assert clock.now == 20


def test_without_a_progress_measure_the_whole_wait_is_one_stall() -> None:
    clock = Ticking()
    with pytest.raises(WaitError, match=r"not reached within 5 s \(no progress measure\)"):
        wait_for(lambda: clock.condition(1000), "x", stall_s=5, poll_s=0, clock=clock)
    assert clock.now == 5


def test_a_seen_that_fails_does_not_hide_the_failure() -> None:
    def broken() -> str:
        raise OSError("gone")

    watch = Watch("y", seen=broken, stall_s=0)
    with pytest.raises(WaitError, match=r"for y: .*seen: \(could not be read: OSError"):
        watch.check()


def test_an_aborted_wait_ends_at_once() -> None:
    ending = threading.Event()
    ending.set()
    with pytest.raises(WaitError, match="aborted"):
        wait_for(lambda: False, "z", abort=ending)


def test_a_stuck_process_is_killed_and_reaped(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.DEVNULL
    )
    try:
        with pytest.raises(WaitError, match="the sleeper to exit"):
            wait_exit(process, "the sleeper to exit", progress=lambda: tree_state(tmp_path),
                      stall_s=0.5)  # fmt: skip
        assert process.returncode == -9  # killed and collected: no stray process, no zombie
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tree_state_moves_with_files_bytes_and_writes(tmp_path: Path) -> None:
    assert tree_state(tmp_path) == (0, 0, 0)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_bytes(b"12345")
    (tmp_path / "y").write_bytes(b"67")
    files, size, newest = tree_state(tmp_path)
    assert (files, size) == (2, 7)
    assert newest > 0
    os.utime(tmp_path / "y", ns=(newest + 10**9, newest + 10**9))  # rewritten in place
    assert tree_state(tmp_path) == (2, 7, newest + 10**9)


def test_children_left_behind_are_found_killed_and_collected() -> None:
    before = set(child_processes())
    left = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.DEVNULL
    )
    done = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.DEVNULL)
    wait_for(lambda: done.pid in child_processes() and "Z" in proc_state(done.pid), "a zombie")
    try:
        found = child_processes()
        assert left.pid in found
        assert "time.sleep(600)" in found[left.pid]
        strays = reap_children(before)
        assert set(strays) == {left.pid, done.pid}  # the running one and the uncollected one
        assert not set(child_processes()) - before
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
    # their statuses went to reap_children: Popen sees no error, and nothing is left running
    assert left.wait() in (-9, 0)
    assert done.wait() == 0


def proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]
