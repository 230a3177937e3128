"""The till's receipt input, over a real HTTP socket on loopback."""

from __future__ import annotations

import json
import queue
import select
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge.clock import FakeClock
from edge.events import Receipt
from edge.pos import ReceiptServer, parse_receipt_body
from tests.waiting import STALL_S, wait_for


@pytest.fixture
def server() -> Iterator[tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]]]:
    clock = FakeClock()
    inbox: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
    srv = ReceiptServer("127.0.0.1", 0, clock, inbox.put)
    srv.start()
    yield srv, clock, inbox
    srv.stop()


def post(port: int, body: bytes, path: str = "/receipt") -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=STALL_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_receipt_is_stamped_on_arrival(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
) -> None:
    srv, clock, inbox = server
    clock.advance(42.5)
    status, body = post(srv.port, json.dumps({"id": "R-7", "amount": 3.5}).encode())
    assert status == 202
    assert body == {"accepted": True, "id": "R-7"}
    receipt = inbox.get(timeout=STALL_S)
    assert receipt.t_ns == clock.now_ns
    assert receipt.receipt_id == "R-7"
    assert receipt.data == {"amount": 3.5}


def test_empty_body_is_a_sale_without_details(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
) -> None:
    srv, _, inbox = server
    assert post(srv.port, b"")[0] == 202
    assert inbox.get(timeout=STALL_S).receipt_id == ""


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"amount": -1}', "amount must be a finite number from 0 to 1e12, got -1"),
        (b'{"amount": true}', "amount must be a finite number from 0 to 1e12, got True"),
        (b'{"id": 5}', "id must be a string"),
        (b'{"total": 5}', "unknown field(s) ['total']"),
    ],
)
def test_bad_bodies_are_refused_with_the_field_named(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]], body: bytes, needle: str
) -> None:
    srv, _, inbox = server
    status, answer = post(srv.port, body)
    assert status == 400
    assert needle in str(answer["error"])
    assert inbox.empty()
    assert srv.rejected == 1


def test_oversized_body_and_wrong_path(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
) -> None:
    srv, _, inbox = server
    assert post(srv.port, b"x" * (64 * 1024 + 1))[0] == 413
    assert post(srv.port, b"", path="/sale")[0] == 404
    assert post(srv.port, b"{}", path="/event")[0] == 404  # no on_event given: not served
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/health", timeout=STALL_S) as response:
        assert json.loads(response.read())["ok"] is True
    assert inbox.empty()


def test_parse_accepts_all_fields() -> None:
    assert parse_receipt_body(b'{"id": "a", "amount": 1, "staff": "anna"}') == {
        "id": "a",
        "amount": 1,
        "staff": "anna",
    }


# --- hostile input: values the device cannot keep ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"amount": NaN}', "amount must be a finite number"),
        (b'{"amount": Infinity}', "amount must be a finite number"),
        (b'{"amount": -Infinity}', "amount must be a finite number"),
        (b'{"amount": 1e999}', "amount must be a finite number"),
        (b'{"amount": 1e300}', "amount must be a finite number from 0 to"),
        (b'{"amount": 100000000000000000000000000000}', "amount must be a finite number"),
        (b'{"amount": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
        (b'{"id": "R-\\ud800"}', "id contains an unpaired surrogate"),
        (b'{"staff": "\\udc80anna"}', "staff contains an unpaired surrogate"),
        (b'{"id": "' + b"x" * 101 + b'"}', "id must be a string of at most 100 characters"),
        (b'{"staff": "' + b"x" * 101 + b'"}', "staff must be a string of at most 100"),
        (b'{"id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        (b"null", "body must be a JSON object, got NoneType"),
        (b'"R-1"', "body must be a JSON object, got str"),
        (b"7", "body must be a JSON object, got int"),
        (b"\xff\xfe{", "not JSON"),
    ],
)
def test_values_the_device_cannot_keep_are_refused_naming_the_field(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]], body: bytes, needle: str
) -> None:
    srv, _, inbox = server
    status, answer = post(srv.port, body)
    assert status == 400
    assert needle in str(answer["error"])
    assert inbox.empty()
    assert srv.rejected == 1


def test_a_staff_name_with_an_unpaired_surrogate_is_refused() -> None:
    inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
    srv = ReceiptServer("127.0.0.1", 0, FakeClock(), inbox.put, on_staff=inbox.put)
    srv.start()
    try:
        status, answer = post(srv.port, b'{"name": "an\\ud800na"}', path="/staff")
    finally:
        srv.stop()
    assert status == 400
    assert "name contains an unpaired surrogate" in str(answer["error"])
    assert inbox.empty()


# --- hostile HTTP: raw bytes on a real socket ----------------------------------------------------


def raw_exchange(
    port: int, data: bytes, *, wait_s: float = STALL_S
) -> tuple[int, dict[str, object]]:
    """Send ``data`` as is, keep the sending side open and read until the server closes;
    fail when no answer comes within ``wait_s``."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            raise AssertionError(f"no answer within {wait_s} s to {data[:60]!r}") from None
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/"), received[:200]
    return int(head.split()[1]), json.loads(body)


def receipt_request(headers: str, body: bytes = b"") -> bytes:
    return f"POST /receipt HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize(
    ("headers", "body", "status", "needle"),
    [
        ("Content-Length: -1\r\n", b"{}", 400, "Content-Length must be a whole number of bytes"),
        ("Content-Length: abc\r\n", b"{}", 400, "Content-Length must be a whole number of bytes"),
        ("Content-Length: 1_0\r\n", b"{}", 400, "Content-Length must be a whole number of bytes"),
        ("Content-Length: 2\r\nContent-Length: 3\r\n", b"{}", 400, "one Content-Length"),
        ("", b'{"amount": 5}', 411, "send a Content-Length header"),
        ("Transfer-Encoding: chunked\r\n", b'5\r\n{"a":\r\n0\r\n\r\n', 411, "Content-Length"),
        ("Content-Length: 99999999999999999999\r\n", b"{}", 413, "body over 65536 bytes"),
    ],
)
def test_malformed_lengths_get_an_answer_not_a_hang(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
    headers: str,
    body: bytes,
    status: int,
    needle: str,
) -> None:
    srv, _, inbox = server
    answer_status, answer = raw_exchange(srv.port, receipt_request(headers, body))
    assert (answer_status, needle in str(answer["error"])) == (status, True), answer
    assert inbox.empty()
    assert post(srv.port, b'{"id": "R-2"}')[0] == 202  # the server is still there


@pytest.fixture
def quick_server() -> Iterator[tuple[ReceiptServer, queue.SimpleQueue[Receipt]]]:
    """Stalled clients are dropped after half a second."""
    inbox: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
    srv = ReceiptServer("127.0.0.1", 0, FakeClock(), inbox.put, timeout_s=0.5, max_connections=3)
    srv.start()
    yield srv, inbox
    srv.stop()


def closed_by_server(conn: socket.socket, wait_s: float) -> bytes:
    """What the server sent before closing ``conn``; fails if it stays open ``wait_s``."""
    conn.settimeout(wait_s)
    received = b""
    try:
        while chunk := conn.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"the server kept a stalled connection open {wait_s} s") from None
    except ConnectionResetError:
        pass
    return received


def test_a_body_shorter_than_announced_times_out_with_408(
    quick_server: tuple[ReceiptServer, queue.SimpleQueue[Receipt]],
) -> None:
    srv, inbox = quick_server
    with socket.create_connection(("127.0.0.1", srv.port)) as conn:
        conn.sendall(receipt_request("Content-Length: 100\r\n", b'{"id": '))
        answer = closed_by_server(conn, 10)
    assert answer.startswith(b"HTTP/1.0 408"), answer[:100]
    assert b"100 bytes announced" in answer
    assert inbox.empty()
    assert srv.timed_out == 1


def test_a_slow_loris_is_cut_off_by_the_request_deadline(
    quick_server: tuple[ReceiptServer, queue.SimpleQueue[Receipt]],
) -> None:
    """One header byte every 0.1 s: no single read times out, the whole request does."""
    srv, _ = quick_server
    request = receipt_request("Content-Length: 2\r\n" + "X-Pad: " + "a" * 400 + "\r\n", b"{}")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", srv.port)) as conn:
        try:
            for index, byte in enumerate(request):
                conn.sendall(bytes([byte]))
                if index == 0:  # meanwhile an honest till is served at once
                    assert post(srv.port, b'{"id": "R-3"}')[0] == 202
                time.sleep(0.1)  # the attack itself: trickle, never quite stall
            raise AssertionError("the server let a trickling client go on for 40 s")
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert time.monotonic() - started < 20
    assert srv.timed_out >= 1


def test_connections_over_the_cap_get_503_and_stalled_ones_free_their_place() -> None:
    inbox: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
    srv = ReceiptServer("127.0.0.1", 0, FakeClock(), inbox.put, timeout_s=3, max_connections=3)
    srv.start()
    stalled = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(3)]
    try:
        for conn in stalled:
            conn.sendall(b"POST /receipt HTTP/1.1\r\n")  # and nothing more
        wait_until(lambda: srv.connections == 3, "3 connections open")
        status, answer = raw_exchange(
            srv.port, receipt_request("Content-Length: 2\r\n", b"{}"), wait_s=10
        )
        assert status == 503
        assert "3 connections" in str(answer["error"])
        assert inbox.empty()
        for conn in stalled:  # the deadline drops them; then there is room again
            closed_by_server(conn, 10)
        wait_until(lambda: srv.connections == 0, "stalled connections dropped")
        assert post(srv.port, b'{"id": "R-4"}')[0] == 202
        assert inbox.get(timeout=STALL_S).receipt_id == "R-4"
        assert srv.refused == 1
        assert srv.timed_out == 3
    finally:
        for conn in stalled:
            conn.close()
        srv.stop()


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    wait_for(predicate, what, poll_s=0.01)


def test_the_serving_loop_sleeps_until_a_connection_a_deadline_or_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #13: no poll interval. Every wait of the serving loop is recorded: with nobody
    connected it waits without a timeout; while a request is being read, until that request's
    deadline (plus a grace); ``stop()`` ends the wait at once (the loop would otherwise sleep
    forever)."""
    waits: list[float | None] = []
    real_select = select.select

    def recorded(r: list[Any], w: list[Any], x: list[Any], timeout: float | None = None) -> Any:
        waits.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(select, "select", recorded)  # what edge.pos calls
    inbox: queue.SimpleQueue[Receipt] = queue.SimpleQueue()
    srv = ReceiptServer("127.0.0.1", 0, FakeClock(), inbox.put, timeout_s=30.0)
    srv.start()
    try:
        wait_for(lambda: waits == [None], "the idle server's first wait")
        with socket.create_connection(("127.0.0.1", srv.port)) as conn:
            conn.sendall(b"POST /receipt HTTP/1.1\r\n")  # a request that is being read
            wait_for(lambda: len(waits) >= 2, "the wait after the accept")
            assert waits[1] is not None
            assert 29.0 < waits[1] <= 30.0 + 0.5  # its deadline, and the grace after it
        assert all(timeout is None or timeout > 1.0 for timeout in waits)
    finally:
        srv.stop()
    assert not srv._thread.is_alive()  # stopped without any timeout coming round
