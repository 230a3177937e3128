"""Who may use the API: roles with a site scope, API tokens, users, sessions, the audit log.

Rules:
- Roles: ``admin`` (everything, every site, the fleet, dead letters, the audit log),
  ``manager`` (contacts, clips, figures, alerts, devices of its sites; annotates reasons),
  ``viewer`` (figures, alerts and devices of its sites: no contacts, no audio). A scope is a
  set of sites; an empty scope means every site. An admin's scope is always every site.
- An API token is 32 random bytes (URL-safe base64, prefixed ``cpt_``), shown once; only its
  sha256 is stored (a token has 256 bits of entropy: a fast hash is enough, unlike passwords).
  A token past its expiry or revoked authenticates nobody.
- A user's password is stored as an argon2id hash (argon2-cffi's defaults); names are short
  words (:data:`NAME`). A session is a random id in an HttpOnly cookie; only its sha256 is
  stored, with a CSRF token that every form post must echo and an expiry.
- Nothing here logs a password, a token or a session id.
- Every clip served is a row of ``audit_log`` (who, what, when, from where).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from peewee import Database

from cloud_sink.db import transaction
from cloud_sink.models import tables

Role = Literal["admin", "manager", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("admin", "manager", "viewer")
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
SITE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TOKEN_PREFIX: Final = "cpt_"  # noqa: S105 - the tokens' visible prefix, not a secret
MIN_PASSWORD: Final = 10
SESSION_S: Final = 12 * 3600
NS: Final = 1_000_000_000

_hasher = PasswordHasher()


class AccountError(ValueError):
    """Bad input to an account command; the message names the field and the fix."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user or a token, its role and the sites it may see."""

    name: str
    role: Role
    sites: frozenset[str]  # empty: every site
    kind: Literal["user", "token"]
    csrf: str = ""  # a session's CSRF token (users only)

    @property
    def all_sites(self) -> bool:
        return self.role == "admin" or not self.sites

    def sees(self, site: str) -> bool:
        return self.all_sites or site in self.sites


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise AccountError(f"role {role!r} is unknown: use one of {', '.join(ROLES)}")


def check_sites(sites: list[str]) -> list[str]:
    for site in sites:
        if not SITE.fullmatch(site):
            raise AccountError(
                f"site {site!r} is not a site id: letters, digits, '.', '_' and '-' (e.g. shop-1)"
            )
    return sorted(set(sites))


def _scope(text: str) -> frozenset[str]:
    value = json.loads(text)
    return frozenset(str(s) for s in value) if isinstance(value, list) else frozenset()


# --- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewToken:
    id: int
    token: str  # shown once
    name: str
    role: Role
    sites: tuple[str, ...]
    expires_ns: int | None


def create_token(
    db: Database,
    *,
    role: str,
    sites: list[str],
    name: str,
    now_ns: int,
    expires_ns: int | None = None,
) -> NewToken:
    checked = check_role(role)
    scope = check_sites(sites)
    if not NAME.fullmatch(name):
        raise AccountError(f"--name {name!r}: letters, digits, '.', '_', '@', '-' (e.g. erp-sync)")
    if expires_ns is not None and expires_ns <= now_ns:
        raise AccountError("--expires must be in the future (e.g. 30d, 12h or 2027-01-31)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    t = tables(db).api_tokens
    with transaction(db):
        t.insert(
            token_sha256=sha256(token), name=name, role=checked, sites=json.dumps(scope),
            created_ns=now_ns, expires_ns=expires_ns, revoked_ns=None,
        ).execute()  # fmt: skip
        new_id = t.select(t.id).where(t.token_sha256 == sha256(token)).scalar()
    return NewToken(int(new_id), token, name, checked, tuple(scope), expires_ns)


def revoke_token(db: Database, token_id: int, now_ns: int) -> bool:
    t = tables(db).api_tokens
    with transaction(db):
        done = (
            t.update(revoked_ns=now_ns).where((t.id == token_id) & t.revoked_ns.is_null()).execute()
        )
    return bool(done)


def list_tokens(db: Database) -> list[dict[str, Any]]:
    t = tables(db).api_tokens
    rows = t.select(
        t.id, t.name, t.role, t.sites, t.created_ns, t.expires_ns, t.revoked_ns
    ).order_by(t.id)
    return [{**row, "sites": sorted(_scope(row["sites"]))} for row in rows.dicts()]


def token_principal(db: Database, token: str, now_ns: int) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    t = tables(db).api_tokens
    row = t.select().where(t.token_sha256 == sha256(token)).dicts().first()
    if row is None or row["revoked_ns"] is not None:
        return None
    if row["expires_ns"] is not None and row["expires_ns"] <= now_ns:
        return None
    return Principal(
        f"token:{row['id']}:{row['name']}", check_role(row["role"]), _scope(row["sites"]), "token"
    )


# --- users ----------------------------------------------------------------------------------


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("the password must have at most 1024 characters")


def add_user(
    db: Database, name: str, password: str, *, role: str, sites: list[str], now_ns: int
) -> None:
    if not NAME.fullmatch(name):
        raise AccountError(
            f"user name {name!r}: letters, digits, '.', '_', '@', '-', at most 64 (e.g. maria)"
        )
    checked = check_role(role)
    scope = check_sites(sites)
    _check_password(password)
    u = tables(db).api_users
    with transaction(db):
        if u.select(u.name).where(u.name == name).exists():
            raise AccountError(
                f"user {name!r} exists: 'sink user passwd {name}' changes the password"
            )
        u.insert(
            name=name, password_hash=_hasher.hash(password), role=checked,
            sites=json.dumps(scope), created_ns=now_ns, changed_ns=now_ns,
        ).execute()  # fmt: skip


def set_password(db: Database, name: str, password: str, now_ns: int) -> None:
    _check_password(password)
    t = tables(db)
    with transaction(db):
        done = (
            t.api_users.update(password_hash=_hasher.hash(password), changed_ns=now_ns)
            .where(t.api_users.name == name)
            .execute()
        )
        if not done:
            raise AccountError(f"no user {name!r}: 'sink user add {name} --role R' creates one")
        # a new password ends every session of that user
        t.api_sessions.delete().where(t.api_sessions.user_name == name).execute()


def remove_user(db: Database, name: str) -> None:
    t = tables(db)
    with transaction(db):
        t.api_sessions.delete().where(t.api_sessions.user_name == name).execute()
        if not t.api_users.delete().where(t.api_users.name == name).execute():
            raise AccountError(f"no user {name!r}: 'sink user list' shows the users")


def list_users(db: Database) -> list[dict[str, Any]]:
    u = tables(db).api_users
    rows = u.select(u.name, u.role, u.sites, u.created_ns).order_by(u.name).dicts()
    return [{**row, "sites": sorted(_scope(row["sites"]))} for row in rows]


def verify_user(db: Database, name: str, password: str) -> Principal | None:
    """The user when ``password`` is theirs; None otherwise (same answer for an unknown name)."""
    u = tables(db).api_users
    row = u.select().where(u.name == name).dicts().first() if NAME.fullmatch(name) else None
    if row is None:
        # spend the same time as for a real user: no user-name oracle by timing
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return Principal(row["name"], check_role(row["role"]), _scope(row["sites"]), "user")


_DUMMY_HASH: Final = _hasher.hash("not a password of anyone")


# --- sessions -------------------------------------------------------------------------------


def open_session(db: Database, user: Principal, now_ns: int) -> tuple[str, str]:
    """(session id for the cookie, CSRF token)."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    s = tables(db).api_sessions
    with transaction(db):
        s.delete().where(s.expires_ns <= now_ns).execute()
        s.insert(
            id_sha256=sha256(session_id), user_name=user.name, csrf=csrf, created_ns=now_ns,
            expires_ns=now_ns + SESSION_S * NS,
        ).execute()  # fmt: skip
    return session_id, csrf


def session_principal(db: Database, session_id: str, now_ns: int) -> Principal | None:
    if not session_id or len(session_id) > 200:
        return None
    t = tables(db)
    s, u = t.api_sessions, t.api_users
    row = (
        s.select(s.csrf, s.expires_ns, u.name, u.role, u.sites)
        .join(u, on=u.name == s.user_name)
        .where(s.id_sha256 == sha256(session_id))
        .dicts()
        .first()
    )
    if row is None or row["expires_ns"] <= now_ns:
        return None
    return Principal(
        row["name"], check_role(row["role"]), _scope(row["sites"]), "user", csrf=row["csrf"]
    )


def close_session(db: Database, session_id: str) -> None:
    s = tables(db).api_sessions
    with transaction(db):
        s.delete().where(s.id_sha256 == sha256(session_id)).execute()


# --- audit ----------------------------------------------------------------------------------


def audit(
    db: Database, who: Principal, action: str, *, device: str, contact_id: str, site: str,
    remote: str, now_ns: int,
) -> None:  # fmt: skip
    a = tables(db).audit_log
    with transaction(db):
        a.insert(
            who=who.name, action=action, device=device, contact_id=contact_id, site=site,
            remote=remote, at_ns=now_ns,
        ).execute()  # fmt: skip


def audit_rows(db: Database, limit: int = 500) -> list[dict[str, Any]]:
    a = tables(db).audit_log
    query = a.select(a.who, a.action, a.device, a.contact_id, a.site, a.remote, a.at_ns)
    return list(query.order_by(a.id.desc()).limit(limit).dicts())
