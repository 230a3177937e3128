"""Transcription speed: the real-time factor (CPU seconds per second of audio) of each speech
engine available here.

The audio: espeak-ng speaking a few service sentences (American English) with pauses, ``--minutes``
(2) long in all, as 16 kHz int16 — what ``sink transcribe`` hands an engine after reading a clip.
Each engine is opened once (not timed: a worker opens its engine once) and transcribes the
whole audio in 30 s clips; ``time.process_time()`` (CPU of every thread of this process) and
wall time are measured. faster-whisper and Vosk run only when their package is installed
(``pip install 'contactpoint[speech]'``) and a model directory is given (``--whisper-model``,
``--vosk-model``); pocketsphinx always runs, with the English model its wheel ships.

    .venv/bin/python bench/transcribe.py [--minutes 2] [--whisper-model DIR] [--vosk-model DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from cloud_sink.speech.config import SpeechSection
from cloud_sink.speech.engines import RATE, EngineError, Samples, open_engine, read_clip

SENTENCES = (
    "Good morning, welcome to our shop. How can I help you today?",
    "The card terminal is broken, please pay in cash.",
    "Thank you for your purchase. Would you recommend us to your friends?",
    "Your order will be delivered tomorrow between ten and twelve.",
)
CLIP_S = 30


def speech(minutes: float) -> Samples:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    parts: list[Samples] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(SENTENCES):
            out = Path(tmp) / f"{i}.wav"
            subprocess.run([espeak, "-v", "en-us", "-w", str(out), sentence], check=True)
            parts += [read_clip(out), np.zeros(RATE, np.int16)]
    one = np.concatenate(parts)
    reps = int(np.ceil(minutes * 60 * RATE / len(one)))
    return np.tile(one, reps)[: int(minutes * 60 * RATE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--whisper-model", help="a CTranslate2 Whisper model directory")
    parser.add_argument("--vosk-model", help="an unpacked Vosk model directory")
    args = parser.parse_args()
    audio = speech(args.minutes)
    seconds = len(audio) / RATE
    print(f"audio: {seconds:.0f} s of espeak-ng speech at 16 kHz, in {CLIP_S} s clips")
    setups = [SpeechSection(engine="pocketsphinx")]
    if args.whisper_model:
        setups.append(SpeechSection(engine="faster-whisper", model_dir=args.whisper_model))
    if args.vosk_model:
        setups.append(SpeechSection(engine="vosk", model_dir=args.vosk_model))
    for settings in setups:
        try:
            engine = open_engine(settings)
        except EngineError as exc:
            print(f"{settings.engine}: not run: {exc}")
            continue
        cpu, wall = time.process_time(), time.perf_counter()
        words = 0
        for start in range(0, len(audio), CLIP_S * RATE):
            words += len(engine.transcribe(audio[start : start + CLIP_S * RATE]).words)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"{settings.engine} ({engine.model}): real-time factor {cpu / seconds:.3f} CPU "
            f"({wall / seconds:.3f} wall), {seconds / cpu * 60 / 3600:.2f} audio hours per CPU "
            f"minute, {words} words"
        )
    for name in ("faster-whisper", "vosk"):
        if not any(s.engine == name for s in setups):
            print(f"{name}: not run (needs its package and a model directory)")


if __name__ == "__main__":
    main()
