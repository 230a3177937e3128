"""Clips cut by sample index: exact boundaries, rolls, truncation, gaps, flush, codecs, failure.

The microphone here is a small independent stand-in: sample ``i`` is ``SPEECH.render(i, 1)`` and
was captured at ``i * NS // RATE``, so every expected clip is recomputed from the scenario.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from edge.audio import Clipper, ClipResult, Codec, Ring
from edge.clock import NS
from edge.records import ClipInfo
from hardware import AudioPeriod
from hardware._speech import SpeechLike

RATE = 16000
SPEECH = SpeechLike(RATE, seed=7)


def s(seconds: float) -> int:
    """Seconds to nanoseconds."""
    return round(seconds * NS)


def idx(seconds: float) -> int:
    """Seconds to a sample index."""
    return round(seconds * RATE)


class Mic:
    """Delivers fixed periods of SPEECH; samples inside ``gaps`` are never delivered."""

    def __init__(self, period: int = 1600, gaps: tuple[tuple[int, int], ...] = ()) -> None:
        self.period = period
        self.gaps = gaps
        self.next = 0

    def periods_until(self, index: int) -> list[AudioPeriod]:
        out: list[AudioPeriod] = []
        while self.next < index:
            start, end = self.next, self.next + self.period
            self.next = end
            cuts = sorted({start, end} | {b for g in self.gaps for b in g if start < b < end})
            for a, b in itertools.pairwise(cuts):
                if not any(g0 <= a and b <= g1 for g0, g1 in self.gaps):
                    out.append(AudioPeriod(a, SPEECH.render(a, b - a), a * NS // RATE))
        return out

    def feed(self, clipper: Clipper[str], until: int) -> list[ClipInfo]:
        """The clips cut on the way; every request here expects its clip."""
        return clips_of(self.results(clipper, until))

    def results(self, clipper: Clipper[str], until: int) -> list[ClipResult[str]]:
        done: list[ClipResult[str]] = []
        for period in self.periods_until(until):
            done += clipper.on_period(period)
        return done


def clips_of(results: list[ClipResult[str]]) -> list[ClipInfo]:
    """The clips of ``results``, each handed back with the waiter it was requested with."""
    clips: list[ClipInfo] = []
    for result in results:
        assert result.clip is not None, f"no clip for {result.contact_id}: {result.missing}"
        assert result.waiter == f"waiting for {result.contact_id}"
        clips.append(result.clip)
    return clips


def ask(clipper: Clipper[str], contact_id: str, start_ns: int, end_ns: int) -> None:
    """Request a clip, waiting for it with a marker that must come back with its result."""
    clipper.request(contact_id, start_ns, end_ns, f"waiting for {contact_id}")


def make(
    tmp_path: Path,
    ring_s: float = 120.0,
    pre_s: float = 3.0,
    post_s: float = 3.0,
    codec: Codec = "wav",
) -> Clipper[str]:
    return Clipper(Ring(idx(ring_s)), RATE, tmp_path, codec, s(pre_s), s(post_s))


def audio_of(tmp_path: Path, clip: ClipInfo) -> npt.NDArray[np.int16]:
    data, rate = sf.read(str(tmp_path / clip.path), dtype="int16")
    assert rate == RATE
    return np.asarray(data, dtype=np.int16)


def test_clip_boundaries_are_exact_to_the_sample(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    mic = Mic()
    assert mic.feed(clipper, idx(75)) == []
    ask(clipper, "c1", s(10), s(75))
    [clip] = mic.feed(clipper, idx(80))

    assert (clip.start_index, clip.end_index) == (idx(10 - 3), idx(75 + 3))
    assert (clip.start_index, clip.end_index) == (112000, 1248000)
    assert (clip.start_ns, clip.end_ns) == (s(7), s(78))
    assert (clip.contact_id, clip.codec, clip.sample_rate) == ("c1", "wav", RATE)
    assert not clip.truncated
    assert clip.gaps == ()
    assert clip.path == "clips/c1.wav"
    data = (tmp_path / clip.path).read_bytes()
    assert clip.sha256 == hashlib.sha256(data).hexdigest()
    assert clip.bytes == len(data)
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(idx(7), idx(71)))
    assert os.listdir(tmp_path / "clips") == ["c1.wav"]  # no temporary file left
    assert clipper.pending == 0


def test_clip_waits_for_its_post_roll(tmp_path: Path) -> None:
    clipper = make(tmp_path, pre_s=2.0, post_s=3.0)
    mic = Mic(period=700)  # periods do not line up with seconds
    mic.feed(clipper, idx(20))
    ask(clipper, "c1", s(12), s(20))
    last_needed = idx(23)  # 368000: the clip ends there
    first_complete = -(-last_needed // 700) * 700  # the first period reaching it
    released_at = None
    for period in mic.periods_until(idx(25)):
        before = clipper.pending
        clips = clips_of(clipper.on_period(period))
        if clips:
            assert before == 1
            released_at = period.end_index
            [clip] = clips
    assert released_at == first_complete
    assert (clip.start_index, clip.end_index) == (idx(10), idx(23))
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(idx(10), idx(13)))


def test_a_request_already_complete_is_cut_by_ready(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    Mic().feed(clipper, idx(30))
    ask(clipper, "old", s(5), s(10))
    assert clipper.pending == 1
    [clip] = clips_of(clipper.ready())
    assert (clip.start_index, clip.end_index) == (idx(2), idx(13))
    assert clipper.pending == 0


def test_a_request_made_before_any_audio_is_placed_by_the_first_period(tmp_path: Path) -> None:
    clipper = make(tmp_path, pre_s=1.0, post_s=1.0)
    ask(clipper, "early", s(2), s(4))
    assert clipper.ready() == []
    [clip] = Mic().feed(clipper, idx(6))
    assert (clip.start_index, clip.end_index) == (idx(1), idx(5))
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(idx(1), idx(4)))


def test_contact_longer_than_the_ring_keeps_its_newest_audio(tmp_path: Path) -> None:
    clipper = make(tmp_path, ring_s=20.0)
    mic = Mic()
    mic.feed(clipper, idx(60))
    ask(clipper, "long", s(5), s(60))
    [clip] = mic.feed(clipper, idx(64))
    # cut when the head reached 63 s: the ring then held [43 s, 63 s)
    assert clip.truncated
    assert (clip.start_index, clip.end_index) == (idx(63 - 20), idx(63))
    assert clip.start_ns == s(43)
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(idx(43), idx(20)))


def test_start_before_capture_began_is_clamped_and_flagged(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    mic = Mic()
    mic.feed(clipper, idx(4))
    ask(clipper, "first", s(1), s(4))  # pre-roll reaches back to -2 s
    [clip] = mic.feed(clipper, idx(8))
    assert clip.truncated
    assert (clip.start_index, clip.end_index) == (0, idx(7))
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(0, idx(7)))


def test_a_gap_inside_a_clip_is_zeros_at_its_place_and_listed(tmp_path: Path) -> None:
    gap = (idx(30.05), idx(31.2))  # not aligned to the 0.1 s periods
    clipper = make(tmp_path, pre_s=0.0, post_s=0.0)
    mic = Mic(gaps=(gap,))
    mic.feed(clipper, idx(33))
    ask(clipper, "gappy", s(28), s(33))
    [clip] = mic.feed(clipper, idx(34))

    assert (clip.start_index, clip.end_index) == (idx(28), idx(33))
    assert clip.end_ns - clip.start_ns == s(5)  # time stays right: nothing was stitched
    assert clip.gaps == (gap,)
    assert clip.missing_samples == gap[1] - gap[0]
    assert not clip.truncated
    expected = np.array(SPEECH.render(idx(28), idx(5)))
    expected[gap[0] - idx(28) : gap[1] - idx(28)] = 0
    np.testing.assert_array_equal(audio_of(tmp_path, clip), expected)


def test_flush_cuts_pending_clips_with_the_audio_there_is(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    Mic().feed(clipper, idx(21))
    ask(clipper, "late", s(10), s(20))  # wants audio up to 23 s
    ask(clipper, "later", s(15), s(21))
    assert clipper.ready() == []
    clips = clips_of(clipper.flush())
    assert [c.contact_id for c in clips] == ["late", "later"]
    for clip, start in zip(clips, (idx(7), idx(12)), strict=True):
        assert (clip.start_index, clip.end_index) == (start, idx(21))
        assert clip.truncated  # shorter than asked for
        np.testing.assert_array_equal(
            audio_of(tmp_path, clip), SPEECH.render(start, idx(21) - start)
        )
    assert clipper.pending == 0


def test_flush_without_any_audio_reports_the_contact_as_failed(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    ask(clipper, "silent", s(1), s(2))
    [result] = clipper.flush()
    assert (result.contact_id, result.waiter) == ("silent", "waiting for silent")
    assert (result.result, result.clip, result.missing) == ("no_audio", None, "no_audio")
    assert clipper.pending == 0
    assert clipper.flush() == []  # reported once
    assert not (tmp_path / "clips").exists()


@pytest.mark.parametrize(("codec", "ext"), [("wav", ".wav"), ("flac", ".flac"), ("opus", ".opus")])
def test_each_codec_writes_a_readable_clip(tmp_path: Path, codec: Codec, ext: str) -> None:
    period = 320
    clipper = make(tmp_path, pre_s=1.0, post_s=1.0, codec=codec)
    mic = Mic(period=period)
    mic.feed(clipper, idx(6))
    ask(clipper, "c", s(3), s(6))
    [clip] = mic.feed(clipper, idx(8))
    assert clip.path == f"clips/c{ext}"
    assert clip.codec == codec
    assert clip.sha256 == hashlib.sha256((tmp_path / clip.path).read_bytes()).hexdigest()
    back = audio_of(tmp_path, clip)
    expected = SPEECH.render(idx(2), idx(5))
    if codec == "opus":
        assert abs(len(back) - len(expected)) <= period
        assert np.sqrt(np.mean(back.astype(np.float64) ** 2)) > 300
    else:
        np.testing.assert_array_equal(back, expected)
    assert os.listdir(tmp_path / "clips") == [f"c{ext}"]


def test_a_failed_write_leaves_no_file_and_reports_the_contact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(src: str, dst: str) -> None:
        raise OSError("card removed")

    monkeypatch.setattr(os, "replace", fail)
    clipper = make(tmp_path, pre_s=0.0, post_s=0.0)
    mic = Mic()
    mic.feed(clipper, idx(3))
    ask(clipper, "lost", s(1), s(2))
    ask(clipper, "also", s(1.5), s(2.5))
    results = mic.results(clipper, idx(4))
    assert [(r.contact_id, r.waiter, r.missing) for r in results] == [
        ("lost", "waiting for lost", "write_failed"),
        ("also", "waiting for also", "write_failed"),
    ]
    assert all(r.clip is None for r in results)
    assert clipper.pending == 0
    assert mic.results(clipper, idx(5)) == []  # reported once
    assert os.listdir(tmp_path / "clips") == []


def test_a_full_disk_asks_for_room_and_writes_the_clip_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``on_disk_full`` (given at construction) is asked for room when the OS says ENOSPC;
    room made, the write is tried once more; no room, the result says ``disk_full``."""
    room = {"free": False}
    asked: list[tuple[str, int]] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        if not room["free"]:
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        real_replace(src, dst)

    def make_room(what: str, need: int) -> bool:
        asked.append((what, need))
        room["free"] = what == "roomy"
        return room["free"]

    monkeypatch.setattr(os, "replace", replace)
    clipper: Clipper[str] = Clipper(
        Ring(idx(60)), RATE, tmp_path, "wav", 0, 0, on_disk_full=make_room
    )
    mic = Mic()
    mic.feed(clipper, idx(3))
    ask(clipper, "cramped", s(1), s(2))
    [result] = mic.results(clipper, idx(4))
    assert (result.contact_id, result.missing) == ("cramped", "disk_full")
    room["free"] = False
    ask(clipper, "roomy", s(2), s(3))
    [clip] = mic.feed(clipper, idx(5))
    assert clip.path == "clips/roomy.wav"
    assert (tmp_path / clip.path).exists()
    assert [what for what, _ in asked] == ["cramped", "roomy"]
    assert all(need >= idx(1) * 2 for _, need in asked)  # at least a second of 16-bit audio


def test_index_of_follows_the_latest_period_anchor(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    with pytest.raises(RuntimeError, match="no audio"):
        clipper.index_of(0)
    boot = 1_234_567_891  # capture started at an arbitrary monotonic time
    t0 = boot + s(3)
    clipper.on_period(AudioPeriod(idx(3), SPEECH.render(idx(3), 320), t0))
    assert clipper.index_of(t0) == idx(3)
    assert clipper.index_of(t0 + s(1)) == idx(4)
    assert clipper.index_of(t0 + 62_499) == idx(3)  # still the first sample's 62.5 µs
    assert clipper.index_of(t0 + 62_500) == idx(3) + 1
    assert clipper.index_of(t0 - 1) == idx(3) - 1
    assert clipper.time_of(idx(4)) == t0 + s(1)
    late = t0 + 320 * NS // RATE + 40_000  # the next period was stamped 40 µs late
    clipper.on_period(AudioPeriod(idx(3) + 320, SPEECH.render(idx(3) + 320, 320), late))
    assert clipper.index_of(late) == idx(3) + 320
    assert clipper.index_of(late + s(2)) == idx(5) + 320


def test_clips_ready_together_come_out_in_request_order(tmp_path: Path) -> None:
    clipper = make(tmp_path, pre_s=0.0, post_s=0.0)
    mic = Mic(period=idx(1))
    mic.feed(clipper, idx(1))
    ask(clipper, "b", s(0.5), s(1.5))
    ask(clipper, "a", s(0.2), s(1.2))
    clips = mic.feed(clipper, idx(2))
    assert [c.contact_id for c in clips] == ["b", "a"]


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    clipper = make(tmp_path)
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="file name"):
            clipper.request(bad, s(1), s(2), bad)
    with pytest.raises(ValueError, match="ends before"):
        ask(clipper, "x", s(2), s(1))
    ask(clipper, "x", s(1), s(2))
    with pytest.raises(ValueError, match="already pending"):
        ask(clipper, "x", s(1), s(2))
    with pytest.raises(ValueError, match="codec"):
        Clipper(Ring(10), RATE, tmp_path, "mp3", 0, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("codec", ["wav", "flac"])
def test_a_clip_across_the_rings_end_is_the_audio_in_order(tmp_path: Path, codec: Codec) -> None:
    clipper = make(tmp_path, ring_s=30.0, pre_s=0.0, post_s=0.0, codec=codec)
    mic = Mic()
    mic.feed(clipper, idx(40))  # the ring (30 s) wrapped at 30 s: 20..40 s is in two pieces
    ask(clipper, "c1", s(20), s(40))
    [clip] = mic.feed(clipper, idx(41))
    assert (clip.start_index, clip.end_index) == (idx(20), idx(40))
    np.testing.assert_array_equal(audio_of(tmp_path, clip), SPEECH.render(idx(20), idx(20)))
    data = (tmp_path / clip.path).read_bytes()
    assert (clip.bytes, clip.sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_a_long_wav_clip_is_written_without_a_copy_of_its_audio(tmp_path: Path) -> None:
    """Issue #14: the clip (here 4 minutes, 7.7 MB) is written from the ring's own memory, so
    cutting it allocates a small fraction of its size (the copy out of the ring was the
    largest allocation after the ring itself)."""
    clipper = make(tmp_path, ring_s=300.0, pre_s=0.0, post_s=0.0)
    mic = Mic(period=16000)
    periods = mic.periods_until(idx(250))
    for period in periods[:-1]:
        clipper.on_period(period)
    ask(clipper, "long", s(5), s(245))
    tracemalloc.start()
    try:
        [result] = clipper.on_period(periods[-1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.clip is not None
    size = idx(240) * 2
    assert result.clip.bytes == size + 44
    assert peak < size // 20, f"cutting a {size} byte clip allocated {peak} bytes"
    np.testing.assert_array_equal(audio_of(tmp_path, result.clip), SPEECH.render(idx(5), idx(240)))
