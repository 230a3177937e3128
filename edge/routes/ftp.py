"""FTP / FTPS (explicit TLS): the clip and its JSON record, each uploaded under a temporary
name and renamed, into a directory per site, device and day (created when missing).

File names are stable per delivery (``<start>_<contact id>.<ext>`` / ``.json``), so a retry or
a repeat after a crash overwrites the same files instead of adding copies. The JSON goes last:
its presence says the clip beside it is complete. Every failure is retried (a server that is
down, full or refusing a login today may take it tomorrow); nothing becomes a dead letter.
"""

from __future__ import annotations

import ftplib
import io
import json
import ssl
from pathlib import Path
from typing import BinaryIO

from edge.config import FtpRoute
from edge.routes._base import RetryLater, Route, Secret
from edge.routes._message import compose
from edge.store import RouteRow


class Ftp(Route):
    type = "ftp"

    def __init__(
        self, cfg: FtpRoute, password: Secret | None, data_dir: Path, clip_url: str
    ) -> None:
        super().__init__(cfg.name, (password,) if password else ())
        self.cfg = cfg
        self._password = password
        self._data_dir = data_dir
        self._clip_url = clip_url

    def send(self, row: RouteRow) -> None:
        out = compose(row, self._data_dir, self._clip_url)
        upload = self.cfg.send_clip and out.clip is not None
        record = {
            "delivery_id": row.delivery_id,
            "kind": row.kind,
            **row.payload,
            "text": out.text(self.cfg.template, linked=not upload),
        }
        date = out.fields["start"][:10] or "undated"
        directory = self.cfg.directory.format(
            site=out.fields["site"], device=out.fields["device"], date=date
        )
        where = f"ftp{'s' if self.cfg.tls else ''}://{self.cfg.host}:{self.cfg.port}"
        ftp: ftplib.FTP | None = None
        try:
            ftp = self._connect()
            _enter(ftp, directory)
            if upload and out.clip is not None:
                with out.clip.open("rb") as f:
                    _put(ftp, f, out.clip_name)
            data = json.dumps(record, ensure_ascii=False, indent=1).encode()
            _put(ftp, io.BytesIO(data), f"{out.base_name}.json")
            ftp.quit()
            ftp = None
        except (OSError, EOFError, ftplib.Error) as exc:
            raise RetryLater(f"{where}{directory}: {exc.__class__.__name__}: {exc}") from None
        finally:
            if ftp is not None:
                ftp.close()

    def _connect(self) -> ftplib.FTP:
        cfg = self.cfg
        ftp: ftplib.FTP
        if cfg.tls:
            context = ssl.create_default_context(cafile=cfg.ca_file or None)
            ftp = ftplib.FTP_TLS(context=context, timeout=cfg.timeout_s)  # noqa: S321 - FTPS
        else:
            # plain FTP only when the site's server offers nothing else (routes.ftp.tls = false)
            ftp = ftplib.FTP(timeout=cfg.timeout_s)  # noqa: S321
        try:
            ftp.connect(cfg.host, cfg.port)
            ftp.login(cfg.username, self._password.reveal() if self._password else "")
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()  # the data connections too
            ftp.set_pasv(cfg.passive)
        except BaseException:
            ftp.close()
            raise
        return ftp


def _enter(ftp: ftplib.FTP, directory: str) -> None:
    """Change to ``directory``, creating what is missing."""
    if directory.startswith("/"):
        ftp.cwd("/")
    for part in (p for p in directory.split("/") if p):
        try:
            ftp.cwd(part)
        except ftplib.error_perm:
            ftp.mkd(part)
            ftp.cwd(part)


def _put(ftp: ftplib.FTP, data: BinaryIO, name: str) -> None:
    """Upload as ``.<name>.part``, then rename: readers never see half a file."""
    temporary = f".{name}.part"
    ftp.storbinary(f"STOR {temporary}", data)
    try:
        ftp.rename(temporary, name)
    except ftplib.error_perm:  # some servers will not rename over an existing file
        ftp.delete(name)
        ftp.rename(temporary, name)
