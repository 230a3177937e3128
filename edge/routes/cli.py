"""``contactpoint routes --data DIR [--json]``: each destination's queue, and its dead letters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge._errors import UserError


def add_command(sub: Any) -> None:
    routes = sub.add_parser(
        "routes", help="the route queues of a device's store: waiting, delivered, refused"
    )
    routes.add_argument("--data", type=Path, required=True, help="data directory")
    routes.add_argument("--json", action="store_true", help="one JSON object per destination")
    routes.set_defaults(handler=_routes)


def _routes(args: argparse.Namespace) -> int:
    from edge.runtime import STORE_NAME
    from edge.store import Store

    path: Path = args.data / STORE_NAME
    if not path.is_file():
        raise UserError(f"no store at {path}; run 'contactpoint simulate ... --data {args.data}'")
    with Store.open(path) as store:
        counts = store.routes.counts()
        dead = store.routes.failed_rows(limit=1000)
        waiting = {name: store.routes.open_rows(name, limit=1) for name in counts}
    report: list[dict[str, Any]] = [
        {
            "destination": name,
            "waiting": c.open,
            "delivered": c.done,
            "refused": c.failed,
            "next": (
                {
                    "kind": waiting[name][0].kind,
                    "ref": waiting[name][0].ref,
                    "attempts": waiting[name][0].attempts,
                    "last_error": waiting[name][0].last_error,
                }
                if waiting[name]
                else None
            ),
            "dead_letters": [
                {"kind": r.kind, "ref": r.ref, "delivery_id": r.delivery_id, "error": r.last_error}
                for r in dead
                if r.destination == name
            ],
        }
        for name, c in sorted(counts.items())
    ]
    if args.json:
        for item in report:
            print(json.dumps(item, ensure_ascii=False))
        return 0
    if not report:
        print("no route deliveries in this store (see [routes] in the README)")
    for item in report:
        print(
            f"{item['destination']}: {item['waiting']} waiting, {item['delivered']} delivered, "
            f"{item['refused']} refused"
        )
        if item["next"] and item["next"]["attempts"]:
            nxt = item["next"]
            print(
                f"  next: {nxt['kind']} {nxt['ref']} after {nxt['attempts']} attempt(s): "
                f"{nxt['last_error']}"
            )
        for letter in item["dead_letters"]:
            print(f"  refused: {letter['kind']} {letter['ref']}: {letter['error']}")
    return 0
