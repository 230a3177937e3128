"""Home Assistant MQTT discovery: the retained configs that make a device visible.

Rules:
- Topics ``<prefix>/<component>/<device>/<object>/config``: the device id is Home Assistant's
  node id, so the broker's ACL can grant each device exactly its own discovery topics
  (``homeassistant/+/<device>/+/config``, written by ``contactpoint provision``). All are
  published retained on every connect (the publisher's ``retained_on_connect`` hook); a
  refused one is reported as the fault ``mqtt_acl`` (edge/publish/mqtt.py).
- One ``sensor`` per configured status field (``homeassistant.sensors``: names in the status
  object, dotted for nested ones): ``value_template`` picks the field from the retained status,
  availability is the same message's ``online`` flag (the last will says offline).
- One ``binary_sensor`` ``online`` (device class ``connectivity``) from the same flag, without
  availability: it shows the device offline rather than unavailable.
- One ``event`` ``alert`` on the device's ``alert`` topic: the event type is the alert rule's
  name (``event_types``: the configured rules), with count, share, text and time as attributes.
- ``unique_id`` and the device block's identifier are stable per device, so Home Assistant keeps
  history and groups the entities under one device. ``default_entity_id`` (``<domain>.<slug>``,
  which replaced the deprecated ``object_id``) suggests the entity id.
- Field names come from the config, not from code: a field the status does not carry shows as
  unknown in Home Assistant; :func:`missing_fields` lets a test (or a check) catch that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from contract import wire as contract_wire
from edge.config import Config
from edge.publish import wire

#: units and classes Home Assistant understands, for the fields that have one
_KNOWN: dict[str, dict[str, str]] = {
    "free_disk_bytes": {"unit_of_measurement": "B", "device_class": "data_size"},
    "outbox_depth": {"unit_of_measurement": "messages", "state_class": "measurement"},
}
ONLINE = "online"  # the connectivity binary sensor's object id
ALERT = "alert"  # the alert event's object id
_AVAILABILITY: dict[str, str] = {
    "availability_template": "{{ 'online' if value_json.status.online else 'offline' }}",
    "payload_available": "online",
    "payload_not_available": "offline",
}


def object_id(field: str) -> str:
    """A status field as an object id (a topic level and part of entity ids)."""
    return field.replace(".", "_")


def _slug(text: str) -> str:
    """Entity ids allow lower-case letters, digits and '_' only."""
    return "".join(c if c.isalnum() else "_" for c in text.lower())


def value_template(field: str) -> str:
    return "{{ value_json.status." + field + " }}"


def _device_block(device: str, site: str, version: str) -> dict[str, Any]:
    return {
        "identifiers": [f"contactpoint_{device}"],
        "name": f"contactpoint {device}",
        "manufacturer": "contactpoint",
        "model": "contact point",
        "sw_version": version,
        "suggested_area": site,
    }


def _ids(domain: str, device: str, obj: str) -> dict[str, str]:
    return {
        "unique_id": f"contactpoint_{device}_{obj}",
        "default_entity_id": f"{domain}.contactpoint_{_slug(device)}_{_slug(obj)}",
    }


def sensor_config(
    *, device: str, site: str, field: str, version: str, status_topic: str
) -> dict[str, Any]:
    """The discovery payload of one sensor."""
    config: dict[str, Any] = {
        "name": field.replace(".", " ").replace("_", " "),
        **_ids("sensor", device, object_id(field)),
        "state_topic": status_topic,
        "value_template": value_template(field),
        "availability_topic": status_topic,
        **_AVAILABILITY,
        "device": _device_block(device, site, version),
    }
    config.update(_KNOWN.get(field, _kind_of(field)))
    return config


def connectivity_config(
    *, device: str, site: str, version: str, status_topic: str
) -> dict[str, Any]:
    """The binary sensor that shows whether the device is online (no availability of its own:
    offline is its state, not "unavailable")."""
    return {
        "name": "online",
        **_ids("binary_sensor", device, ONLINE),
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": status_topic,
        "value_template": "{{ 'ON' if value_json.status.online else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "device": _device_block(device, site, version),
    }


def alert_config(
    *,
    device: str,
    site: str,
    version: str,
    status_topic: str,
    alert_topic: str,
    rules: Sequence[str],
) -> dict[str, Any]:
    """The event entity of the device's alerts: one event type per alert rule."""
    attributes = "'count': a.count, 'share': a.share, 'text': a.text, 'at': a.at, 'scope': a.scope"
    return {
        "name": "alert",
        **_ids("event", device, ALERT),
        "state_topic": alert_topic,
        "event_types": list(rules),
        "value_template": "{% set a = value_json.alert %}"
        "{{ {'event_type': a.rule, " + attributes + "} | tojson }}",
        "availability_topic": status_topic,
        **_AVAILABILITY,
        "device": _device_block(device, site, version),
    }


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
    *,
    device: str,
    site: str,
    prefix: str,
    fields: Sequence[str],
    version: str,
    alert_rules: Sequence[str] = (),
) -> list[tuple[str, bytes]]:
    """(topic, payload) of every retained discovery config: the sensors, the connectivity
    binary sensor and (when there are alert rules) the alert event."""
    status_topic = wire.topic(site, device, contract_wire.STATUS)
    configs: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            object_id(field),
            sensor_config(
                device=device, site=site, field=field, version=version, status_topic=status_topic
            ),
        )
        for field in fields
    ]
    configs.append(
        (
            "binary_sensor",
            ONLINE,
            connectivity_config(
                device=device, site=site, version=version, status_topic=status_topic
            ),
        )
    )
    if alert_rules:
        alert = alert_config(
            device=device,
            site=site,
            version=version,
            status_topic=status_topic,
            alert_topic=wire.alert_topic(site, device),
            rules=alert_rules,
        )
        configs.append(("event", ALERT, alert))
    return [
        (wire.discovery_topic(prefix, component, device, obj), wire.encode_json(config))
        for component, obj, config in configs
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
        alert_rules=[rule.name for rule in cfg.alerts.rules],
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
