"""Cutting contacts out of the ring into clip files, by sample index.

Rules:

- Every :class:`~hardware.AudioPeriod` is written into the ring and becomes the time anchor
  ``(start_index, t_ns)``; monotonic time maps to the sample being captured at that instant,
  ``index = anchor_index + floor((t - anchor_t) * rate / 1e9)``, in exact integer arithmetic.
- A request ``[start, end]`` asks for ``[start - pre_roll, end + post_roll)``. Its times become
  sample indices once (at the request, or at the first period if no audio came yet); from then
  on the clip is cut by index only.
- A clip is cut as soon as its last sample is in the ring: by the :meth:`Clipper.on_period` that
  completes it, or by :meth:`Clipper.ready` (which ``on_period`` calls).
- Never wrong audio: a start before index 0, or already overwritten, moves the clip's start to
  the oldest audio there is and flags it ``truncated``; at :meth:`Clipper.flush` the end is
  clamped to the newest audio and a shortened clip is flagged ``truncated`` too.
- Gaps in capture stay zeros at their true place and are listed in :attr:`ClipInfo.gaps`.
- Every request ends exactly once, in a :class:`ClipResult` returned by the call that settles
  it (:meth:`Clipper.on_period`, :meth:`Clipper.ready` or :meth:`Clipper.flush`): the clip, or
  the reason there is none (:data:`ClipMissing`: ``no_audio``, ``disk_full`` = the OS refused
  the write for space, ``write_failed`` = any other error), together with the ``waiter`` the
  request was made with (the core passes the contact that waits for its clip). The clipper's
  pending requests are the only list of contacts waiting for audio. A clip with no audio at all
  (or a failed write) produces no file, only the logged reason; a failed write never stops
  capture.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from edge.audio.encode import CODEC_EXTENSIONS, Codec, load_encoder, write_clip_parts
from edge.audio.ring import Ring
from edge.clock import NS
from edge.records import ClipInfo
from hardware import AudioPeriod

log = logging.getLogger(__name__)

CLIPS_DIR = "clips"
MAX_ID_CHARS = 128  # a contact id names its clip file: no separators, NUL, dot files, or huge
#: why a contact has no clip (``ContactRecord.clip_missing``, ``clip_missing`` on the wire)
ClipMissing = Literal["no_audio", "disk_full", "write_failed"]
#: what the requester waits with (the core: the contact whose clip it is)
W = TypeVar("W")


@dataclass(frozen=True, slots=True)
class ClipResult(Generic[W]):
    """How one clip request ended: its clip, or why there is none."""

    contact_id: str
    waiter: W
    result: ClipInfo | ClipMissing

    @property
    def clip(self) -> ClipInfo | None:
        return self.result if isinstance(self.result, ClipInfo) else None

    @property
    def missing(self) -> ClipMissing | None:
        return None if isinstance(self.result, ClipInfo) else self.result


@dataclass(slots=True)
class _Request(Generic[W]):
    contact_id: str
    waiter: W
    start_ns: int  # pre-roll included
    end_ns: int  # post-roll included
    start: int | None = None  # sample indices, once an anchor exists
    end: int | None = None

    def done(self, result: ClipInfo | ClipMissing) -> ClipResult[W]:
        return ClipResult(self.contact_id, self.waiter, result)


class Clipper(Generic[W]):
    """Turns clip requests into files as soon as the ring holds their audio.

    ``on_disk_full(what, bytes_needed)`` is called when the OS says ENOSPC; True if it freed
    space (the write is then tried once more)."""

    def __init__(  # noqa: PLR0917 - the composition root passes these positionally
        self,
        ring: Ring,
        sample_rate: int,
        data_dir: Path,
        codec: Codec,
        pre_roll_ns: int,
        post_roll_ns: int,
        *,
        on_disk_full: Callable[[str, int], bool] | None = None,
    ) -> None:
        if codec not in CODEC_EXTENSIONS:
            raise ValueError(f"unknown codec {codec!r}; expected one of {sorted(CODEC_EXTENSIONS)}")
        if sample_rate <= 0 or pre_roll_ns < 0 or post_roll_ns < 0:
            raise ValueError("sample rate must be positive and pre/post roll not negative")
        load_encoder(codec)  # FLAC/Opus: soundfile now (a missing library fails the start)
        self.ring = ring
        self.sample_rate = sample_rate
        self.data_dir = data_dir
        self.codec: Codec = codec
        self.pre_roll_ns = pre_roll_ns
        self.post_roll_ns = post_roll_ns
        self._on_disk_full = on_disk_full
        self._anchor: tuple[int, int] | None = None
        self._pending: dict[str, _Request[W]] = {}

    @property
    def clips_dir(self) -> Path:
        return self.data_dir / CLIPS_DIR

    @property
    def pending(self) -> int:
        """Requests not yet ended (their contacts wait for audio)."""
        return len(self._pending)

    def on_period(self, period: AudioPeriod) -> list[ClipResult[W]]:
        """Store a captured period, move the anchor, and cut every clip now complete."""
        self.ring.write(period.start_index, period.samples)
        if self._anchor is None or period.start_index >= self._anchor[0]:
            self._anchor = (period.start_index, period.t_ns)
        return self.ready()

    def request(self, contact_id: str, start_ns: int, end_ns: int, waiter: W) -> None:
        """Ask for the audio of ``[start_ns, end_ns]`` plus pre- and post-roll; its
        :class:`ClipResult` comes back once, with ``waiter``."""
        if (
            not contact_id
            or contact_id.startswith(".")
            or Path(contact_id).name != contact_id
            or "\x00" in contact_id
            or len(contact_id) > MAX_ID_CHARS
        ):
            raise ValueError(f"contact id {contact_id[:80]!r} cannot be a clip file name")
        if contact_id in self._pending:
            raise ValueError(f"a clip for contact {contact_id!r} is already pending")
        if end_ns < start_ns:
            raise ValueError(f"contact ends before it starts: {end_ns} < {start_ns}")
        req = _Request(contact_id, waiter, start_ns - self.pre_roll_ns, end_ns + self.post_roll_ns)
        if self._anchor is not None:
            self._resolve(req)
        self._pending[contact_id] = req

    def index_of(self, t_ns: int) -> int:
        """The absolute index of the sample being captured at monotonic time ``t_ns``."""
        index, t0 = self._require_anchor()
        return index + (t_ns - t0) * self.sample_rate // NS

    def time_of(self, index: int) -> int:
        """The monotonic time at which sample ``index`` was captured."""
        anchor_index, t0 = self._require_anchor()
        return t0 + (index - anchor_index) * NS // self.sample_rate

    def ready(self) -> list[ClipResult[W]]:
        """Cut every pending clip whose last sample is in the ring, in request order."""
        done: list[ClipResult[W]] = []
        if self._anchor is None:
            return done  # no audio yet
        for req in list(self._pending.values()):
            if req.start is None:
                self._resolve(req)
            if req.start is None or req.end is None:
                raise RuntimeError("a clip request without its sample range")
            if req.end <= self.ring.head:
                del self._pending[req.contact_id]
                result = self._cut(req.contact_id, req.start, req.end, shortened=False)
                done.append(req.done(result))
        return done

    def flush(self) -> list[ClipResult[W]]:
        """At shutdown, or when capture stalled: end every pending request with the audio there
        is (end clamped to head); none is pending afterwards."""
        done: list[ClipResult[W]] = []
        for req in self._pending.values():
            if self._anchor is None:
                log.warning("no audio was captured: no clip for contact %s", req.contact_id)
                done.append(req.done("no_audio"))
                continue
            if req.start is None:
                self._resolve(req)
            if req.start is None or req.end is None:
                raise RuntimeError("a clip request without its sample range")
            end = min(req.end, self.ring.head)
            result = self._cut(req.contact_id, min(req.start, end), end, shortened=end < req.end)
            done.append(req.done(result))
        self._pending.clear()
        return done

    def _resolve(self, req: _Request[W]) -> None:
        req.start = self.index_of(req.start_ns)
        req.end = max(self.index_of(req.end_ns), req.start)

    def _require_anchor(self) -> tuple[int, int]:
        if self._anchor is None:
            raise RuntimeError("no audio period has arrived yet: sample time is unknown")
        return self._anchor

    def _cut(
        self, contact_id: str, start: int, end: int, *, shortened: bool
    ) -> ClipInfo | ClipMissing:
        cut = self.ring.view(start, end)  # written from the ring itself: no copy of the clip
        if cut.nbytes == 0:
            log.warning("no audio left for contact %s [%d, %d)", contact_id, start, end)
            return "no_audio"
        relative = f"{CLIPS_DIR}/{contact_id}{CODEC_EXTENSIONS[self.codec]}"
        try:
            try:
                sha256, size = write_clip_parts(
                    self.data_dir / relative, cut.parts, self.sample_rate, self.codec
                )
            except OSError as exc:
                need = cut.nbytes + 4096  # the clip at most (WAV), with headers
                make_room = self._on_disk_full
                if not (_no_space(exc) and make_room is not None and make_room(contact_id, need)):
                    raise
                sha256, size = write_clip_parts(  # space was freed: once more
                    self.data_dir / relative, cut.parts, self.sample_rate, self.codec
                )
        except OSError as exc:
            reason: ClipMissing = "disk_full" if _no_space(exc) else "write_failed"
            log.error("clip of contact %s not written (%s): %s", contact_id, reason, exc)
            return reason
        except Exception:  # an encoder error costs this clip, never the capture
            log.exception("could not encode the clip of contact %s", contact_id)
            return "write_failed"
        return ClipInfo(
            contact_id=contact_id,
            path=relative,
            codec=self.codec,
            sample_rate=self.sample_rate,
            start_index=cut.start,
            end_index=cut.end,
            start_ns=self.time_of(cut.start),
            end_ns=self.time_of(cut.end),
            sha256=sha256,
            bytes=size,
            truncated=cut.truncated or shortened,
            gaps=cut.gaps,
        )


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)
