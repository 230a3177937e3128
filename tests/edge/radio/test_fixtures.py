"""The regression suite: every capture decodes to exactly its expected lines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edge.radio import Decoder, decode_ook_file, explain_ook_file, read_ook

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rf433"
CAPTURES = sorted(FIXTURES.glob("*.ook"))


def expected_of(capture: Path) -> list[object]:
    lines = capture.with_name(capture.stem + ".expected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_suite_covers_the_required_cases() -> None:
    names = {c.stem for c in CAPTURES}
    required = {"ev1527_280us", "ev1527_320us", "ev1527_370us", "pt2262_floating", "noise"}
    required |= {f"rcswitch{n}" for n in range(1, 7)}
    required |= {"ev1527_jitter20pct", "two_keys", "truncated", "lookalike_rcswitch1_24bit"}
    # what real transmitters send (items 4-6 of issue #14)
    required |= {f"rcswitch{n}" for n in range(7, 13)}
    required |= {"lopsided_ev1527", "lopsided_rcswitch2", "agc_first_pulse", "ht12e_long_sync"}
    required |= {"newkaku", "newkaku_sloppy", "homeeasy", "homeeasy_sloppy"}
    required |= {"kerui_door", "kerui_pir"}
    # the negative corpus: nothing may decode
    required |= {"noise_agc_gaps", "lookalike_families", "truncated_repeats"}
    assert required <= names


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_capture_decodes_to_exactly_its_expected_lines(capture: Path) -> None:
    assert list(decode_ook_file(capture)) == expected_of(capture)


@pytest.mark.parametrize("name", ["noise", "noise_agc_gaps", "lookalike_families"])
@pytest.mark.parametrize("glitch_us", [0, 100])
def test_the_negative_corpus_gives_no_code_even_from_a_single_frame(
    name: str, glitch_us: int
) -> None:
    decoder = Decoder(repeats=1, glitch_us=glitch_us)  # the harshest setting
    got = [d for packet in packets(name) for d in decoder.feed_pulses(packet)]
    assert got == []


@pytest.mark.parametrize("glitch_us", [0, 100])
def test_truncated_repeats_are_never_confirmed(glitch_us: int) -> None:
    # a cut frame whose remaining time happens to look like another protocol's sync (an EV1527
    # frame cut after 23 bits reads as a 23-bit rc-switch 7 frame) is a valid frame as far as
    # any decoder can tell: only repeats vouch for a code, and a cut repeat has no valid lead
    decoder = Decoder(glitch_us=glitch_us)
    got = [d for packet in packets("truncated_repeats") for d in decoder.feed_pulses(packet)]
    assert got == []
    assert decoder.stats["sync"] >= 8


def test_agc_noise_closes_frames_so_the_protocol_checks_run_on_it() -> None:
    # the old idle-noise capture has almost no frame gaps: nothing reaches a protocol check
    old = Decoder()
    for packet in packets("noise"):
        old.feed_pulses(packet)
    assert old.stats["bits"] + old.stats["sync"] + old.stats["timing"] == 0
    decoder = Decoder()
    for packet in packets("noise_agc_gaps"):
        decoder.feed_pulses(packet)
    assert decoder.stats["bits"] + decoder.stats["sync"] + decoder.stats["timing"] >= 150
    assert decoder.stats["sync"] >= 30
    assert decoder.stats["timing"] >= 5
    # noise levels last at most 400 µs; every longer gap is one of the AGC's silences
    gaps = [gap for packet in packets("noise_agc_gaps") for _, gap in packet if gap > 400]
    assert min(gaps) >= 1500
    assert max(gaps) <= 20_000
    assert len(gaps) >= 200


def packets(name: str) -> list[list[tuple[int, int]]]:
    return read_ook((FIXTURES / f"{name}.ook").read_text())


def test_explain_gives_each_rejected_frame_its_reasons_and_a_verdict() -> None:
    lines = list(explain_ook_file(FIXTURES / "lookalike_families.ook"))
    frames = [line for line in lines if line.startswith("frame ")]
    reasons = [line for line in lines if line.startswith("  pt2262: ")]
    assert len(frames) == len(reasons) == 32
    assert all(
        all(f"{name}: " in line for name in ("ev1527", "newkaku", "homeeasy", "rcswitch"))
        for line in reasons
    )
    # the NewKaku look-alike (start low 6 T) is NewKaku's length with a wrong start
    assert any("newkaku: sync" in line for line in reasons)
    assert any("a length newkaku uses, but the sync" in line for line in frames)
    # the Manchester frames: a bit is out of tolerance for rc-switch
    assert any("close to rcswitch" in line for line in frames)
    assert lines[-1].startswith("summary: 32 frames reached the decoders: 0 decoded, 32 rejected")
    assert "0 press(es) confirmed" in lines[-1]


def test_explain_on_a_noisy_capture_says_too_noisy_and_still_prints_the_press() -> None:
    lines = list(explain_ook_file(FIXTURES / "noisy_press.ook"))
    presses = [json.loads(line) for line in lines if line.startswith("{")]
    assert presses == expected_of(FIXTURES / "noisy_press.ook")
    assert any("no sync of any supported protocol ends it" in line for line in lines)
    assert any("a noisy or sloppy signal" in line for line in lines)
    assert lines[-1].startswith("summary: ")
    assert "1 press(es) confirmed" in lines[-1]


def test_explain_of_a_clean_capture_has_nothing_to_explain() -> None:
    lines = list(explain_ook_file(FIXTURES / "ev1527_320us.ook"))
    assert [json.loads(line) for line in lines[:-1]] == expected_of(FIXTURES / "ev1527_320us.ook")
    assert " 0 rejected" in lines[-1]


def test_noise_capture_is_seconds_of_dense_edges() -> None:
    pulses = [p for packet in read_ook((FIXTURES / "noise.ook").read_text()) for p in packet]
    seconds = sum(mark + gap for mark, gap in pulses) / 1e6
    edges_per_s = 2 * len(pulses) / seconds
    assert seconds >= 3
    assert 8_000 <= edges_per_s <= 12_000


def test_fixtures_are_what_the_generator_makes() -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: dict[str, str] = module.render()
    on_disk = {p.name for p in FIXTURES.iterdir() if p.name != "make_fixtures.py"}
    assert set(files) == on_disk - {"__pycache__"}
    for name, text in files.items():
        assert (FIXTURES / name).read_text() == text, f"{name} is stale: run make_fixtures.py"
