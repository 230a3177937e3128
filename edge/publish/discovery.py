"""Home Assistant MQTT discovery: the retained configs that make a device's status visible.

Rules:
- One sensor per configured status field (``homeassistant.sensors``: names in the status object,
  dotted for nested ones), published retained on ``<prefix>/sensor/<device>_<field>/config``
  on every connect (the publisher's ``retained_on_connect`` hook).
- Each sensor reads the device's retained status topic: ``value_template`` picks its field,
  availability comes from the same message's ``online`` flag (the last will says offline).
- ``unique_id`` and the device block's identifier are stable per device, so Home Assistant
  keeps history and groups the sensors under one device.
- Field names come from the config, not from code: a field the status does not carry shows as
  unknown in Home Assistant; :func:`missing_fields` lets a test (or a check) catch that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.config import Config
from edge.publish import wire

#: units and classes Home Assistant understands, for the fields that have one
_KNOWN: dict[str, dict[str, str]] = {
    "free_disk_bytes": {"unit_of_measurement": "B", "device_class": "data_size"},
    "outbox_depth": {"unit_of_measurement": "messages", "state_class": "measurement"},
}


def object_id(device: str, field: str) -> str:
    return f"{device}_{field.replace('.', '_')}"


def value_template(field: str) -> str:
    return "{{ value_json.status." + field + " }}"


def sensor_config(
    *, device: str, site: str, field: str, version: str, status_topic: str
) -> dict[str, Any]:
    """The discovery payload of one sensor."""
    oid = object_id(device, field)
    config: dict[str, Any] = {
        "name": field.replace(".", " ").replace("_", " "),
        "unique_id": f"contactpoint_{oid}",
        "object_id": f"contactpoint_{oid}",
        "state_topic": status_topic,
        "value_template": value_template(field),
        "availability_topic": status_topic,
        "availability_template": "{{ 'online' if value_json.status.online else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"contactpoint_{device}"],
            "name": f"contactpoint {device}",
            "manufacturer": "contactpoint",
            "model": "contact point",
            "sw_version": version,
            "suggested_area": site,
        },
    }
    config.update(_KNOWN.get(field, _kind_of(field)))
    return config


def _kind_of(field: str) -> dict[str, str]:
    """Today's counters only grow (and start again at midnight); indexes and depths vary.
    A null value (an index without contacts yet) renders as None: unknown in Home Assistant."""
    last = field.rsplit(".", 1)[-1]
    counts = last in ("served", "positive", "negative", "silent", "productive", "receipts")
    counts = counts or last in ("surveys", "force_majeure", "visitors", "contacts")
    return {
        "state_class": "total_increasing"
        if field.startswith("today.") and counts
        else "measurement"
    }


def discovery_messages(
    *, device: str, site: str, prefix: str, fields: Sequence[str], version: str
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every sensor's retained discovery config."""
    status_topic = wire.topic(site, device, "status")
    return [
        (
            wire.discovery_topic(prefix, "sensor", object_id(device, field)),
            wire.encode_json(
                sensor_config(
                    device=device,
                    site=site,
                    field=field,
                    version=version,
                    status_topic=status_topic,
                )
            ),
        )
        for field in fields
    ]


def provider(cfg: Config, version: str) -> Callable[[], list[tuple[str, bytes]]] | None:
    """The publisher's ``retained_on_connect`` hook for this config (None when disabled)."""
    ha = cfg.homeassistant
    if not ha.enabled:
        return None
    messages = discovery_messages(
        device=cfg.device.id,
        site=cfg.device.site,
        prefix=ha.discovery_prefix,
        fields=ha.sensors,
        version=version,
    )
    return lambda: list(messages)


def missing_fields(status_payload: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """The configured fields a status payload does not carry."""
    missing = []
    for field in fields:
        node: Any = status_payload.get("status")
        for part in field.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            missing.append(field)
    return missing
