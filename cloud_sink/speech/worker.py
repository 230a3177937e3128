"""Transcribe every verified clip once, with several workers at once, and check the standards.

Rules:
- Candidates: verified clips (complete, audio not deleted by retention) with no transcript row,
  or whose row is a claim or a failure whose lease has run out, with fewer than
  ``max_attempts`` attempts; oldest verified first.
- A worker claims a clip before touching it: a new row is ``INSERT ... ON CONFLICT DO
  NOTHING`` and an expired row an ``UPDATE ... WHERE lease_until_ns < now``; only the one whose
  statement wrote the row holds the claim (both engines serialise the two writers on the row),
  so two workers never transcribe one clip while a lease lasts. A claim counts an attempt.
- The transcript is stored in one transaction with its search entry, the standard checks and
  their tags, and only if the row is still this worker's claim (a worker that outlived its
  lease stores nothing; the clip is another's now). Failures store the error, keep the
  attempt and are retried after ``retry_after_s``; a clip failing ``max_attempts`` times is
  left alone.
- Standard checks (:mod:`cloud_sink.speech.standards`) replace the contact's earlier ones:
  one ``standard_checks`` row per rule, the matches with their times in the clip, and the tag
  of each failing rule appended to the contact's tags (positions from :data:`TAG_POS`).
- Compliance alerts (``[[alerts.compliance]]``, :class:`cloud_sink.alerts.ComplianceAlerts`):
  with rules given, the checks of a stored contact update the figures of its site and staff
  member and raise or clear their alerts in the same transaction; :func:`recheck` updates
  every figure once, after checking every transcript again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from peewee import Database

from cloud_sink.alerts import ComplianceAlerts
from cloud_sink.db import execute_sql, is_sqlite, rowcount, transaction
from cloud_sink.models import from_json, tables, to_json
from cloud_sink.speech import search
from cloud_sink.speech.config import RulesFile
from cloud_sink.speech.engines import RATE, Engine, Transcript, Word, read_clip
from cloud_sink.speech.standards import check

log = logging.getLogger(__name__)
NS: Final = 1_000_000_000
#: tags of failed standards sit after the device's own, from this position on
TAG_POS: Final = 1000


@dataclass
class Stats:
    transcribed: int = 0
    failed: int = 0
    lost: int = 0  # claims that ran out before the transcript was stored
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "transcribed": self.transcribed,
            "failed": self.failed,
            "lost": self.lost,
            "audio_s": round(self.audio_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    device: str
    clip_id: str
    path: str


class Transcriber:
    """One worker: claims clips of ``db`` one at a time and transcribes them with ``engine``."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        engine: Engine,
        *,
        rules: RulesFile | None = None,
        alerts: ComplianceAlerts | None = None,
        lease_s: float = 3600.0,
        max_attempts: int = 3,
        retry_after_s: float = 60.0,
        worker_id: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self.engine = engine
        self.rules = rules
        self.alerts = alerts
        self.lease_ns = int(lease_s * NS)
        self.retry_ns = int(retry_after_s * NS)
        self.max_attempts = max_attempts
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.clock = clock
        self.t = tables(db)

    # --- claims ---------------------------------------------------------------------------

    def candidates(self, limit: int = 16) -> list[Candidate]:
        p = self.db.param
        true = "1" if is_sqlite(self.db) else "TRUE"
        rows = execute_sql(
            self.db,
            f"""SELECT k.device, k.clip_id, k.path FROM clips k
            LEFT JOIN transcripts t ON t.device = k.device AND t.clip_id = k.clip_id
            WHERE k.complete = {true} AND k.audio_deleted_at IS NULL AND k.path IS NOT NULL
              AND (t.device IS NULL
                   OR (t.state <> 'done' AND t.lease_until_ns < {p} AND t.attempts < {p}))
            ORDER BY k.completed_ns, k.device, k.clip_id LIMIT {int(limit)}""",
            (self.clock(), self.max_attempts),
        ).fetchall()
        return [Candidate(*row) for row in rows]

    def claim(self, c: Candidate) -> bool:
        now = self.clock()
        tr = self.t.transcripts
        with transaction(self.db):
            inserted = rowcount(
                self.db,
                tr.insert(
                    device=c.device, clip_id=c.clip_id, state="claimed", worker=self.worker_id,
                    lease_until_ns=now + self.lease_ns, attempts=1,
                ).on_conflict_ignore(),
            )  # fmt: skip
            if inserted:
                return True
            taken = rowcount(
                self.db,
                tr.update(
                    state="claimed", worker=self.worker_id, lease_until_ns=now + self.lease_ns,
                    attempts=tr.attempts + 1,
                ).where(
                    (tr.device == c.device) & (tr.clip_id == c.clip_id) & (tr.state != "done")
                    & (tr.lease_until_ns < now) & (tr.attempts < self.max_attempts)
                ),
            )  # fmt: skip
            return taken == 1

    def _mine(self, c: Candidate) -> Any:
        tr = self.t.transcripts
        return (
            (tr.device == c.device) & (tr.clip_id == c.clip_id)
            & (tr.state == "claimed") & (tr.worker == self.worker_id)
        )  # fmt: skip

    # --- work ------------------------------------------------------------------------------

    def step(self, stats: Stats | None = None) -> bool:
        """Claim and transcribe one clip; False when there is nothing left to claim."""
        stats = stats if stats is not None else Stats()
        for candidate in self.candidates():
            if self.claim(candidate):
                self._transcribe(candidate, stats)
                return True
        return False

    def run(self, stop: threading.Event | None = None) -> Stats:
        """Transcribe until no clip is left (or ``stop`` is set)."""
        stats = Stats()
        while not (stop is not None and stop.is_set()) and self.step(stats):
            pass
        return stats

    def _transcribe(self, c: Candidate, stats: Stats) -> None:
        started = time.perf_counter()
        try:
            samples = read_clip(self.data_dir / c.path)
            transcript = self.engine.transcribe(samples)
        except Exception as exc:  # noqa: BLE001 - one clip's failure is stored, the worker goes on
            log.warning("transcribing %s/%s failed: %s", c.device, c.clip_id, exc)
            tr = self.t.transcripts
            with transaction(self.db):
                rowcount(
                    self.db,
                    tr.update(
                        state="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
                        lease_until_ns=self.clock() + self.retry_ns,
                    ).where(self._mine(c)),
                )  # fmt: skip
            with stats.lock:
                stats.failed += 1
            return
        elapsed = time.perf_counter() - started
        audio_s = len(samples) / RATE
        stored = self.store(c, transcript, audio_s, elapsed)
        with stats.lock:
            if stored:
                stats.transcribed += 1
                stats.audio_s += audio_s
                stats.elapsed_s += elapsed
            else:
                stats.lost += 1

    def store(self, c: Candidate, t: Transcript, audio_s: float, elapsed_s: float) -> bool:
        """Store the transcript if the claim is still ours; True if it was stored."""
        tr = self.t.transcripts
        with transaction(self.db):
            written = rowcount(
                self.db,
                tr.update(
                    state="done", engine=t.engine, model=t.model, language=t.language,
                    text=t.text, words=to_json([w.as_json() for w in t.words]),
                    search_text=search.search_text(t.text), audio_s=audio_s,
                    elapsed_s=elapsed_s, error=None, done_ns=self.clock(),
                ).where(self._mine(c)),
            )  # fmt: skip
            if written != 1:
                return False
            search.index(self.db, c.device, c.clip_id, t.text)
            if self.rules is not None:
                check_contact(self.db, self.rules, device=c.device, contact_id=c.clip_id,
                              text=t.text, words=t.words, now_ns=self.clock(),
                              alerts=self.alerts)  # fmt: skip
        return True


# --- standard checks ---------------------------------------------------------------------------


def clip_offset_s(contact: dict[str, Any]) -> float:
    """Where in its clip a contact starts (the clip begins before it: the ring's pre-roll)."""
    try:
        clip = from_json(contact["clip"]) if contact["clip"] else None
        if not clip:
            return 0.0
        start = datetime.fromisoformat(str(contact["start_iso"]).replace("Z", "+00:00"))
        clip_start = datetime.fromisoformat(str(clip["start"]).replace("Z", "+00:00"))
        return max(0.0, (start - clip_start).total_seconds())
    except (KeyError, TypeError, ValueError):
        return 0.0


def check_contact(
    db: Database,
    rules: RulesFile,
    *,
    device: str,
    contact_id: str,
    text: str,
    words: tuple[Word, ...] | list[Word],
    now_ns: int,
    alerts: ComplianceAlerts | None = None,
) -> list[str]:
    """Check one transcript against ``rules`` and store the outcome (inside the caller's
    transaction), then update the compliance ``alerts`` of its site and staff member; the
    tags of the failing rules."""
    t = tables(db)
    contact = (
        t.contacts.select(t.contacts.start_iso, t.contacts.clip, t.contacts.site, t.contacts.staff)
        .where((t.contacts.device == device) & (t.contacts.id == contact_id))
        .dicts()
        .first()
    )
    offset = clip_offset_s(contact) if contact else 0.0
    outcomes = check(rules, text, words, offset)
    key = (t.standard_checks.device == device) & (t.standard_checks.contact_id == contact_id)
    t.standard_checks.delete().where(key).execute()
    mkey = (t.standard_matches.device == device) & (t.standard_matches.contact_id == contact_id)
    t.standard_matches.delete().where(mkey).execute()
    failed: list[str] = []
    for o in outcomes:
        t.standard_checks.insert(
            device=device, contact_id=contact_id, rule=o.rule.name, passed=o.passed, tag=o.tag,
            checked_ns=now_ns,
        ).execute()  # fmt: skip
        for pos, m in enumerate(o.matches):
            t.standard_matches.insert(
                device=device, contact_id=contact_id, rule=o.rule.name, pos=pos,
                phrase=m.phrase, heard=m.heard, start_s=m.start_s, end_s=m.end_s, score=m.score,
            ).execute()  # fmt: skip
        if o.tag is not None and o.tag not in failed:
            failed.append(o.tag)
    if contact is not None:  # tags belong to a stored contact (the tags table's foreign key)
        tkey = (t.tags.device == device) & (t.tags.contact_id == contact_id)
        t.tags.delete().where(tkey & (t.tags.pos >= TAG_POS)).execute()
        own = {tag for (tag,) in t.tags.select(t.tags.tag).where(tkey).tuples()}
        for i, tag in enumerate(x for x in failed if x not in own):
            t.tags.insert(device=device, contact_id=contact_id, pos=TAG_POS + i, tag=tag).execute()
        if alerts is not None:
            alerts.checked(db, site=str(contact["site"]), staff=contact["staff"],
                           standards=[o.rule.name for o in outcomes], now_ns=now_ns)  # fmt: skip
    return failed


def done_transcripts(db: Database) -> Iterator[tuple[str, str, str, list[Word]]]:
    tr = tables(db).transcripts
    for device, clip_id, text, words in (
        tr.select(tr.device, tr.clip_id, tr.text, tr.words).where(tr.state == "done").tuples()
    ):
        yield device, clip_id, text or "", [Word(*w) for w in from_json(words or "[]")]


def recheck(
    db: Database, rules: RulesFile, now_ns: int, alerts: ComplianceAlerts | None = None
) -> int:
    """Check every stored transcript against ``rules`` again (a changed rules file), then
    update every compliance figure once (``alerts``)."""
    n = 0
    for device, clip_id, text, words in list(done_transcripts(db)):
        with transaction(db):
            check_contact(db, rules, device=device, contact_id=clip_id, text=text, words=words,
                          now_ns=now_ns)  # fmt: skip
        n += 1
    if alerts is not None:
        with transaction(db):
            alerts.update_all(db, now_ns)
    return n


def transcript_of(db: Database, device: str, clip_id: str) -> dict[str, Any] | None:
    tr = tables(db).transcripts
    row: dict[str, Any] | None = (
        tr.select().where((tr.device == device) & (tr.clip_id == clip_id)).dicts().first()
    )
    if row is not None and row.get("words"):
        row["words"] = json.loads(row["words"])
    return row
