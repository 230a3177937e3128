"""Speech-to-text engines behind one small interface, and the clip reader they share.

Rules:
- An engine is opened once per worker thread (:func:`open_engine`) and then turns 16 kHz mono
  int16 samples into a :class:`Transcript`: the text, its words with start and end times in
  seconds from the clip's start, the language, the engine's and the model's names.
- Every engine loads its model from the directory ``speech.model_dir`` names; that directory is
  checked before the engine's library is imported, so a missing model is always an
  :class:`EngineError` naming the setting and the fix. Only pocketsphinx has a default model,
  the English one its wheel ships. A missing library names the extra that installs it.
- faster-whisper and Vosk are optional (``pip install 'contactpoint[speech]'``): they are
  imported by name at run time, never at import time of this module.
- :func:`read_clip` decodes a stored clip (WAV with the standard library, FLAC and Opus with
  PyAV) to 16 kHz mono int16.
"""

from __future__ import annotations

import importlib
import json
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from cloud_sink.speech.config import SpeechSection

RATE: Final = 16_000
Samples = npt.NDArray[np.int16]


class EngineError(RuntimeError):
    """An engine cannot be opened (its model or its library is missing)."""


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    confidence: float | None = None

    def as_json(self) -> list[Any]:
        conf = None if self.confidence is None else round(self.confidence, 3)
        return [self.text, round(self.start_s, 3), round(self.end_s, 3), conf]


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    language: str
    engine: str
    model: str


class Engine(Protocol):
    name: str
    model: str

    def transcribe(self, samples: Samples) -> Transcript:
        """``samples``: 16 kHz mono int16."""
        ...


def _library(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EngineError(
            f"the speech engine needs the Python package {module!r}, which is not installed "
            "here: pip install 'contactpoint[speech]'"
        ) from None


def _model_dir(settings: SpeechSection, engine: str) -> Path:
    if settings.model_dir is None:
        raise EngineError(
            f"speech.model_dir is not set: {engine} loads its model from a directory; set "
            "speech.model_dir in the sink's --config file (or --model-dir)"
        )
    path = Path(settings.model_dir)
    if not path.is_dir():
        raise EngineError(
            f"speech.model_dir = {settings.model_dir!r} is not a directory: {engine} finds no "
            "model there; set speech.model_dir to the directory holding the model"
        )
    return path


# --- pocketsphinx -------------------------------------------------------------------------------

_SPHINX_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[\w+\]|\+\+\w+\+\+)$")


class PocketSphinx:
    """CMU PocketSphinx 5: HMM acoustic model, dictionary and n-gram language model."""

    name = "pocketsphinx"

    def __init__(self, settings: SpeechSection) -> None:
        ps = _library("pocketsphinx")
        if settings.model_dir is None:
            base = Path(ps.get_model_path()) / "en-us"
            self.model = "en-us (pocketsphinx wheel)"
            self.language = "en"
        else:
            base = _model_dir(settings, self.name)
            self.model = base.name
            self.language = settings.language or "en"
        hmm = base / "en-us" if (base / "en-us").is_dir() else base
        dicts = sorted(base.glob("*.dict"))
        lms = sorted(p for p in base.glob("*.lm.bin") if "phone" not in p.name)
        if not (hmm / "mdef").is_file() or not dicts or not lms:
            raise EngineError(
                f"speech.model_dir = {str(base)!r} holds no PocketSphinx model (an acoustic "
                "model directory with mdef, a .dict and a .lm.bin): set speech.model_dir to one"
            )
        self._decoder = ps.Decoder(
            hmm=str(hmm), dict=str(dicts[0]), lm=str(lms[0]), samprate=RATE, loglevel="FATAL"
        )
        self._frate = int(self._decoder.config["frate"])

    def transcribe(self, samples: Samples) -> Transcript:
        d = self._decoder
        d.start_utt()
        d.process_raw(samples.tobytes(), full_utt=True)
        d.end_utt()
        words: list[Word] = []
        for seg in d.seg():
            if _SPHINX_FILLER.match(seg.word):
                continue
            text = re.sub(r"\(\d+\)$", "", seg.word)  # alternative pronunciation marker
            words.append(
                Word(text, seg.start_frame / self._frate, (seg.end_frame + 1) / self._frate,
                     float(seg.prob))
            )  # fmt: skip
        return Transcript(
            " ".join(w.text for w in words), tuple(words), self.language, self.name, self.model
        )


# --- faster-whisper ------------------------------------------------------------------------------


class FasterWhisper:
    """Whisper through CTranslate2 (faster-whisper): multilingual, word timestamps."""

    name = "faster-whisper"

    def __init__(self, settings: SpeechSection) -> None:
        path = _model_dir(settings, self.name)
        if not (path / "model.bin").is_file():
            raise EngineError(
                f"speech.model_dir = {settings.model_dir!r} holds no CTranslate2 Whisper model "
                "(model.bin): set speech.model_dir to a converted model's directory"
            )
        fw = _library("faster_whisper")
        self.model = path.name
        self.language = settings.language
        self._model = fw.WhisperModel(
            str(path), device=settings.device, compute_type=settings.compute_type
        )

    def transcribe(self, samples: Samples) -> Transcript:
        audio = samples.astype(np.float32) / 32768.0
        segments, info = self._model.transcribe(
            audio, language=self.language, word_timestamps=True, vad_filter=True
        )
        words = [
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for segment in segments
            for w in (segment.words or ())
            if w.word.strip()
        ]
        return Transcript(
            " ".join(w.text for w in words), tuple(words), str(info.language), self.name,
            self.model,
        )  # fmt: skip


# --- Vosk ----------------------------------------------------------------------------------------


class Vosk:
    """Kaldi models through Vosk: small, fast, one language per model."""

    name = "vosk"

    def __init__(self, settings: SpeechSection) -> None:
        path = _model_dir(settings, self.name)
        if not (path / "am").is_dir() and not (path / "final.mdl").is_file():
            raise EngineError(
                f"speech.model_dir = {settings.model_dir!r} holds no Vosk model (an 'am' "
                "directory): set speech.model_dir to an unpacked Vosk model"
            )
        self._vosk = _library("vosk")
        self._vosk.SetLogLevel(-1)
        self._model = self._vosk.Model(str(path))
        self.model = path.name
        self.language = settings.language or path.name.removeprefix("vosk-model-")[:2]

    def transcribe(self, samples: Samples) -> Transcript:
        recognizer = self._vosk.KaldiRecognizer(self._model, RATE)
        recognizer.SetWords(True)
        results: list[dict[str, Any]] = []
        step = RATE * 4
        for offset in range(0, len(samples), step):
            if recognizer.AcceptWaveform(samples[offset : offset + step].tobytes()):
                results.append(json.loads(recognizer.Result()))
        results.append(json.loads(recognizer.FinalResult()))
        words = [
            Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
            for r in results
            for w in r.get("result", ())
        ]
        return Transcript(
            " ".join(w.text for w in words), tuple(words), self.language, self.name, self.model
        )


_ENGINES: Final[dict[str, type[PocketSphinx] | type[FasterWhisper] | type[Vosk]]] = {
    "pocketsphinx": PocketSphinx,
    "faster-whisper": FasterWhisper,
    "vosk": Vosk,
}


def open_engine(settings: SpeechSection) -> Engine:
    """A ready engine as ``settings`` chooses; :class:`EngineError` when it cannot be."""
    return _ENGINES[settings.engine](settings)


# --- clips ---------------------------------------------------------------------------------------


def resample(samples: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    """``samples`` at ``rate`` -> 16 kHz (linear interpolation after a moving-average low pass
    when going down: enough for speech recognition, whose band ends well below 8 kHz)."""
    if rate == RATE or len(samples) == 0:
        return samples
    if rate > RATE:
        width = int(np.ceil(rate / RATE))
        samples = np.convolve(samples, np.ones(width) / width, mode="same")
    n = round(len(samples) * RATE / rate)
    at = np.arange(n) * (rate / RATE)
    out: npt.NDArray[np.float64] = np.interp(at, np.arange(len(samples)), samples)
    return out


def read_clip(path: Path) -> Samples:
    """The clip at ``path`` as 16 kHz mono int16 (channels averaged)."""
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
        if width == 1:
            data = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) * 256
        elif width == 2:
            data = np.frombuffer(raw, "<i2").astype(np.float64)
        elif width == 3:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            data = (((b[:, 2] << 24) | (b[:, 1] << 16) | (b[:, 0] << 8)) >> 16).astype(np.float64)
        else:
            data = np.frombuffer(raw, "<i4").astype(np.float64) / 65536
    else:
        data, rate, channels = _decode_with_av(path)
    mono = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data
    out = resample(mono, rate)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _decode_with_av(path: Path) -> tuple[npt.NDArray[np.float64], int, int]:
    try:
        av = importlib.import_module("av")
    except ImportError:
        raise EngineError(
            f"{path.name}: decoding {path.suffix} clips needs PyAV: "
            "pip install 'contactpoint[sink]'"
        ) from None
    blocks: list[npt.NDArray[np.float64]] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                blocks.append(out.to_ndarray().reshape(-1).astype(np.float64))
        for out in resampler.resample(None):
            blocks.append(out.to_ndarray().reshape(-1).astype(np.float64))
    return (np.concatenate(blocks) if blocks else np.zeros(0)), RATE, 1
