"""Sound: ``[audio]`` (capture into the RAM ring, the clips' codec) and ``[prompt]`` (the prompt
played on the seller's short press)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge.config.base import Section


class AudioSection(Section):
    enabled: Annotated[bool, Field(description="Record audio and cut clips")] = True
    device: Annotated[
        str, Field(max_length=200, description="ALSA capture device (backend 'pi')")
    ] = "default"
    sample_rate: Annotated[
        Literal[8000, 16000], Field(description="Samples per second (mono, 16-bit)")
    ] = 16000
    period_frames: Annotated[
        int,
        Field(
            ge=32,
            le=16000,
            description="Samples per capture period: capture costs CPU per period (a wake-up, "
            "a read, a record), so longer periods cost less; clips are cut by sample index "
            "whatever the period (1600 = 100 ms at 16 kHz; bench/capture.py measures it)",
        ),
    ] = 1600
    ring_s: Annotated[
        float | None,
        Field(
            ge=10,
            le=14400,
            description="RAM ring length (s); unset = pre-roll + max_duration_s + window "
            "before_s (window mode: a window is handed out that long after its end, in case a "
            "press merges with it) + post-roll + 30 s",
        ),
    ] = None
    codec: Annotated[
        Literal["wav", "flac", "opus"],
        Field(description="Clip format: wav (LPCM 16-bit), flac (lossless) or opus (Ogg)"),
    ] = "wav"
    stall_s: Annotated[
        float,
        Field(
            ge=1,
            le=600,
            description="No audio period for this long (microphone gone): contacts waiting "
            "for audio are saved with the audio there is, truncated, or without a clip (s)",
        ),
    ] = 10.0


class PromptSection(Section):
    enabled: Annotated[
        bool,
        Field(description="Play a prompt ('your opinion matters') on the seller's short press"),
    ] = False
    wav: Annotated[str, Field(max_length=4096, description="16-bit PCM WAV file to play")] = ""
    device: Annotated[str, Field(max_length=200, description="ALSA playback device")] = "default"
