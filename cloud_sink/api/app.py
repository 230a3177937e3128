"""The app factory: the JSON API, health, metrics and the managers' web page on one FastAPI app.

Rules:
- :func:`create_app` opens the sink's database (it must exist: ``sink run`` creates it) and
  serves it; the app never ingests. Handlers are plain functions run in the server's thread
  pool, each thread with its own connection (peewee's thread-local state).
- Authentication: ``Authorization: Bearer cpt_...`` (an API token) or the session cookie of a
  logged-in user. No credentials: 401; a role that may not do it: 403; a row of a site outside
  the caller's scope: 404, the same answer as a row that does not exist.
- A request authenticated by the session cookie that changes something (POST, PUT, PATCH,
  DELETE) must carry the session's CSRF token (header ``X-CSRF-Token`` or form field
  ``csrf_token``); a token-authenticated one needs none (browsers never send it by themselves).
- Every error is JSON ``{"detail": message, "field": name or null}``; the message names the
  field and the fix.
- A clip kept in object storage (its row's ``location``, cloud_sink/objects.py) is served by
  the same route: streamed through the API by default (``s3.serve = "stream"``: the storage may
  stay private; HTTP Range is passed on as the object's byte range; the object's
  ``x-amz-meta-sha256`` must equal the clip's, and a whole-clip read is hashed as it goes and
  broken off if the bytes differ), or with ``s3.serve = "redirect"`` answered by a 307 to a
  presigned URL valid ``s3.presign_expiry_s`` (the client then reads the storage directly;
  its endpoint must be reachable from the client). A listen is audited either way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from peewee import Database
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_sink import report
from cloud_sink.alerts import stored_alerts
from cloud_sink.api import accounts, queries
from cloud_sink.api.accounts import Principal
from cloud_sink.api.settings import ApiSettings, LoginLimiter
from cloud_sink.db import execute_sql, transaction
from cloud_sink.migrations import open_existing
from cloud_sink.models import from_json, tables
from cloud_sink.objects import S3Clips, parse_location, verified_read
from cloud_sink.reasons import ReasonError, annotate, count
from contract.sql import scalar

log = logging.getLogger("contactpoint.api")

SESSION_COOKIE: Final = "cp_session"
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
CODE_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CONTENT_TYPES: Final = {"wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg"}
EXTENSIONS: Final = {"wav": "wav", "flac": "flac", "opus": "opus"}
UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class ErrorBody(BaseModel):
    detail: str = Field(description="what is wrong and how to fix it")
    field: str | None = Field(default=None, description="the parameter or field at fault")


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422, 429)
}


# --- response models -------------------------------------------------------------------------


class ContactItem(BaseModel):
    device: str
    id: str
    site: str
    start: str
    end: str
    duration_s: float | None
    ended_by: str
    mode: str
    staff: str | None
    video_url: str | None
    tags: list[str]
    reasons: list[str]
    has_clip: bool
    has_audio: bool


class ContactPage(BaseModel):
    items: list[ContactItem]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: end")


class AudioMeta(BaseModel):
    codec: str
    sample_rate: int
    bytes: int
    sha256: str
    complete: bool
    deleted_at_ns: int | None
    available: bool
    url: str | None = None


class Annotation(BaseModel):
    reason: str
    note: str
    by: str
    at_ns: int


class ContactDetail(BaseModel):
    device: str
    id: str
    site: str
    start: str
    end: str
    duration_s: float | None
    ended_by: str
    mode: str
    staff: str | None
    video_url: str | None
    clip: dict[str, Any] | None = Field(description="the device's clip record (wire format)")
    clock_synced: bool
    boot_id: str
    tags: list[str]
    events: list[dict[str, Any]]
    annotations: list[Annotation]
    audio: AudioMeta | None
    video_links: list[str] = Field(description="the contact's and its events' archive links")


class ReasonItem(BaseModel):
    code: str
    label: str


class AnnotateBody(BaseModel):
    reasons: list[Annotated[str, Field(pattern=CODE_PATTERN)]] = Field(min_length=1, max_length=50)
    note: str = Field(default="", max_length=2000)


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: bool
    last_ingest: str | None


class DeviceItem(BaseModel):
    device: str
    site: str
    first_seen_ns: int
    last_seen_ns: int
    reported_online: bool | None
    online: bool
    silent_s: float
    version: str | None
    boot_id: str | None
    outbox_depth: int | None
    free_disk_bytes: int | None
    clock_synced: bool | None
    status_at: str | None


class Me(BaseModel):
    name: str
    role: str
    sites: list[str]
    kind: str
    csrf: str | None = None


# --- the app ---------------------------------------------------------------------------------


class _DatabaseCollector(Collector):
    """Gauges read from the database at each scrape: ingest counts, dead letters, devices."""

    def __init__(self, app_state: _State) -> None:
        self.state = app_state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            db = self.state.database()
            messages = execute_sql(db, "SELECT kind, COUNT(*) FROM messages GROUP BY kind")
            by_kind = GaugeMetricFamily(
                "contactpoint_sink_messages", "messages stored, by kind", labels=["kind"]
            )
            for kind, n in messages.fetchall():
                by_kind.add_metric([str(kind)], float(n))
            yield by_kind
            for name, sql, text in (
                ("contacts", "SELECT COUNT(*) FROM contacts", "contacts stored"),
                ("dead_letters", "SELECT COUNT(*) FROM dead_letters", "dead-lettered messages"),
                ("clips_verified", "SELECT COUNT(*) FROM clips WHERE complete = "  # noqa: S608
                 f"{db.param}", "clips assembled and verified"),  # (only a placeholder added)
            ):  # fmt: skip
                args = (True,) if "complete" in sql else ()
                value = scalar(db, sql, args) or 0  # COUNT(*): always one row
                yield GaugeMetricFamily(f"contactpoint_sink_{name}", text, value=float(value))
            everyone = Principal("metrics", "admin", frozenset(), "token")
            devs = queries.devices(
                db, everyone, self.state.settings.clock_ns(), self.state.settings.offline_after_s
            )
            yield GaugeMetricFamily(
                "contactpoint_devices_online",
                "devices online",
                value=sum(d["online"] for d in devs),
            )
            yield GaugeMetricFamily("contactpoint_devices", "devices known", value=len(devs))
            last = queries.last_ingest_ns(db)
            yield GaugeMetricFamily(
                "contactpoint_sink_last_ingest_seconds",
                "wall time of the newest stored message (Unix seconds; 0: none)",
                value=0.0 if last is None else last / 1e9,
            )
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is away
            log.warning("metrics: the database could not be read")


class _State:
    def __init__(self, settings: ApiSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.limiter = LoginLimiter(
            settings.login_attempts, settings.login_window_s, time.monotonic
        )
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "contactpoint_api_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.registry.register(_DatabaseCollector(self))
        self.clips_root = (settings.data_dir / "clips").resolve()
        self._objects: S3Clips | None = None

        self._connections: list[Any] = []
        self._lock = threading.Lock()

    def objects(self) -> S3Clips:
        """The object storage of clips kept there (made on first use: a server whose clips
        are all local needs neither its settings nor boto3)."""
        with self._lock:
            if self._objects is None:
                from cloud_sink.config import S3Section

                s3 = self.settings.s3
                try:
                    self._objects = S3Clips(s3 if s3 is not None else S3Section())
                except ValueError as exc:
                    log.error("object storage: %s", exc)
                    raise ApiError(
                        503, f"the clip is kept in object storage, which is not set up here: {exc}"
                    ) from None
            return self._objects

    def database(self) -> Database:
        """The database, connected in this thread (one connection per server thread, kept
        for the next request of the thread, closed when the app shuts down)."""
        if self.db.connect(reuse_if_open=True):
            with self._lock:
                self._connections.append(self.db.connection())  # type: ignore[no-untyped-call]
        return self.db

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
        with contextlib.suppress(Exception):
            self.db.close()


def create_app(settings: ApiSettings, db: Database | None = None) -> FastAPI:
    """The app on the sink database of ``settings`` (or an already open ``db``)."""
    if db is None:
        db = open_existing(settings.db_url, settings.data_dir)
    state = _State(settings, db)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(
        lifespan=lifespan,
        title="contactpoint sink API",
        version="1",
        summary="Contacts, clips, figures, reasons, alerts and devices of the central sink.",
        description=(
            "Authenticate with `Authorization: Bearer cpt_...` (`contactpoint sink token "
            "create`) or a browser session (`POST /login`). Roles: admin, manager, viewer; "
            "managers and viewers see only the sites of their scope."
        ),
        responses=ERRORS,
    )
    app.state.api = state

    @app.exception_handler(ApiError)
    def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"detail": exc.message, "field": exc.field}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        name = ".".join(loc) or None
        message = f"{name or 'request'}: {first.get('msg', 'invalid')}"
        if "input" in first and isinstance(first["input"], str | int | float):
            message += f" (got {str(first['input'])[:80]!r})"
        return JSONResponse({"detail": message, "field": name}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            detail = f"no such page: {request.url.path} (the API is under /api/v1, see /docs)"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path} (see /docs)"
        return JSONResponse(
            {"detail": detail, "field": None}, status_code=exc.status_code, headers=exc.headers
        )

    @app.middleware("http")
    async def _timing(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        bad = [k for k, v in request.query_params.multi_items() if "\x00" in k + v]
        if bad:  # no text column of either engine stores NUL (PostgreSQL refuses it)
            response: Response = JSONResponse(
                {"detail": f"{bad[0]}: a NUL character is not allowed; remove it",
                 "field": bad[0]},
                status_code=422,
            )  # fmt: skip
            return response
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "(unmatched)")
        state.latency.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    _add_api_routes(app, state)
    from cloud_sink.api import web

    web.add_routes(app, state)
    return app


# --- dependencies ----------------------------------------------------------------------------


def _state(request: Request) -> _State:
    api: _State = request.app.state.api
    return api


def _db(request: Request) -> Database:
    return _state(request).database()


def principal(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """Who asks (token first, then the session cookie); 401 when nobody."""
    state = _state(request)
    db = state.database()
    now = state.settings.clock_ns()
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        who = (
            accounts.token_principal(db, token.strip(), now) if scheme.lower() == "bearer" else None
        )
        if who is None:
            raise ApiError(
                401,
                "the API token is unknown, expired or revoked: create one with "
                "'contactpoint sink token create --role R'",
                "Authorization",
            )
        return who
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        who = accounts.session_principal(db, session, now)
        if who is not None:
            if request.method in UNSAFE:
                sent = request.headers.get("x-csrf-token", "")
                if not sent or sent != who.csrf:
                    raise ApiError(
                        403,
                        "missing or wrong CSRF token: send the session's token in X-CSRF-Token",
                        "X-CSRF-Token",
                    )
            return who
    raise ApiError(
        401,
        "authentication required: send 'Authorization: Bearer <token>' or log in at /login",
        "Authorization",
    )


Who = Annotated[Principal, Depends(principal)]
Db = Annotated[Database, Depends(_db)]
DeviceId = Annotated[str, PathParam(pattern=ID_PATTERN, description="device id")]
ContactId = Annotated[str, PathParam(pattern=ID_PATTERN, description="contact id")]


def require(who: Principal, *roles: str) -> None:
    if who.role not in roles:
        raise ApiError(
            403,
            f"role {who.role} may not do this: it needs {' or '.join(roles)} "
            "(ask an admin for an account with that role)",
        )


def refuse_transcripts(who: Principal) -> None:
    """What people said is for admins and managers: a viewer's transcript search is refused."""
    if who.role not in ("admin", "manager"):
        raise ApiError(
            403,
            f"role {who.role} may not search transcripts: drop text (searching needs admin or "
            "manager)",
            "text",
        )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(
            422, f"tz {name!r} is not an IANA time zone: use e.g. UTC or Europe/Berlin", "tz"
        ) from None


def _when(text: str | None, tz: ZoneInfo, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return report.parse_when(text, tz, name)
    except report.ReportError as exc:
        raise ApiError(422, str(exc), name) from None


def _period(start: str | None, end: str | None, tz: ZoneInfo) -> tuple[datetime | None, ...]:
    lo, hi = _when(start, tz, "from"), _when(end, tz, "to")
    if lo is not None and hi is not None and hi <= lo:
        raise ApiError(422, f"to ({hi.isoformat()}) must be after from ({lo.isoformat()})", "to")
    return lo, hi


def iso_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def video_links(contact: dict[str, Any]) -> list[str]:
    links = [contact["video_url"]] if contact.get("video_url") else []
    for event in contact.get("events", []):
        url = event.get("video_url") if isinstance(event, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")) and url not in links:
            links.append(url)
    return links


def find_contact(db: Database, who: Principal, device: str, contact_id: str) -> dict[str, Any]:
    found = queries.contact_row(db, who, device, contact_id)
    if found is None:
        raise ApiError(
            404,
            f"no contact {device}/{contact_id} in your sites: GET /api/v1/contacts lists them",
            "contact_id",
        )
    return found


def clip_url(device: str, contact_id: str) -> str:
    return f"/api/v1/contacts/{device}/{contact_id}/clip"


def contact_detail(db: Database, who: Principal, device: str, contact_id: str) -> dict[str, Any]:
    contact = find_contact(db, who, device, contact_id)
    if contact["audio"] is not None and contact["audio"]["available"]:
        contact["audio"]["url"] = clip_url(device, contact_id)
    contact["video_links"] = video_links(contact)
    return contact


def figures(
    state: _State, db: Database, who: Principal, *, by: str | None, start: str | None,
    end: str | None, tz_name: str | None, site: str | None,
) -> dict[str, Any]:  # fmt: skip
    """``sink report``'s JSON over the caller's sites (one site with ``site``)."""
    tz = _zone(tz_name or state.settings.timezone)
    lo, hi = _period(start, end, tz)
    contacts, events = report.load(db, state.settings.data_dir)

    def mine(item: dict[str, Any]) -> bool:
        return who.sees(str(item.get("site"))) and (site is None or item.get("site") == site)

    built = report.build(
        [c for c in contacts if mine(c)], [e for e in events if mine(e)], by=by, start=lo,
        end=hi, tz=tz, params=state.settings.params,
    )  # fmt: skip
    doc: dict[str, Any] = from_json(report.render_json(built))
    return doc


# --- the JSON API ----------------------------------------------------------------------------


def _add_api_routes(app: FastAPI, state: _State) -> None:
    @app.get(
        "/healthz", response_model=Health, tags=["service"], responses={503: {"model": Health}}
    )
    def healthz(request: Request) -> Any:
        """Whether the database answers, and when the newest message was stored."""
        try:
            last = queries.last_ingest_ns(state.database())
        except Exception:  # noqa: BLE001 - any failure is the answer: unhealthy
            log.warning("healthz: the database does not answer")
            return JSONResponse(
                {"status": "unavailable", "database": False, "last_ingest": None}, 503
            )
        return {"status": "ok", "database": True, "last_ingest": iso_ns(last)}

    @app.get("/metrics", tags=["service"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: stored messages, contacts, dead letters, devices online,
        request latencies."""
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/me", response_model=Me, tags=["accounts"])
    def me(who: Who) -> Any:
        """Who the credentials belong to (and a session's CSRF token)."""
        return {
            "name": who.name, "role": who.role, "sites": sorted(who.sites), "kind": who.kind,
            "csrf": who.csrf or None,
        }  # fmt: skip

    @app.get("/api/v1/contacts", response_model=ContactPage, tags=["contacts"])
    def list_contacts(
        who: Who,
        db: Db,
        site: Annotated[str | None, Query(max_length=64)] = None,
        device: Annotated[str | None, Query(max_length=64)] = None,
        staff: Annotated[str | None, Query(max_length=200)] = None,
        mode: Annotated[str | None, Query(max_length=64)] = None,
        ended_by: Annotated[str | None, Query(max_length=64)] = None,
        tag: Annotated[list[str], Query(description="every one of these tags")] = [],  # noqa: B006
        tag_any: Annotated[list[str], Query(description="at least one of these")] = [],  # noqa: B006
        tag_none: Annotated[list[str], Query(description="none of these")] = [],  # noqa: B006
        reason: Annotated[str | None, Query(max_length=64)] = None,
        has_audio: bool | None = None,
        text: Annotated[
            str | None,
            Query(
                max_length=200,
                description="the transcript holds every one of these words, in any inflected "
                "form (admin and manager; a viewer is refused)",
            ),
        ] = None,
        start: Annotated[str | None, Query(alias="from", description="start at/after")] = None,
        end: Annotated[str | None, Query(alias="to", description="start before")] = None,
        tz: Annotated[str, Query(description="zone of bare from/to times")] = "UTC",
        limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> Any:
        """Contacts sorted by start time, filtered; ``next_cursor`` pages on."""
        if text is not None:
            refuse_transcripts(who)
        require(who, "admin", "manager")
        lo, hi = _period(start, end, _zone(tz))
        for name, values in (("tag", tag), ("tag_any", tag_any), ("tag_none", tag_none)):
            if len(values) > 50 or any(len(v) > 64 for v in values):
                raise ApiError(422, f"{name}: at most 50 tags of at most 64 characters", name)
        f = queries.ContactFilter(
            site=site, device=device, staff=staff, mode=mode, ended_by=ended_by,
            tags_all=tuple(tag), tags_any=tuple(tag_any), tags_none=tuple(tag_none),
            reason=reason, has_audio=has_audio, text=text, start=lo, end=hi,
        )  # fmt: skip
        try:
            items, next_cursor = queries.contacts_page(db, who, f, limit=limit, cursor=cursor)
        except queries.QueryError as exc:
            raise ApiError(422, str(exc), exc.field) from None
        return {"items": items, "next_cursor": next_cursor}

    @app.get(
        "/api/v1/contacts/{device}/{contact_id}", response_model=ContactDetail, tags=["contacts"]
    )
    def one_contact(who: Who, db: Db, device: DeviceId, contact_id: ContactId) -> Any:
        """One contact: events, tags, reasons ticked, video links, clip metadata."""
        require(who, "admin", "manager")
        return contact_detail(db, who, device, contact_id)

    @app.get(
        "/api/v1/contacts/{device}/{contact_id}/clip",
        tags=["contacts"],
        response_class=Response,
        responses={
            200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "the clip"},
            206: {"description": "the requested byte range"},
            307: {"description": "a presigned URL of the clip's object (s3.serve = redirect)"},
            304: {"description": "not modified (If-None-Match)"},
            416: {"model": ErrorBody, "description": "the range is outside the clip"},
        },
    )
    def clip(
        request: Request,
        who: Who,
        db: Db,
        device: DeviceId,
        contact_id: ContactId,
        range_: Annotated[str | None, Header(alias="range", include_in_schema=False)] = None,
        if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Response:
        """The clip's audio (HTTP Range, ETag = sha256). Every listen is audited."""
        require(who, "admin", "manager")
        contact = find_contact(db, who, device, contact_id)
        meta = queries.clip_row(db, device, contact_id)
        if meta is None or not meta["complete"] or meta["audio_deleted_at"] is not None:
            why = (
                "was deleted by retention"
                if meta and meta["audio_deleted_at"]
                else ("has not arrived completely" if meta else "has no clip")
            )
            raise ApiError(404, f"contact {device}/{contact_id} {why}", "contact_id")
        etag = f'"{meta["clip_sha256"]}"'
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f'inline; filename="{_file_name(contact, meta["codec"])}"',
        }
        if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers=headers)

        def listened() -> None:
            accounts.audit(
                db, who, "listen", device=device, contact_id=contact_id, site=contact["site"],
                remote=request.client.host if request.client else "-",
                now_ns=state.settings.clock_ns(),
            )  # fmt: skip

        content_type = CONTENT_TYPES.get(meta["codec"], "application/octet-stream")
        read: Callable[[int, int], Iterator[bytes]]
        if meta.get("location"):
            objects = state.objects()
            bucket, key = parse_location(str(meta["location"]))
            if objects.options.serve == "redirect":
                if range_ is None or range_.replace(" ", "").startswith("bytes=0-"):
                    listened()
                url = objects.presign(
                    bucket, key, filename=_file_name(contact, meta["codec"]),
                    content_type=content_type,
                )  # fmt: skip
                return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
            size = _object_size(objects, bucket, key, meta["clip_sha256"])

            def read(first: int, last: int) -> Iterator[bytes]:
                blocks = objects.read(bucket, key, first, last)
                if first == 0 and last == size - 1:  # the whole clip: checked as it goes
                    return verified_read(blocks, meta["clip_sha256"], f"s3://{bucket}/{key}")
                return blocks
        else:
            path = _clip_file(state, meta)
            size = path.stat().st_size

            def read(first: int, last: int) -> Iterator[bytes]:
                return _read(path, first, last)

        first, last = 0, size - 1
        status = 200
        if range_ is not None:
            parsed = _parse_range(range_, size)
            if parsed is None:
                return JSONResponse(
                    {"detail": f"range {range_[:80]!r} is outside the clip's {size} bytes "
                     "(send e.g. 'bytes=0-1023')", "field": "Range"},
                    status_code=416,
                    headers={**headers, "Content-Range": f"bytes */{size}"},
                )  # fmt: skip
            first, last = parsed
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(last - first + 1)
        if first == 0:  # a listen (a player's later ranges of the same listen are not)
            listened()
        return StreamingResponse(
            read(first, last), status_code=status, media_type=content_type, headers=headers
        )

    @app.get("/api/v1/reasons", response_model=list[ReasonItem], tags=["reasons"])
    def checklist(who: Who) -> Any:
        """The reasons-for-dissatisfaction checklist."""
        return [{"code": r.code, "label": r.label} for r in state.settings.reasons]

    @app.post(
        "/api/v1/contacts/{device}/{contact_id}/reasons",
        response_model=list[Annotation],
        tags=["reasons"],
        status_code=201,
    )
    def tick(who: Who, db: Db, device: DeviceId, contact_id: ContactId, body: AnnotateBody) -> Any:
        """Tick reasons for one contact (adds rows; nothing is overwritten)."""
        require(who, "admin", "manager")
        tick_reasons(state, db, who, device, contact_id, body.reasons, body.note)
        return find_contact(db, who, device, contact_id)["annotations"]

    @app.delete(
        "/api/v1/contacts/{device}/{contact_id}/reasons/{code}",
        response_model=list[Annotation],
        tags=["reasons"],
    )
    def untick(
        who: Who,
        db: Db,
        device: DeviceId,
        contact_id: ContactId,
        code: Annotated[str, PathParam(pattern=CODE_PATTERN)],
    ) -> Any:
        """Remove a reason from a contact."""
        require(who, "admin", "manager")
        remove_reason(db, who, device, contact_id, code)
        return find_contact(db, who, device, contact_id)["annotations"]

    @app.get("/api/v1/reasons/report", tags=["reasons"], response_model=list[dict[str, Any]])
    def reasons_report(
        who: Who,
        db: Db,
        by: Literal["site", "device", "day"] = "site",
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
    ) -> Any:
        """Per reason, how many contacts have it, by site, device or day (UTC)."""
        try:
            rows = count(db, by=by, start=start, end=end, reasons=state.settings.reasons)
        except ReasonError as exc:
            raise ApiError(422, str(exc).replace("--", ""), "from") from None
        return [r for r in rows if who.sees(str(r["site"]))]

    @app.get("/api/v1/figures", tags=["figures"], response_model=dict[str, Any])
    def get_figures(
        who: Who,
        db: Db,
        by: Literal["device", "site", "staff", "day", "hour"] | None = None,
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        tz: Annotated[str | None, Query(description="default: the [report] zone")] = None,
        site: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Any:
        """The metrics of ``sink report --format json``, over your sites."""
        return figures(state, db, who, by=by, start=start, end=end, tz_name=tz, site=site)

    @app.get("/api/v1/alerts", tags=["alerts"], response_model=list[dict[str, Any]])
    def alerts(who: Who, db: Db, site: Annotated[str | None, Query(max_length=64)] = None) -> Any:
        """Stored alerts (devices', site-level, device offline), oldest first."""
        return all_alerts(state, db, who, site)

    @app.get("/api/v1/devices", tags=["devices"], response_model=list[DeviceItem])
    def devices(who: Who, db: Db) -> Any:
        """Devices of your sites: online, last seen, version, outbox depth, disk."""
        return queries.devices(db, who, state.settings.clock_ns(), state.settings.offline_after_s)

    @app.get("/api/v1/dead-letters", tags=["admin"], response_model=list[dict[str, Any]])
    def dead_letters(who: Who, db: Db, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        """Messages the sink could not store, newest first (admin)."""
        require(who, "admin")
        d = tables(db).dead_letters
        rows = d.select(d.id, d.topic, d.reason, d.detail, d.payload_bytes, d.received_ns)
        return list(rows.order_by(d.id.desc()).limit(limit).dicts())

    @app.get("/api/v1/audit", tags=["admin"], response_model=list[dict[str, Any]])
    def audit_log(who: Who, db: Db, limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> Any:
        """Who listened to which clip, when (admin)."""
        require(who, "admin")
        return accounts.audit_rows(db, limit)


def all_alerts(
    state: _State, db: Database, who: Principal, site: str | None
) -> list[dict[str, Any]]:
    """Stored alerts in scope: the devices', the site rules' and the sink's device_offline
    ones (``active`` until the device is back; cloud_sink/alerts.py)."""
    return [a for a in stored_alerts(db, site) if who.sees(str(a["site"]))]


def tick_reasons(
    state: _State, db: Database, who: Principal, device: str, contact_id: str,
    codes: list[str], note: str,
) -> None:  # fmt: skip
    find_contact(db, who, device, contact_id)  # scope first: another site's is a 404
    try:
        annotate(
            db, contact_id, codes, allowed=state.settings.reasons, note=note, by=who.name,
            now_ns=state.settings.clock_ns(), device=device,
        )  # fmt: skip
    except ReasonError as exc:
        raise ApiError(422, str(exc).replace("--reason", "reasons"), "reasons") from None


def remove_reason(db: Database, who: Principal, device: str, contact_id: str, code: str) -> None:
    find_contact(db, who, device, contact_id)
    a = tables(db).annotations
    with transaction(db):
        done = (
            a.delete()
            .where((a.device == device) & (a.contact_id == contact_id) & (a.reason == code))
            .execute()
        )
    if not done:
        raise ApiError(404, f"reason {code!r} is not ticked on {device}/{contact_id}", "code")


def _clip_file(state: _State, meta: dict[str, Any]) -> Path:
    """The clip's file, which must lie under the data directory's clips/ (whatever the row
    says): a path that leads elsewhere is refused, never opened."""
    relative = str(meta["path"] or "")
    path = (state.settings.data_dir / relative).resolve()
    if not relative or not path.is_relative_to(state.clips_root) or not path.is_file():
        log.warning("clip path refused or missing: %r", relative[:200])
        raise ApiError(404, "the clip's file is missing on this server", "contact_id")
    return path


def _object_size(objects: S3Clips, bucket: str, key: str, sha256: str) -> int:
    """The clip object's size, after checking that its sha256 metadata is the clip's."""
    try:
        info = objects.head(bucket, key)
    except Exception as exc:  # noqa: BLE001 - botocore's errors: missing object, storage down
        status = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if status in ("404", "NoSuchKey", "NotFound"):
            log.warning("clip object s3://%s/%s is missing", bucket, key)
            why = "the clip's object is missing in the storage"
            raise ApiError(404, why, "contact_id") from None
        log.warning("object storage failed for s3://%s/%s: %s", bucket, key, exc)
        why = "the object storage holding the clip does not answer; try again"
        raise ApiError(503, why) from None
    if info.sha256 != sha256:
        log.error("s3://%s/%s: metadata sha256 %s, clip %s", bucket, key, info.sha256, sha256)
        raise ApiError(502, "the object in the storage is not this clip (sha256 differs)")
    return info.size


def _file_name(contact: dict[str, Any], codec: str) -> str:
    stamp = str(contact["start"])[:19].replace(":", "").replace("-", "")
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in contact["site"])
    return f"{safe}_{contact['device']}_{stamp}_{contact['id'][:8]}.{EXTENSIONS.get(codec, 'bin')}"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range of ``bytes=A-B``, ``bytes=A-`` or ``bytes=-N``; None if unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size == 0:
        return None
    a, sep, b = spec.strip().partition("-")
    try:
        if not sep:
            return None
        if a == "":
            n = int(b)
            return None if n <= 0 else (max(size - n, 0), size - 1)
        first = int(a)
        last = size - 1 if b == "" else min(int(b), size - 1)
    except ValueError:
        return None
    return None if first < 0 or first > last or first >= size else (first, last)


def _read(path: Path, first: int, last: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(first)
        left = last - first + 1
        while left > 0:
            block = f.read(min(256 * 1024, left))
            if not block:
                break
            left -= len(block)
            yield block
