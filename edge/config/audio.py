"""Sound: ``[audio]`` (capture into the RAM ring, the clips' codec) and ``[prompt]`` (the prompt
played on the seller's short press)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contract.config import SECRET
from edge.config.base import Section


class AudioSection(Section):
    enabled: Annotated[bool, Meta(description="Record audio and cut clips")] = True
    device: Annotated[
        str,
        Meta(
            max_length=2048,
            extra=SECRET,  # a stream URL may hold a password
            description="Capture device (backend 'pi'): an ALSA name ('default', "
            "'plughw:CARD=Device'), or an IP camera's / streaming server's audio: "
            "rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH, rtsps://, http://, https:// (needs the "
            "'camera' extra, PyAV), decoded and resampled to sample_rate, mono; the credentials "
            "never appear in logs, faults or errors",
        ),
    ] = "default"
    ca_file: Annotated[
        str,
        Meta(
            max_length=4096,
            description="CA certificate the server of an https:// or rtsps:// device must chain "
            "to (empty: its certificate is not checked, FFmpeg's default)",
        ),
    ] = ""
    sample_rate: Annotated[
        Literal[8000, 16000], Meta(description="Samples per second (mono, 16-bit)")
    ] = 16000
    period_frames: Annotated[
        int,
        Meta(
            ge=32,
            le=16000,
            description="Samples per capture period: capture costs CPU per period (a wake-up, "
            "a read, a record), so longer periods cost less; clips are cut by sample index "
            "whatever the period (1600 = 100 ms at 16 kHz; bench/capture.py measures it)",
        ),
    ] = 1600
    ring_s: (
        Annotated[
            float,
            Meta(
                ge=10,
                le=14400,
                description="RAM ring length (s); unset = pre-roll + max_duration_s + window "
                "before_s (window mode: a window is handed out that long after its end, in case a "
                "press merges with it) + post-roll + 30 s",
            ),
        ]
        | None
    ) = None
    codec: Annotated[
        Literal["wav", "flac", "opus"],
        Meta(description="Clip format: wav (LPCM 16-bit), flac (lossless) or opus (Ogg)"),
    ] = "wav"
    stall_s: Annotated[
        float,
        Meta(
            ge=1,
            le=600,
            description="No audio period for this long (microphone gone): contacts waiting "
            "for audio are saved with the audio there is, truncated, or without a clip (s)",
        ),
    ] = 10.0

    def __post_init__(self) -> None:
        tls = self.device.lower().startswith(("https:", "rtsps:"))
        if self.ca_file and not tls:
            raise ValueError("audio.ca_file is for a device that is an https:// or rtsps:// URL")
        if "://" in self.device:
            from hardware import check_stream_url  # only for a URL: the drivers stay unloaded

            try:
                check_stream_url(self.device)
            except ValueError as exc:
                raise ValueError(f"audio.device: {exc}") from None


class PromptSection(Section):
    enabled: Annotated[
        bool,
        Meta(description="Play a prompt ('your opinion matters') on the seller's short press"),
    ] = False
    wav: Annotated[str, Meta(max_length=4096, description="16-bit PCM WAV file to play")] = ""
    device: Annotated[str, Meta(max_length=200, description="ALSA playback device")] = "default"
