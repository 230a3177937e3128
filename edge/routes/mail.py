"""E-mail over SMTP: the text, and the clip attached (above ``max_attach_mb`` a link instead).

``Message-ID`` is made from the delivery id, and ``X-Contactpoint-Delivery`` carries it, so a
mail repeated after a crash can be recognised as the same. security: ``starttls`` (upgrade a
plain connection, the submission port 587), ``tls`` (SMTPS, 465) or ``none`` (a relay on
loopback). A 5xx for the message itself (recipients or data refused) makes it a dead letter;
everything else (no server, 4xx, login refused) is retried.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from edge.config import EmailRoute
from edge.routes._base import Refused, RetryLater, Route, Secret
from edge.routes._message import MIME, compose
from edge.routes.webhook import DELIVERY_HEADER
from edge.store import RouteRow


class Email(Route):
    type = "email"

    def __init__(
        self, cfg: EmailRoute, password: Secret | None, data_dir: Path, clip_url: str
    ) -> None:
        super().__init__(cfg.name, (password,) if password else ())
        self.cfg = cfg
        self._password = password
        self._data_dir = data_dir
        self._clip_url = clip_url

    def message(self, row: RouteRow) -> EmailMessage:
        cfg = self.cfg
        out = compose(row, self._data_dir, self._clip_url)
        attach = (
            cfg.attach_clip
            and out.clip is not None
            and out.clip_bytes <= cfg.max_attach_mb * 1024 * 1024
        )
        msg = EmailMessage()
        msg["From"] = cfg.sender
        msg["To"] = ", ".join(cfg.recipients)
        msg["Subject"] = " ".join(cfg.subject.format_map(out.fields).split())
        msg["Date"] = formatdate(localtime=False)
        domain = cfg.sender.rpartition("@")[2]
        msg["Message-ID"] = f"<{row.delivery_id}@{domain}>"
        msg[DELIVERY_HEADER] = row.delivery_id
        msg.set_content(out.text(cfg.template, linked=not attach))
        if attach and out.clip is not None:
            main, sub = MIME.get(out.codec, ("application", "octet-stream"))
            msg.add_attachment(
                out.clip.read_bytes(), maintype=main, subtype=sub, filename=out.clip_name
            )
        return msg

    def send(self, row: RouteRow) -> None:
        cfg = self.cfg
        where = f"smtp://{cfg.host}:{cfg.port}"
        try:
            msg = self.message(row)
            context = ssl.create_default_context(cafile=cfg.ca_file or None)
            smtp: smtplib.SMTP
            if cfg.security == "tls":
                smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=context)
                if cfg.username and self._password is not None:
                    smtp.login(cfg.username, self._password.reveal())
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                raise Refused(f"{where}: every recipient refused: {exc.recipients}") from None
            raise RetryLater(f"{where}: recipients refused for now: {exc.recipients}") from None
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            reason = f"{where}: {exc.smtp_code} {exc.smtp_error!r}"
            if exc.smtp_code >= 500:
                raise Refused(reason) from None
            raise RetryLater(reason) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryLater(f"{where}: {exc.__class__.__name__}: {exc}") from None
