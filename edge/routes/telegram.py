"""Telegram through the Bot API: ``sendMessage``, or the clip uploaded with ``sendAudio`` (or
``sendDocument`` / ``sendVoice``) and the text as its caption.

Limits: one message a second per chat (a token bucket) and ``group_per_min`` a minute to a
group or channel (an exact sliding window); a 429's ``parameters.retry_after`` is obeyed; a clip
above ``max_upload_mb`` goes as a link (``routes.clip_url``). A 400 (a request Telegram will
never take) makes the row a dead letter; anything else (network, 401/403/404, 5xx) is retried.
Telegram cannot deduplicate: the text ends with the delivery id, so a person can.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.config import TelegramRoute
from edge.routes import _http
from edge.routes._base import (
    Limits,
    Refused,
    RetryLater,
    Route,
    Secret,
    TokenBucket,
    group_limit,
)
from edge.routes._message import MIME, compose
from edge.store import RouteRow

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
DEFAULT_RETRY_S = 5.0
_FILE_FIELD = {"sendAudio": "audio", "sendDocument": "document", "sendVoice": "voice"}


class Telegram(Route):
    type = "telegram"

    def __init__(self, cfg: TelegramRoute, token: Secret, data_dir: Path, clip_url: str) -> None:
        super().__init__(cfg.name, (token,))
        self.cfg = cfg
        self._token = token
        self._data_dir = data_dir
        self._clip_url = clip_url
        group = cfg.chat_id.startswith(("-", "@"))
        bucket = TokenBucket(cfg.per_chat_per_s, 1)
        self._limits = Limits(bucket, group_limit(cfg.group_per_min)) if group else Limits(bucket)

    def acquire(self, now_s: float) -> float:
        return self._limits.acquire(now_s)

    def _url(self, method: str) -> str:
        return f"{self.cfg.base_url.rstrip('/')}/bot{self._token.reveal()}/{method}"

    def send(self, row: RouteRow) -> None:
        out = compose(row, self._data_dir, self._clip_url)
        max_bytes = int(self.cfg.max_upload_mb * 1024 * 1024)
        upload = self.cfg.send_clip and out.clip is not None and out.clip_bytes <= max_bytes
        text = out.text(self.cfg.template, linked=not upload)
        shown = f"{self.cfg.base_url} ({self.cfg.chat_id})"
        if upload and out.clip is not None:
            method: str = self.cfg.clip_method
            main, sub = MIME.get(out.codec, ("application", "octet-stream"))
            body = _http.Multipart(
                {"chat_id": self.cfg.chat_id, "caption": text[:CAPTION_LIMIT]},
                _FILE_FIELD[method],
                out.clip,
                out.clip_name,
                f"{main}/{sub}",
            )
            reply = _http.post(
                self._url(method),
                body,
                {"Content-Type": body.content_type},
                length=len(body),
                timeout_s=self.cfg.timeout_s,
                shown=shown,
            )
        else:
            method = "sendMessage"
            data = json.dumps(
                {
                    "chat_id": self.cfg.chat_id,
                    "text": text[:MESSAGE_LIMIT],
                    "disable_web_page_preview": True,
                }
            ).encode()
            reply = _http.post(
                self._url(method),
                data,
                {"Content-Type": "application/json"},
                timeout_s=self.cfg.timeout_s,
                shown=shown,
            )
        _verdict(method, reply)


def _verdict(method: str, reply: _http.Response) -> None:
    try:
        answer = json.loads(reply.body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if 200 <= reply.status < 300 and answer.get("ok") is True:
        return
    description = str(answer.get("description") or reply.body[:200].decode(errors="replace"))
    what = f"{method}: HTTP {reply.status}: {description}"
    if reply.status == 429:
        params = answer.get("parameters")
        after = params.get("retry_after") if isinstance(params, dict) else None
        if not isinstance(after, int | float) or isinstance(after, bool) or after < 0:
            after = _http.retry_after(reply.headers) or DEFAULT_RETRY_S
        raise RetryLater(what, float(after))
    if reply.status in (400, 413):
        raise Refused(what)
    raise RetryLater(what)
