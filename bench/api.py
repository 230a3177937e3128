"""The HTTP API over a large sink database: contact-list latency and clip download throughput.

(a) Contacts. ``--contacts`` rows (default 1,000,000) are generated straight into a fresh sink
    database (SQLite in a temporary directory, and PostgreSQL on a throwaway cluster from
    ``tests/services.py``): 20 sites x 10 devices, a year of start times, 5 staff, 2-3 tags each
    (a rating and productive/unproductive), a verified clip row and a transcript (6-10 words
    of 20, one in a hundred also "возврат") for one in ten; then ANALYZE, and on PostgreSQL
    VACUUM too (what autovacuum does to a table that grew; ``--no-vacuum``: measure right after
    loading). The app runs under uvicorn on a loopback port (``sink serve``'s app); an httpx
    client asks for the first
    page (50 rows) of each filter below ``--repeat`` times, and follows ``next_cursor`` 10 pages
    deep; p50/p95/max per filter and over all requests. Goal: p95 <= 100 ms.
(b) Clip download. A ``--clip-mb`` file is put in the sink's clip store with its rows; GET
    ``/api/v1/contacts/{device}/{id}/clip`` streamed to nowhere (httpx, and curl when there), next
    to ``cat FILE > /dev/null`` of the same file (warm page cache: each read once first); MB/s.

Only loopback; everything lives in a temporary directory that is removed at the end.

    .venv/bin/python bench/api.py [--contacts 1000000] [--repeat 20] [--clip-mb 256]
        [--no-postgres] [--no-sqlite] [--no-vacuum]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_sink.api import accounts
from cloud_sink.api.app import create_app
from cloud_sink.api.settings import ApiSettings
from cloud_sink.db import open_database, transaction
from cloud_sink.migrations import migrate
from cloud_sink.speech.search import search_text
from provisioning.broker import free_port

SITES = [f"site-{i:02d}" for i in range(20)]
DEVICES = [(site, f"cp-{i:02d}{j}") for i, site in enumerate(SITES) for j in range(10)]
STAFF = ["anna", "bob", "carl", "dina", "egor"]
RATINGS = ["positive", "negative", "unsure", "silent"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONTACT_COLUMNS = (
    "device", "id", "site", "msg_id", "start_iso", "end_iso", "duration_s", "ended_by", "mode",
    "clip", "clock_synced", "boot_id", "received_ns", "staff",
)  # fmt: skip
TRANSCRIPT_COLUMNS = (
    "device", "clip_id", "state", "worker", "lease_until_ns", "attempts", "engine", "model",
    "language", "text", "search_text",
)  # fmt: skip
#: what the generated transcripts say: 6-10 of these words each, and one in a hundred "возврат"
SAID = (
    *("здравствуйте", "спасибо", "покупку", "карта", "оплата", "скидка", "пакет", "чек"),
    *("пожалуйста", "свидания", "hello", "thanks", "card", "cash", "receipt", "discount"),
    *("bag", "please", "welcome", "goodbye"),
)
CLIP_COLUMNS = (
    "device", "clip_id", "site", "codec", "sample_rate", "total", "clip_bytes", "clip_sha256",
    "first_seen_ns", "quiet_since_ns", "resend_requests", "complete", "path", "completed_ns",
)  # fmt: skip


def wire_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def transcript_row(rnd: random.Random, device: str, cid: str) -> tuple[Any, ...]:
    words = rnd.sample(SAID, rnd.randint(6, 10))
    if rnd.random() < 0.01:
        words.insert(rnd.randrange(len(words)), "возврат")
    text = " ".join(words)
    return (device, cid, "done", "bench", 0, 1, "bench", "none", "ru", text, search_text(text))


def rows(n: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], list[str], bool]]:
    """(contact row, tags, has a verified clip) for ``n`` contacts, start times rising."""
    rnd = random.Random(seed)
    step = 365 * 86400 / n
    for i in range(n):
        site, device = DEVICES[rnd.randrange(len(DEVICES))]
        start = T0 + timedelta(seconds=i * step)
        duration = rnd.uniform(20, 300)
        cid = f"{i:032x}"
        clip = i % 10 == 0
        row = (
            device, cid, site, cid, wire_time(start),
            wire_time(start + timedelta(seconds=duration)), duration,
            rnd.choice(["departure", "timeout", "button"]), rnd.choice(["presence", "button"]),
            '{"codec":"wav"}' if clip else None, True, "boot", 0, rnd.choice(STAFF),
        )  # fmt: skip
        tags = [rnd.choices(RATINGS, weights=[50, 10, 15, 25])[0]]
        tags.append("productive" if rnd.random() < 0.4 else "unproductive")
        if rnd.random() < 0.05:
            tags.append("request")
        yield row, tags, clip


def clip_row(
    device: str, cid: str, site: str, *, size: int, sha: str, path: str
) -> tuple[Any, ...]:
    return (device, cid, site, "wav", 16000, 1, size, sha, 0, 0, 0, True, path, 0)


def fill(db: Any, n: int, postgres: bool, *, no_vacuum: bool = False) -> float:
    """Generate ``n`` contacts (and tags, clips) into ``db``; seconds taken."""
    started = time.perf_counter()
    devices = [(d, s, 0, 0) for s, d in DEVICES]
    if postgres:
        conn = db.connection()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO devices (device, site, first_seen_ns, last_seen_ns) "
                "VALUES (%s, %s, %s, %s)",
                devices,
            )
            with (
                cur.copy(f"COPY contacts ({', '.join(CONTACT_COLUMNS)}) FROM STDIN") as cc,
            ):
                tag_rows: list[tuple[str, str, int, str]] = []
                clip_rows: list[tuple[Any, ...]] = []
                for row, tags, clip in rows(n):
                    cc.write_row(row)
                    tag_rows.extend((row[0], row[1], pos, t) for pos, t in enumerate(tags))
                    if clip:
                        clip_rows.append(
                            clip_row(row[0], row[1], row[2], size=1, sha="0" * 64, path="")
                        )
            with cur.copy("COPY tags (device, contact_id, pos, tag) FROM STDIN") as tc:
                for t in tag_rows:
                    tc.write_row(t)
            with cur.copy(f"COPY clips ({', '.join(CLIP_COLUMNS)}) FROM STDIN") as kc:
                for k in clip_rows:
                    kc.write_row(k)
            rnd = random.Random(11)
            columns = ", ".join(TRANSCRIPT_COLUMNS)
            with cur.copy(f"COPY transcripts ({columns}) FROM STDIN") as xc:
                for k in clip_rows:
                    xc.write_row(transcript_row(rnd, k[0], k[1]))
        conn.commit()
        # the state autovacuum brings a table to (its insert-triggered VACUUM marks the pages
        # all-visible, so the list's index-only scans read no rows), unless --no-vacuum
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("ANALYZE" if no_vacuum else "VACUUM ANALYZE")
        conn.autocommit = False
    else:
        conn = db.connection()
        with transaction(db):
            conn.executemany(
                "INSERT INTO devices (device, site, first_seen_ns, last_seen_ns) "
                "VALUES (?, ?, ?, ?)",
                devices,
            )
            batch: list[tuple[Any, ...]] = []
            tag_batch: list[tuple[str, str, int, str]] = []
            clip_batch: list[tuple[Any, ...]] = []
            said: list[tuple[Any, ...]] = []
            rnd = random.Random(11)
            for row, tags, clip in rows(n):
                batch.append(row)
                tag_batch.extend((row[0], row[1], pos, t) for pos, t in enumerate(tags))
                if clip:
                    clip_batch.append(
                        clip_row(row[0], row[1], row[2], size=1, sha="0" * 64, path="")
                    )
                    said.append(transcript_row(rnd, row[0], row[1]))
                if len(batch) >= 20_000:
                    _sqlite_flush(conn, batch=batch, tags=tag_batch, clips=clip_batch, said=said)
            _sqlite_flush(conn, batch=batch, tags=tag_batch, clips=clip_batch, said=said)
        conn.execute("ANALYZE")
    return time.perf_counter() - started


def _insert(conn: Any, table: str, columns: tuple[str, ...], values: list[Any]) -> None:
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
    values.clear()


def _sqlite_flush(
    conn: Any, *, batch: list[Any], tags: list[Any], clips: list[Any], said: list[Any]
) -> None:
    """Write the rows gathered so far; a transcript's full-text row is what
    cloud_sink.speech.search.index writes (its search_text)."""
    _insert(conn, "contacts", CONTACT_COLUMNS, batch)
    _insert(conn, "tags", ("device", "contact_id", "pos", "tag"), tags)
    _insert(conn, "clips", CLIP_COLUMNS, clips)
    fts = [(t[0], t[1], t[-1]) for t in said]
    _insert(conn, "transcripts", TRANSCRIPT_COLUMNS, said)
    _insert(conn, "transcripts_fts", ("device", "clip_id", "body"), fts)


class Server:
    """The app under uvicorn on a free loopback port, in a thread."""

    def __init__(self, settings: ApiSettings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


FILTERS: list[tuple[str, dict[str, Any], str]] = [
    ("no filter (first page)", {}, "admin"),
    ("site", {"site": "site-07"}, "admin"),
    ("site + tag negative", {"site": "site-07", "tag": "negative"}, "admin"),
    ("tag request (5 %)", {"tag": "request"}, "admin"),
    ("device + one month", {"device": "cp-073", "from": "2026-06-01", "to": "2026-07-01"}, "admin"),
    (
        "site + tag_any negative|unsure",
        {"site": "site-03", "tag_any": ["negative", "unsure"]},
        "admin",
    ),
    ("site + tag_none positive", {"site": "site-03", "tag_none": "positive"}, "admin"),
    ("site + staff", {"site": "site-11", "staff": "dina"}, "admin"),
    ("site + has_audio", {"site": "site-11", "has_audio": "true"}, "admin"),
    ("manager of one site + tag negative", {"tag": "negative"}, "manager"),
    (
        "site + tag + mode + ended_by",
        {"site": "site-05", "tag": "negative", "mode": "presence", "ended_by": "timeout"},
        "admin",
    ),
]
#: the transcript search (#15), reported apart from the goal above: its cost grows with the
#: number of transcripts that match (they are joined, then sorted by time)
TEXT_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    ("site + text, a word of 1 in 100", {"site": "site-03", "text": "возврат"}, "admin"),
    ("text, a word of 1 in 100", {"text": "возврат"}, "admin"),
    ("text, inflected Russian (4 in 10)", {"text": "покупка"}, "admin"),
    ("text, two words (each 4 in 10)", {"text": "thanks receipt"}, "admin"),
    ("site + text, a word of 4 in 10", {"site": "site-03", "text": "спасибо"}, "admin"),
]  # fmt: skip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(
    url: str, tokens: dict[str, str], repeat: int, filters: list[tuple[str, dict[str, Any], str]]
) -> list[tuple[str, list[float], int]]:
    out: list[tuple[str, list[float], int]] = []
    clients = {
        who: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tok}"}, timeout=120)
        for who, tok in tokens.items()
    }
    try:
        for name, params, who in filters:
            c = clients[who]
            first = c.get("/api/v1/contacts", params=params)
            first.raise_for_status()
            got = len(first.json()["items"])
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                c.get("/api/v1/contacts", params=params).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            out.append((name, times, got))
        if filters is not FILTERS:
            return out
        times = []
        cursor = None
        for _ in range(10):
            params = {"site": "site-07", "tag": "negative"}
            if cursor:
                params["cursor"] = cursor
            t = time.perf_counter()
            r = clients["admin"].get("/api/v1/contacts", params=params)
            times.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            cursor = r.json().get("next_cursor")
        out.append(("site + tag negative, pages 1-10 (cursor)", times, 50))
    finally:
        for c in clients.values():
            c.close()
    return out


def report(label: str, results: list[tuple[str, list[float], int]]) -> None:
    print(f"\n{label}: first page (50 rows) latency, ms")
    print(f"  {'filter':<44} {'rows':>4} {'p50':>8} {'p95':>8} {'max':>8}")
    everything: list[float] = []
    for name, times, got in results:
        everything.extend(times)
        print(
            f"  {name:<44} {got:>4} {statistics.median(times):>8.1f} {pct(times, 95):>8.1f} "
            f"{max(times):>8.1f}"
        )
    p95 = pct(everything, 95)
    verdict = "met" if p95 <= 100 else "NOT met"
    print(
        f"  {'all requests':<44} {'':>4} {statistics.median(everything):>8.1f} {p95:>8.1f} "
        f"{max(everything):>8.1f}   goal p95 <= 100 ms: {verdict}"
    )


def tokens_for(db: Any) -> dict[str, str]:
    now = time.time_ns()
    return {
        "admin": accounts.create_token(db, role="admin", sites=[], name="bench", now_ns=now).token,
        "manager": accounts.create_token(
            db, role="manager", sites=["site-04"], name="bench-m", now_ns=now
        ).token,
    }


def run_one(label: str, db_url: str | None, data: Path, args: argparse.Namespace) -> Path | None:
    data.mkdir(parents=True, exist_ok=True)
    db = open_database(db_url, data)
    migrate(db)
    took = fill(db, args.contacts, postgres=db_url is not None, no_vacuum=args.no_vacuum)
    print(f"{label}: {args.contacts:,} contacts generated in {took:.1f} s", flush=True)
    tokens = tokens_for(db)
    clip = None
    if args.clip_mb > 0:
        clip = put_clip(db, data, args.clip_mb)
    db.close()
    settings = ApiSettings(data_dir=data, db_url=db_url)
    with Server(settings) as server:
        report(label, measure(server.url, tokens, args.repeat, FILTERS))
        report(
            f"{label}, transcript search", measure(server.url, tokens, args.repeat, TEXT_FILTERS)
        )
        if clip is not None:
            download(server.url, tokens["admin"], clip, data)
    return clip


def put_clip(db: Any, data: Path, mb: int) -> Path:
    relative = Path("clips") / "site-00" / "cp-000" / "bench.wav"
    path = data / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(mb):
            f.write(block)
            digest.update(block)
    size = path.stat().st_size
    p = db.param
    cid = "f" * 32
    marks = ", ".join(p for _ in CONTACT_COLUMNS)
    kmarks = ", ".join(p for _ in CLIP_COLUMNS)
    start = wire_time(T0)
    with transaction(db):
        db.execute_sql(
            f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES ({marks})",
            ("cp-000", cid, "site-00", cid, start, start, 1.0, "departure", "presence",
             '{"codec":"wav"}', True, "boot", 0, "anna"),
        )  # fmt: skip
        db.execute_sql(
            f"INSERT INTO clips ({', '.join(CLIP_COLUMNS)}) VALUES ({kmarks})",
            clip_row(
                "cp-000", cid, "site-00", size=size, sha=digest.hexdigest(), path=str(relative)
            ),
        )
    return path


def download(url: str, token: str, path: Path, data: Path) -> None:
    size = path.stat().st_size
    runs = 3

    def best(fn: Any) -> float:
        fn()  # warm: page cache, connections
        return min(_timed(fn) for _ in range(runs))

    def cat() -> None:
        with open(os.devnull, "wb") as null:
            subprocess.run(["cat", str(path)], stdout=null, check=True)

    def get() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            got = 0
            with c.stream("GET", f"/api/v1/contacts/cp-000/{'f' * 32}/clip") as r:
                r.raise_for_status()
                for chunk in r.iter_raw(1024 * 1024):
                    got += len(chunk)
            assert got == size, (got, size)

    mb = size / 1e6
    t_cat = best(cat)
    t_get = best(get)
    print(f"  clip download, {mb:.0f} MB (best of {runs}, warm cache):")
    print(f"    cat FILE > /dev/null      {mb / t_cat:>8.0f} MB/s")
    print(f"    GET .../clip (httpx)      {mb / t_get:>8.0f} MB/s   ratio {t_cat / t_get:.2f}")
    if shutil.which("curl"):

        def curl() -> None:
            subprocess.run(
                ["curl", "-sf", "-o", os.devnull, "-H", f"Authorization: Bearer {token}",
                 f"{url}/api/v1/contacts/cp-000/{'f' * 32}/clip"],
                check=True,
            )  # fmt: skip

        t_curl = best(curl)
        print(
            f"    GET .../clip (curl)       {mb / t_curl:>8.0f} MB/s   ratio {t_cat / t_curl:.2f}"
        )


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="requests per filter")
    parser.add_argument("--clip-mb", type=int, default=256, help="clip size (0: no download)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--no-vacuum", action="store_true", help="PostgreSQL: ANALYZE only, no VACUUM after loading"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cp-bench-api-"))
    print(f"{os.cpu_count()} CPUs; {args.contacts:,} contacts, {args.repeat} requests per filter")
    try:
        if not args.no_sqlite:
            run_one("SQLite", None, root / "sqlite", args)
        if not args.no_postgres:
            from tests.services import PostgresCluster, PostgresUnavailableError

            try:
                pg = PostgresCluster()
                pg.start()
            except PostgresUnavailableError as exc:
                print(f"PostgreSQL: skipped ({exc})")
            else:
                try:
                    run_one("PostgreSQL", pg.create_database("bench"), root / "pg", args)
                finally:
                    pg.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
