"""A bad value from the till never stops the core loop nor loses a contact.

The till's HTTP input refuses NaN and the infinities (tests/edge/test_pos.py), but a receipt
can reach the core by other ways (a scenario's ``amount = inf``, a future input). Here receipts
with NaN and infinite amounts go through the real simulation path (core, store, sidecars):
every contact and every receipt is saved, a receipt without the field the store cannot hold,
the ``bad_record`` alarm says which field went, and the contacts after it are saved as well.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edge.app import Core
from edge.config import Config
from edge.scenario import ScenarioReceipt, busy_shift
from edge.simulate import STORE_NAME, run_simulation
from edge.store import Store
from tests.faults.harness import config_dict

SHIFT = busy_shift(0.25, seed=3)  # 13 presence contacts, receipts inside some of them


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_receipts_with_nan_and_infinite_amounts_are_kept_without_them(tmp_path: Path) -> None:
    amounts = [float("nan"), float("inf"), 2.5]
    receipts = [  # built directly: NaN gets past the scenario's own check, like a stray bug
        ScenarioReceipt(at=r.at, id=r.id, amount=amounts[i % 3])
        for i, r in enumerate(SHIFT.receipts)
    ]
    receipts.append(ScenarioReceipt(at=2.0, id="R-alone", amount=float("nan")))
    assert len(receipts) >= 7
    scenario = SHIFT.replace(receipts=receipts)
    cores: list[Core] = []
    cfg = Config.from_dict(config_dict("mqtt://127.0.0.1:1"))
    summary = run_simulation(cfg, scenario, tmp_path / "s.toml", tmp_path, core_hook=cores.append)

    assert summary.contacts == 13  # as many as the same shift without bad amounts
    with Store.open(tmp_path / STORE_NAME) as store:
        contacts = store.contacts()
        orphans = store.orphan_events()
        pending = store.outbox.pending(limit=1000)
    kept = {e.receipt_id: e for c in contacts for e in c.events if e.kind == "receipt"}
    assert [e.receipt_id for e in orphans] == ["R-alone"]  # nobody at the counter at 2 s
    kept["R-alone"] = orphans[0]
    assert set(kept) == {r.id for r in receipts}  # every receipt, none lost
    for r in receipts:
        amount = r.amount
        assert amount is not None
        expected = {"amount": amount} if math.isfinite(amount) else {}
        assert kept[r.id].data == expected, r.id
    bad = sum(1 for r in receipts if r.amount is not None and not math.isfinite(r.amount))
    health = cores[0].health
    assert health.count("bad_record") == bad
    [alarm] = [a for a in health.snapshot()["alarms"] if a["kind"] == "bad_record"]
    assert alarm["detail"].startswith("contact ")  # the latest: one of the bad amounts
    assert "].data.amount = " in alarm["detail"]
    assert ": not a finite number (dropped)" in alarm["detail"]
    assert cores[0].unsaved == 0
    # what leaves the device and what recovery reads is JSON
    assert {row.ref for row in pending} >= {c.id for c in contacts}
    for sidecar in (tmp_path / "clips").glob("*.json"):
        strict_json(sidecar.read_text())
