"""433 MHz OOK remotes: pulses → frames → protocol codes → confirmed presses (pure logic)."""

from edge.radio.codes import Decoded, Reject
from edge.radio.decoder import Decoder
from edge.radio.ook import decode_ook_file, explain_ook_file
from edge.radio.protocols import DECODERS
from edge.radio.pulses import EdgeToPulses, OokError, Pulse, format_ook, read_ook
from edge.radio.slicer import Frame, FrameSlicer

__all__ = [
    "DECODERS",
    "Decoded",
    "Decoder",
    "EdgeToPulses",
    "Frame",
    "FrameSlicer",
    "OokError",
    "Pulse",
    "Reject",
    "decode_ook_file",
    "explain_ook_file",
    "format_ook",
    "read_ook",
]
