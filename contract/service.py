"""Running under systemd: the notify protocol (``Type=notify``) and the journal, for both daemons.

- :class:`Notifier` sends sd_notify(3) messages (``READY=1``, ``STATUS=``, ``WATCHDOG=1``,
  ``STOPPING=1``, ``EXTEND_TIMEOUT_USEC=``) to ``$NOTIFY_SOCKET`` through systemd-python
  (``systemd.daemon.notify``, libsystemd's own sender). Where systemd-python is not installed
  (a development machine without libsystemd) it writes the same datagrams to the socket itself:
  the protocol is one ``AF_UNIX`` datagram of newline-separated ``KEY=value`` lines. Without
  ``NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
- :func:`watchdog_interval_s` is how often to ping: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled
  semantics: only if ``$WATCHDOG_PID`` is unset or this process).
- :func:`journal_logging` sends the log to the journal when stderr *is* the journal
  (``$JOURNAL_STREAM`` names stderr's device and inode): one entry per record, with structured
  fields (``DEVICE``, ``CONTACT_ID``, ``FAULT`` where the code gives them in ``extra=``) and no
  timestamp of ours in the message (the journal stamps every entry itself).

Importing this module loads only the standard library; systemd-python is imported on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any

#: field names a log record may carry in ``extra=`` that go to the journal as they are
JOURNAL_FIELDS = ("DEVICE", "CONTACT_ID", "FAULT")


class Notifier:
    """The service manager's notification socket; a no-op when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        #: every message sent, in order (the daemon's own record; tests read the socket)
        self.sent: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) as one message; False if not sent."""
        if self.address is None or not lines:
            return False
        message = "\n".join(line.replace("\n", " ") for line in lines)
        self.sent.append(message)
        try:
            from systemd import daemon
        except ImportError:
            return self._send_raw(message)
        if os.environ.get("NOTIFY_SOCKET") != self.address:  # libsystemd reads the environment
            return self._send_raw(message)
        return bool(daemon.notify(message))

    def _send_raw(self, message: str) -> bool:
        if self.address is None:
            raise RuntimeError("no NOTIFY_SOCKET address")
        address = self.address
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message.encode("utf-8"))
        except OSError:
            return False
        return True

    # --- the messages the daemons send --------------------------------------------------------

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, extend_s: float, status: str) -> bool:
        """Draining: tell systemd it may take up to ``extend_s`` more seconds."""
        return self.notify(
            "STOPPING=1", f"EXTEND_TIMEOUT_USEC={round(extend_s * 1e6)}", f"STATUS={status}"
        )


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """Half the watchdog timeout systemd set for this process (``WatchdogSec=``), or None."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    try:
        if pid and int(pid) != os.getpid():
            return None
        timeout_s = int(usec) / 1e6
    except ValueError:
        return None
    return timeout_s / 2 if timeout_s > 0 else None


def under_journal(environ: Mapping[str, str] | None = None, stream: Any = None) -> bool:
    """Whether ``stream`` (stderr) is connected to the journal: ``$JOURNAL_STREAM`` holds its
    ``device:inode`` (systemd.exec(5))."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def journal_logging(
    level: int, *, identifier: str = "contactpoint", sender: Any = None
) -> logging.Handler:
    """Log to the journal from now on (replacing the root logger's handlers); returns the
    handler. ``sender`` replaces ``systemd.journal.send`` (the handler's documented hook)."""
    from systemd import journal

    kwargs: dict[str, Any] = {"SYSLOG_IDENTIFIER": identifier}
    if sender is not None:
        kwargs["sender_function"] = sender
    handler: logging.Handler = journal.JournalHandler(**kwargs)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # no time: journal's own
    handler.addFilter(_Fields())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        with contextlib.suppress(Exception):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def set_journal_device(device: str) -> None:
    """Every later journal entry carries ``DEVICE=device`` (the daemon knows it once its
    configuration is read)."""
    for handler in logging.getLogger().handlers:
        for f in handler.filters:
            if isinstance(f, _Fields):
                f.fields["DEVICE"] = device


class _Fields(logging.Filter):
    """Adds default journal fields to every record that does not carry them already."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
