"""Hardware in the loop (opt-in): the gpiod receiver on a real Pi with a looped-back pin.

Wiring: a jumper from BCM ``CONTACTPOINT_HIL_OUT`` (default 17, header pin 11) to BCM
``CONTACTPOINT_HIL_IN`` (default 27, header pin 13), nothing else on either pin. Run on the Pi:

    CONTACTPOINT_HIL=1 pytest -m hardware tests/hardware/test_gpiod_hil.py

The output pin is driven from Python with a busy-wait on the monotonic clock, so the *sent*
durations are only as exact as this process is scheduled; what is checked is the receiver: every
edge arrives, in order, with the kernel's timestamp close to when it was driven, none lost, and
the decoder gets the code back. rc-switch protocol 2 (650 µs) leaves room for a Python driver.
"""

from __future__ import annotations

import os
import queue
import time

import pytest

from edge.radio import Decoder
from hardware import _remote as remote
from hardware._api import HardwareEvent, RadioEdge
from hardware.gpiod_rx import GpiodRf433Receiver, KernelGpio, find_line, import_gpiod
from tests.edge.radio.expect import canonical

pytestmark = pytest.mark.hardware

OUT = int(os.environ.get("CONTACTPOINT_HIL_OUT", "17"))
IN = int(os.environ.get("CONTACTPOINT_HIL_IN", "27"))
SLACK_NS = 200_000  # the Python driver's scheduling, not the receiver's accuracy


def test_a_looped_back_pin_gives_kernel_timed_edges_that_decode() -> None:
    gpiod = import_gpiod()
    line = gpiod.line
    path, offset = find_line(KernelGpio(), OUT)
    got: queue.SimpleQueue[HardwareEvent] = queue.SimpleQueue()
    receiver = GpiodRf433Receiver(IN, watchdog_ms=20)
    receiver.start(got.put)
    pulses = remote.transmit(2, 0x5A3C9, 20, 650, repeats=6)
    driven: list[tuple[int, int]] = []
    try:
        settings = gpiod.LineSettings(direction=line.Direction.OUTPUT)
        with gpiod.request_lines(
            path, consumer="contactpoint-hil", config={offset: settings}
        ) as out:
            t = time.monotonic_ns() + 5_000_000
            for mark, gap in pulses:
                for level, until in ((1, t + mark * 1000), (0, t + (mark + gap) * 1000)):
                    while time.monotonic_ns() < t:
                        pass
                    out.set_value(offset, line.Value.ACTIVE if level else line.Value.INACTIVE)
                    driven.append((level, time.monotonic_ns()))
                    t = until
        radio: list[RadioEdge] = []
        while not radio or radio[-1].level != 2:
            event = got.get(timeout=5)
            assert isinstance(event, RadioEdge), event
            radio.append(event)
    finally:
        receiver.stop()
    assert receiver.lost_edges == 0
    edges = radio[:-1]
    assert [e.level for e in edges] == [level for level, _ in driven]
    for edge, (_, at) in zip(edges, driven, strict=True):
        assert at - SLACK_NS <= edge.t_ns <= at  # stamped by the kernel, before we looked
        assert edge.tick_us == (edge.t_ns // 1000) & 0xFFFFFFFF
    decoder = Decoder()
    codes = [d.to_json() for e in radio for d in decoder.feed(e.level, e.tick_us, e.t_ns)]
    assert codes == [canonical(2, 0x5A3C9, 20)]
