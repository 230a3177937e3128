"""The managers' web page: server-rendered Jinja2 templates and a little plain JavaScript.

Rules:
- Same app, same roles and scope as the JSON API (it calls the same functions). Pages need a
  session (``/login``); without one they redirect there. A viewer sees figures, alerts and
  devices only.
- Every form post carries the CSRF token: the login form the one of its pre-login cookie
  (double submit), the others the session's. Failed logins are rate-limited per address and
  per user name (429 with Retry-After).
- The session cookie is HttpOnly, SameSite=Strict, Secure when served over TLS.
- Assets (``static/``: CSS and JS) are served by the app; nothing is fetched from elsewhere.
- Texts in English and Russian (``i18n.py``): ``?lang=`` (remembered in a cookie), else the
  browser's Accept-Language.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from cloud_sink import metrics as metric_defs
from cloud_sink.api import accounts, queries
from cloud_sink.api.accounts import Principal
from cloud_sink.api.app import (
    SESSION_COOKIE,
    ApiError,
    all_alerts,
    contact_detail,
    figures,
    remove_reason,
    tick_reasons,
)
from cloud_sink.api.i18n import LANGS, pick_lang, texts
from cloud_sink.reasons import count

if TYPE_CHECKING:
    from cloud_sink.api.app import _State

HERE: Final = Path(__file__).resolve().parent
LOGIN_CSRF: Final = "cp_login_csrf"
LANG_COOKIE: Final = "cp_lang"
FILTERS: Final = ("site", "device", "staff", "mode", "ended_by", "reason", "text", "from", "to")


def add_routes(app: FastAPI, state: _State) -> None:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    secure = state.settings.secure_cookies

    def lang_of(request: Request) -> str:
        return pick_lang(
            request.query_params.get("lang"),
            request.cookies.get(LANG_COOKIE),
            request.headers.get("accept-language", ""),
        )

    def page(request: Request, name: str, who: Principal | None, **context: Any) -> Response:
        lang = lang_of(request)
        response = templates.TemplateResponse(
            request,
            name,
            {"t": texts(lang), "lang": lang, "langs": LANGS, "who": who, **context},
        )
        if request.query_params.get("lang") in LANGS:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response

    def session_user(request: Request) -> Principal | None:
        """The session's user (a form post's CSRF token is checked by its handler)."""
        session = request.cookies.get(SESSION_COOKIE)
        if not session:
            return None
        return accounts.session_principal(state.database(), session, state.settings.clock_ns())

    def check_form_csrf(who: Principal, token: str) -> None:
        if not token or not secrets.compare_digest(token, who.csrf):
            raise ApiError(403, "missing or wrong CSRF token: reload the page and try again",
                           "csrf_token")  # fmt: skip

    def to_login(request: Request) -> Response:
        return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", 303)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        return RedirectResponse("/contacts" if who.role != "viewer" else "/figures", 303)

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    def login_form(request: Request, error: str = "", next: str = "/") -> Response:
        token = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, csrf=token, error=error, next=_safe(next))
        response.set_cookie(
            LOGIN_CSRF, token, httponly=True, samesite="strict", secure=secure, max_age=3600
        )
        return response

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=500)] = "/",
    ) -> Response:
        expected = request.cookies.get(LOGIN_CSRF, "")
        if not expected or not secrets.compare_digest(csrf_token, expected):
            raise ApiError(403, "missing or wrong CSRF token: reload /login and try again",
                           "csrf_token")  # fmt: skip
        remote = request.client.host if request.client else "-"
        keys = (f"addr:{remote}", f"user:{username.lower()}")
        wait = state.limiter.retry_after(*keys)
        if wait > 0:
            return Response(
                '{"detail":"too many failed logins: wait and try again","field":"username"}',
                status_code=429,
                media_type="application/json",
                headers={"Retry-After": str(int(wait) + 1)},
            )
        db = state.database()
        who = accounts.verify_user(db, username, password)
        if who is None:
            state.limiter.failed(*keys)
            t = texts(lang_of(request))
            return RedirectResponse(
                f"/login?{urlencode({'error': t['login_failed'], 'next': _safe(next)})}", 303
            )
        state.limiter.succeeded(*keys)
        session_id, _ = accounts.open_session(db, who, state.settings.clock_ns())
        response = RedirectResponse(_safe(next), 303)
        response.set_cookie(
            SESSION_COOKIE, session_id, httponly=True, samesite="strict", secure=secure,
            max_age=accounts.SESSION_S, path="/",
        )  # fmt: skip
        response.delete_cookie(LOGIN_CSRF)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
        who = session_user(request)
        if who is not None:
            check_form_csrf(who, csrf_token)
            accounts.close_session(state.database(), request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/contacts", include_in_schema=False, response_class=HTMLResponse)
    def contacts_page(
        request: Request,
        tag: Annotated[list[str], Query()] = [],  # noqa: B006
        cursor: str | None = None,
    ) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        if who.role == "viewer":
            raise ApiError(403, "role viewer may not list contacts (figures and alerts only)")
        db = state.database()
        q = request.query_params
        values = {k: (q.get(k) or None) for k in FILTERS}
        tz = _tz(q.get("tz"))
        lo = _when(values["from"], tz, "from")
        hi = _when(values["to"], tz, "to")
        if values["text"] is not None and len(values["text"]) > 200:
            raise ApiError(422, "text: at most 200 characters (the words to search for)", "text")
        audio = q.get("has_audio")
        f = queries.ContactFilter(
            site=values["site"], device=values["device"], staff=values["staff"],
            mode=values["mode"], ended_by=values["ended_by"], reason=values["reason"],
            text=values["text"], tags_all=tuple(t for t in tag if t), start=lo, end=hi,
            has_audio=None if audio not in ("yes", "no") else audio == "yes",
        )  # fmt: skip
        try:
            items, next_cursor = queries.contacts_page(db, who, f, limit=50, cursor=cursor)
        except queries.QueryError as exc:
            raise ApiError(422, str(exc), exc.field) from None
        kept = [(k, v) for k, v in q.multi_items() if k not in ("cursor", "lang") and v]
        return page(
            request, "contacts.html", who, items=items, values=values, tags=tag,
            has_audio=audio or "", filter_query=urlencode(kept),
            next_url=None if next_cursor is None else "/contacts?" + urlencode(
                [*kept, ("cursor", next_cursor)]
            ),
            known_tags=_known_tags(), reasons=state.settings.reasons,
            sites=queries.scoped_sites(db, who),
        )  # fmt: skip

    @app.get(
        "/contacts/{device}/{contact_id}", include_in_schema=False, response_class=HTMLResponse
    )
    def contact_page(request: Request, device: str, contact_id: str) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        if who.role == "viewer":
            raise ApiError(403, "role viewer may not open contacts (figures and alerts only)")
        if not (_ok_id(device) and _ok_id(contact_id)):
            raise ApiError(404, "no such contact", "contact_id")
        db = state.database()
        contact = contact_detail(db, who, device, contact_id)
        markers = _markers(contact)
        filter_query = request.query_params.get("f", "")
        prev_url, next_url = _neighbours(db, who, contact, filter_query)
        ticked = {a["reason"] for a in contact["annotations"]}
        return page(
            request, "contact.html", who, c=contact, markers=markers, ticked=ticked,
            reasons=state.settings.reasons, filter_query=filter_query, prev_url=prev_url,
            next_url=next_url,
        )  # fmt: skip

    @app.post("/contacts/{device}/{contact_id}/reasons", include_in_schema=False)
    def save_reasons(
        request: Request,
        device: str,
        contact_id: str,
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        reason: Annotated[list[str], Form()] = [],  # noqa: B006
        note: Annotated[str, Form(max_length=2000)] = "",
        f: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        check_form_csrf(who, csrf_token)
        if who.role not in ("admin", "manager"):
            raise ApiError(403, f"role {who.role} may not annotate (manager or admin)")
        if not (_ok_id(device) and _ok_id(contact_id)):
            raise ApiError(404, "no such contact", "contact_id")
        db = state.database()
        contact = contact_detail(db, who, device, contact_id)
        before = {a["reason"] for a in contact["annotations"]}
        wanted = set(reason)
        added = [code for code in reason if code not in before]
        if added:
            tick_reasons(state, db, who, device, contact_id, added, note)
        for code in sorted(before - wanted):
            remove_reason(db, who, device, contact_id, code)
        query = urlencode({"f": f, "saved": "1"})
        return RedirectResponse(f"/contacts/{device}/{contact_id}?{query}", 303)

    @app.get("/figures", include_in_schema=False, response_class=HTMLResponse)
    def figures_page(
        request: Request,
        by: str = "day",
        start: Annotated[str | None, Query(alias="from")] = None,
        end: Annotated[str | None, Query(alias="to")] = None,
        tz: str | None = None,
        site: str | None = None,
    ) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        by = by if by in ("day", "hour", "staff", "device", "site") else "day"
        db = state.database()
        doc = figures(
            state, db, who, by=by, start=start or None, end=end or None, tz_name=tz or None,
            site=site or None,
        )  # fmt: skip
        return page(
            request, "figures.html", who, doc=doc, by=by, start=start or "", end=end or "",
            tz=tz or "", site=site or "", definitions=metric_defs.DEFINITIONS,
            sites=queries.scoped_sites(db, who),
        )  # fmt: skip

    @app.get("/reasons", include_in_schema=False, response_class=HTMLResponse)
    def reasons_page(request: Request, by: str = "site") -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        by = by if by in ("site", "device", "day") else "site"
        rows = count(state.database(), by=by, reasons=state.settings.reasons)  # type: ignore[arg-type]
        rows = [r for r in rows if who.sees(str(r["site"]))]
        return page(request, "reasons.html", who, rows=rows, by=by)

    @app.get("/alerts", include_in_schema=False, response_class=HTMLResponse)
    def alerts_page(request: Request) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        rows = list(reversed(all_alerts(state, state.database(), who, None)))
        return page(request, "alerts.html", who, rows=rows)

    @app.get("/devices", include_in_schema=False, response_class=HTMLResponse)
    def devices_page(request: Request) -> Response:
        who = session_user(request)
        if who is None:
            return to_login(request)
        rows = queries.devices(
            state.database(), who, state.settings.clock_ns(), state.settings.offline_after_s
        )
        return page(request, "devices.html", who, rows=rows)


def _safe(target: str) -> str:
    """Only a local path may be a redirect target (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _ok_id(text: str) -> bool:
    return bool(accounts.SITE.fullmatch(text))


def _tz(name: str | None) -> Any:
    from cloud_sink.api.app import _zone

    return _zone(name or "UTC")


def _when(text: str | None, tz: Any, name: str) -> Any:
    from cloud_sink.api.app import _when as when

    return when(text, tz, name)


def _known_tags() -> list[str]:
    return [
        "negative", "not_positive", "positive", "unsure", "silent", "productive", "unproductive",
        "request", "force_majeure", "timed_out",
    ]  # fmt: skip


def _markers(contact: dict[str, Any]) -> list[dict[str, Any]]:
    """The contact's events as offsets (seconds) into its clip: the clip's start is the
    timeline's zero (its pre-roll included)."""
    from cloud_sink.report import instant

    clip = contact.get("clip") or {}
    zero = instant(str(clip.get("start") or contact["start"]))
    out = []
    for event in contact["events"]:
        at = instant(str(event.get("at", "")))
        if zero is None or at is None:
            continue
        out.append(
            {
                "kind": str(event.get("kind", "?")),
                "offset_s": round((at - zero).total_seconds(), 3),
                "at": event.get("at"),
                "video_url": event.get("video_url"),
            }
        )
    return out


def _neighbours(
    db: Any, who: Principal, contact: dict[str, Any], filter_query: str
) -> tuple[str | None, str | None]:
    """The previous and next contact in the list's filter (its simple fields and text)."""
    from urllib.parse import parse_qs

    q = {k: v[-1] for k, v in parse_qs(filter_query).items()}
    tags = tuple(parse_qs(filter_query).get("tag", []))
    try:
        tz = _tz(q.get("tz"))
        f = queries.ContactFilter(
            site=q.get("site"), device=q.get("device"), staff=q.get("staff"), mode=q.get("mode"),
            ended_by=q.get("ended_by"), reason=q.get("reason"), tags_all=tags, text=q.get("text"),
            start=_when(q.get("from"), tz, "from"), end=_when(q.get("to"), tz, "to"),
        )  # fmt: skip
    except ApiError:
        return None, None
    cursor = queries.encode_cursor(contact["start"], contact["device"], contact["id"])
    try:
        after, _ = queries.contacts_page(db, who, f, limit=1, cursor=cursor)
        before = queries.previous(db, who, f, contact["start"], contact["device"], contact["id"])
    except queries.QueryError:  # (a text without words: the list itself said so)
        return None, None
    suffix = "?" + urlencode({"f": filter_query}) if filter_query else ""

    def url(item: dict[str, Any] | None) -> str | None:
        return None if item is None else f"/contacts/{item['device']}/{item['id']}{suffix}"

    return url(before), url(after[0] if after else None)
