"""The till's receipt input, over a real HTTP socket on loopback."""

from __future__ import annotations

import json
import queue
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from edge.clock import FakeClock
from edge.events import Receipt
from edge.pos import ReceiptServer, parse_receipt_body


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
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_receipt_is_stamped_on_arrival(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
) -> None:
    srv, clock, inbox = server
    clock.advance(42.5)
    status, body = post(srv.port, json.dumps({"id": "R-7", "amount": 3.5}).encode())
    assert status == 202 and body == {"accepted": True, "id": "R-7"}
    receipt = inbox.get(timeout=5)
    assert receipt.t_ns == clock.now_ns
    assert receipt.receipt_id == "R-7"
    assert receipt.data == {"amount": 3.5}


def test_empty_body_is_a_sale_without_details(
    server: tuple[ReceiptServer, FakeClock, queue.SimpleQueue[Receipt]],
) -> None:
    srv, _, inbox = server
    assert post(srv.port, b"")[0] == 202
    assert inbox.get(timeout=5).receipt_id == ""


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"amount": -1}', "amount must be a number >= 0"),
        (b'{"amount": true}', "amount must be a number"),
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
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/health", timeout=5) as response:
        assert json.loads(response.read())["ok"] is True
    assert inbox.empty()


def test_parse_accepts_all_fields() -> None:
    assert parse_receipt_body(b'{"id": "a", "amount": 1, "staff": "anna"}') == {
        "id": "a",
        "amount": 1,
        "staff": "anna",
    }
