"""Property: whatever a simulated remote sends (within the supported ranges) decodes back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.radio import Decoder
from hardware import _remote as remote
from tests.edge.radio.expect import canonical
from tests.edge.radio.helpers import WRAP, run


@st.composite
def transmissions(draw: st.DrawFn) -> tuple[int, int, int, int]:
    protocol = draw(st.integers(1, 12))
    bits = draw(st.sampled_from([12, 20, 24, 24, 24, 28, 32, 40, 64]))
    code = draw(st.integers(0, (1 << bits) - 1))
    nominal = remote.NOMINAL_PULSE_US[protocol]
    # EV1527-style remotes span 280-370 µs; others within ±20 % of rc-switch's nominal base
    low, high = (280, 420) if protocol == 1 else (round(nominal * 0.8), round(nominal * 1.2))
    return protocol, code, bits, draw(st.integers(low, high))


@settings(max_examples=300, deadline=None)
@given(
    sent=transmissions(),
    repeats=st.integers(3, 8),
    jitter_pct=st.integers(0, 12),
    start_tick=st.one_of(st.integers(0, WRAP - 1), st.integers(WRAP - 200_000, WRAP - 1)),
    seed=st.integers(0, 2**16),
)
def test_transmit_edges_decode_round_trip(
    sent: tuple[int, int, int, int], repeats: int, jitter_pct: int, start_tick: int, seed: int
) -> None:
    protocol, code, bits, pulse_us = sent
    pulses = remote.transmit(protocol, code, bits, pulse_us, repeats)
    jitter = pulse_us * jitter_pct // 100
    got = run(Decoder(), pulses, start_tick=start_tick, jitter_us=jitter, seed=seed)
    assert [d.to_json() for d in got] == [canonical(protocol, code, bits)]
    assert abs(got[0].pulse_us - pulse_us) <= max(2, pulse_us // 50)
