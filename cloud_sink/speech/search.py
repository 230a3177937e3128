"""Full-text search over transcripts: SQLite FTS5, PostgreSQL text search.

Rules:
- What is indexed (``transcripts.search_text``) is the transcript's words, lower case, followed
  by the lemmas that differ from them (pymorphy3 for Russian, so ``покупку`` is found by
  ``покупка`` and the other way round); SQLite's FTS5 table ``transcripts_fts`` adds the
  Porter stemmer for English, PostgreSQL a GIN index over its ``russian`` and ``english``
  configurations.
- A query finds the transcripts holding every one of its words (in any of their forms); words
  are terms, never query syntax (quotes, ``OR``, ``*`` are plain text).
"""

from __future__ import annotations

from peewee import Database

from cloud_sink.db import execute_sql, is_sqlite
from cloud_sink.speech.standards import TOKEN, lemma, plain

_PG_DOC = (
    "(to_tsvector('russian', coalesce(search_text, '')) || "
    "to_tsvector('english', coalesce(search_text, '')))"
)


def search_text(text: str) -> str:
    words = [plain(t) for t in TOKEN.findall(text)]
    lemmas = [lemma(w) for w in words]
    extra = [m for w, m in zip(words, lemmas, strict=True) if m and m != w]
    return " ".join([w for w in words if w] + extra)


def index(db: Database, device: str, clip_id: str, text: str) -> None:
    """(Re)index one transcript (inside the caller's transaction); PostgreSQL's index follows
    the row by itself."""
    if not is_sqlite(db):
        return
    p = db.param
    execute_sql(
        db, f"DELETE FROM transcripts_fts WHERE device = {p} AND clip_id = {p}", (device, clip_id)
    )
    execute_sql(
        db,
        f"INSERT INTO transcripts_fts (device, clip_id, body) VALUES ({p}, {p}, {p})",
        (device, clip_id, search_text(text)),
    )


def words_of(query: str) -> list[str]:
    """The normalised words of a search query (empty when it holds none)."""
    return [w for w in (plain(t) for t in TOKEN.findall(query)) if w]


def _fts5_query(words: list[str]) -> str:
    terms = []
    for w in words:
        forms = sorted({w, lemma(w)} - {""})
        terms.append("(" + " OR ".join('"' + f.replace('"', '""') + '"' for f in forms) + ")")
    return " AND ".join(terms)


def _pg_query(db: Database, words: list[str]) -> tuple[str, list[str]]:
    p = db.param
    each = " && ".join(
        f"(plainto_tsquery('russian', {p}) || plainto_tsquery('english', {p}))" for _ in words
    )
    return f"({each})", [x for w in words for x in (w, w)]


def matching(db: Database, query: str) -> set[tuple[str, str]]:
    """(device, clip id) of every transcript holding every word of ``query``."""
    words = words_of(query)
    if not words:
        raise ValueError(f"--text {query!r} holds no word to search for")
    if is_sqlite(db):
        rows = execute_sql(
            db,
            f"SELECT device, clip_id FROM transcripts_fts WHERE transcripts_fts MATCH {db.param}",
            (_fts5_query(words),),
        ).fetchall()
    else:
        tsquery, params = _pg_query(db, words)
        rows = execute_sql(
            db,
            f"SELECT device, clip_id FROM transcripts WHERE state = 'done' AND {_PG_DOC} @@ "
            f"{tsquery}",
            params,
        ).fetchall()
    return {(str(d), str(c)) for d, c in rows}


def at_least(db: Database, words: list[str], count: int) -> bool:
    """Whether ``count`` transcripts or more hold every one of ``words`` (counts no further)."""
    if is_sqlite(db):
        sql = (
            "SELECT COUNT(*) FROM (SELECT rowid FROM transcripts_fts WHERE transcripts_fts "
            f"MATCH {db.param} LIMIT {int(count)}) m"
        )
        args: list[str] = [_fts5_query(words)]
    else:
        tsquery, args = _pg_query(db, words)
        sql = (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM transcripts WHERE state = 'done' AND {_PG_DOC} "
            f"@@ {tsquery} LIMIT {int(count)}) m"
        )
    row = execute_sql(db, sql, args).fetchone()
    return row is not None and int(row[0]) >= count


def contact_condition(
    db: Database, words: list[str], device: str, contact: str, *, per_row: bool = False
) -> tuple[str, list[str]]:
    """SQL true for a contact (its device and id columns named ``device``, ``contact``) whose
    transcript holds every one of ``words`` (:func:`words_of`, not empty), and its parameters:
    the same search as :func:`matching`, as one condition of a larger query.

    By default the matching transcripts are found through the full-text index and joined: the
    cost grows with how many match. ``per_row`` (PostgreSQL; SQLite ignores it) tests each
    contact's own transcript instead, a probe by primary key: for words so common that a list
    in time order fills after a few contacts."""
    if is_sqlite(db):
        # (a subquery, not correlated: FTS5 runs the MATCH once)
        return (
            f"({device}, {contact}) IN (SELECT device, clip_id FROM transcripts_fts WHERE "
            f"transcripts_fts MATCH {db.param})",
            [_fts5_query(words)],
        )
    tsquery, params = _pg_query(db, words)
    if per_row:
        # ("OFFSET 0" keeps it a filter: the planner would make it a join again)
        return (
            f"EXISTS (SELECT 1 FROM transcripts s WHERE s.device = {device} AND s.clip_id = "
            f"{contact} AND s.state = 'done' AND {_PG_DOC} @@ {tsquery} OFFSET 0)",
            params,
        )
    return (
        f"({device}, {contact}) IN (SELECT device, clip_id FROM transcripts WHERE "
        f"state = 'done' AND {_PG_DOC} @@ {tsquery})",
        params,
    )
