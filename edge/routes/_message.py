"""What a route sends: the text of a contact or alert, its clip file and the link to it.

The queued payload is ``{"device", "site", "contact": <wire contact object>}`` or
``{"device", "site", "alert": <wire alert object>}`` (edge/routes/plan.py writes it), so the text
shows what the wire shows: tags, times, staff and video link when the contact has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.store import RouteRow

_EXT = {"wav": "wav", "flac": "flac", "opus": "ogg"}
MIME = {"wav": ("audio", "wav"), "flac": ("audio", "flac"), "opus": ("audio", "ogg")}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One row made ready to send."""

    row: RouteRow
    fields: dict[str, str]  # the template placeholders
    clip: Path | None  # the clip file on this device, if there is one and it exists
    clip_bytes: int
    codec: str
    clip_name: str  # file name to give the clip at the destination
    base_name: str  # stable name of this delivery's files (same on every retry)

    @property
    def kind(self) -> str:
        return self.row.kind

    @property
    def body(self) -> dict[str, Any]:
        value = self.row.payload.get(self.row.kind)
        return value if isinstance(value, dict) else {}

    def text(self, template: str, *, linked: bool) -> str:
        """The message: ``template`` filled in, or the built-in text. ``linked``: the clip is
        not attached, so the built-in text says where it is."""
        if template:
            return template.format_map(self.fields)
        f = self.fields
        if self.kind == "alert":
            lines = [f"[{f['site']}/{f['device']}] ALERT: {f['text']}"]
        else:
            lines = [
                f"[{f['site']}/{f['device']}] {f['tags'] or 'no tags'}",
                f"{f['start']} – {f['end']} ({f['duration_s']} s, {f['mode']}, "
                f"ended by {f['ended_by']})",
            ]
            if f["staff"]:
                lines.append(f"Staff: {f['staff']}")
            if f["video_url"]:
                lines.append(f"Video: {f['video_url']}")
            if linked:
                if f["clip_url"]:
                    lines.append(f"Clip: {f['clip_url']}")
                elif self.clip is not None:
                    lines.append(f"Clip: kept on the device ({self.clip.name})")
        lines.append(f"Delivery {f['delivery_id']}")
        return "\n".join(lines)


def compose(row: RouteRow, data_dir: Path, clip_url: str) -> Outgoing:
    """Gather what a route needs from a queued row (no I/O but looking at the clip file)."""
    payload = row.payload
    body = payload.get(row.kind)
    body = body if isinstance(body, dict) else {}
    device, site = str(payload.get("device", "")), str(payload.get("site", ""))
    clip_info = body.get("clip") if isinstance(body.get("clip"), dict) else None
    clip: Path | None = None
    clip_bytes, codec, rel = 0, "wav", ""
    if clip_info is not None:
        rel = str(clip_info.get("path", ""))
        codec = str(clip_info.get("codec", "wav"))
        candidate = (data_dir / rel).resolve()
        inside = candidate.is_relative_to(data_dir.resolve())
        if rel and inside and candidate.is_file():
            clip = candidate
            clip_bytes = candidate.stat().st_size
    ext = _EXT.get(codec, codec)
    start = str(body.get("start", body.get("at", "")))
    stamp = start[:19].replace("-", "").replace(":", "") or "item"
    base_name = f"{stamp}_{row.ref}"
    staff = body.get("staff")
    if isinstance(staff, dict):  # {"id": ..., "name": ...} or a plain string
        staff = staff.get("name") or staff.get("id")
    fields = {
        "device": device,
        "site": site,
        "kind": row.kind,
        "contact_id": str(body.get("id", row.ref)) if row.kind == "contact" else "",
        "tags": ", ".join(str(t) for t in body.get("tags", [])),
        "mode": str(body.get("mode", "")),
        "start": start,
        "end": str(body.get("end", "")),
        "duration_s": str(body.get("duration_s", "")),
        "ended_by": str(body.get("ended_by", "")),
        "staff": "" if staff is None else str(staff),
        "video_url": str(body.get("video_url") or ""),
        "clip_url": "",
        "delivery_id": row.delivery_id,
        "text": str(body.get("text", "")),
    }
    if clip_url and clip_info is not None:
        fields["clip_url"] = clip_url.format_map(
            {
                "site": site,
                "device": device,
                "contact_id": row.ref,
                "ext": ext,
                "path": rel,
                "sha256": str(clip_info.get("sha256", "")),
            }
        )
    return Outgoing(
        row=row,
        fields=fields,
        clip=clip,
        clip_bytes=clip_bytes,
        codec=codec,
        clip_name=f"{base_name}.{ext}",
        base_name=base_name,
    )
