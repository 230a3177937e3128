"""The sink's configuration file (``--config`` of every ``contactpoint sink`` command): one TOML
file, a closed and typed schema on the same base as the device's (:mod:`contract.config`).

Rules:
- Tables: ``[sink]`` (the worker: broker, database, MQTT session, clip resends, retention; the
  keys are the :class:`~cloud_sink.consumer.SinkConfig` fields but ``data_dir``), ``[s3]``
  (object storage for clips: endpoint, region, keys, multipart sizes; :mod:`cloud_sink.objects`),
  ``[report]``
  (the metrics' parameters), ``[[alerts.rules]]`` (site alert rules, the contract's
  :class:`~contract.alerts.AlertRule`), ``[[alerts.compliance]]`` (compliance alert rules,
  :class:`~contract.alerts.ComplianceRule`), ``[speech]`` (transcription: engine, model directory,
  workers; :mod:`cloud_sink.speech.config`) and ``[[reasons]]`` (the managers' checklist). Every key
  is optional; command-line flags win over the file.
- Values are checked strictly by type (a string is not a number, 1 is not ``true``), against
  bounds, and unknown keys are refused with the nearest valid key; every problem names the
  file, the key, the value and the fix. The broker password is never shown in an error.
- :func:`example_sink_config` is the whole schema as a commented file with every default; it
  passes :func:`load_sink_file` (``contactpoint sink config example|check``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Meta, field

from cloud_sink.ingest import DEFAULT_LIMITS
from cloud_sink.reasons import DEFAULT_REASONS, Reason
from cloud_sink.speech.config import SpeechSection
from cloud_sink.wire import MAX_CHUNKS, MAX_CLIP_BYTES
from contract.alerts import NAME_PATTERN, AlertRule, ComplianceRule, duplicate_names
from contract.config import (
    SECRET,
    FieldError,
    Section,
    example,
    fields,
    read_toml,
    validate,
)

#: MQTT's limit of a session expiry interval (a 32-bit count of seconds)
MAX_SESSION_EXPIRY_S = 0xFFFF_FFFF


def group_problem(group: str | None, protocol: str) -> str | None:
    """Why workers cannot share a stream as ``group`` over MQTT ``protocol`` (None: they can;
    the config file's check and :class:`~cloud_sink.consumer.Sink` word the fix each)."""
    if group is None or protocol == "5":
        return None
    return f"with protocol {protocol}: a shared subscription needs MQTT 5"


class _Strict(Section):
    """A table whose values must have the schema's types as written (TOML is typed): msgspec
    converts strictly (an int is taken for a float, nothing else is converted)."""


class SinkSection(_Strict):
    broker: (
        Annotated[
            str,
            Meta(
                pattern=r"^(mqtt|mqtts|tcp|ssl)://\S+$",
                description="Broker URL: mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS (here or "
                "--broker)",
            ),
        ]
        | None
    ) = None
    db_url: (
        Annotated[
            str,
            Meta(
                max_length=4096,
                description="postgresql://USER@HOST:PORT/NAME; unset = SQLite in the data "
                "directory",
            ),
        ]
        | None
    ) = None
    group: (
        Annotated[
            str,
            Meta(
                pattern=NAME_PATTERN,
                description="MQTT 5 shared-subscription group, for N workers on one stream; unset "
                "= one worker with a plain subscription",
            ),
        ]
        | None
    ) = None
    client_id: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=256,
                description="MQTT client id; unset = contactpoint-sink[-GROUP], with a password "
                "also a tag derived from it (devices cannot guess it)",
            ),
        ]
        | None
    ) = None
    protocol: Annotated[Literal["5", "3.1.1"], Meta(description="MQTT protocol version")] = "5"
    username: Annotated[str, Meta(max_length=200, description="Broker user")] | None = None
    password: (
        Annotated[
            str,
            Meta(
                max_length=4096,
                extra=SECRET,
                description="Broker password; better kept out of this file: --password-file",
            ),
        ]
        | None
    ) = None
    tls: Annotated[bool, Meta(description="TLS to the broker (implied by mqtts://)")] = False
    ca_file: (
        Annotated[str, Meta(max_length=4096, description="CA certificate(s) to verify the broker")]
        | None
    ) = None
    cert_file: (
        Annotated[str, Meta(max_length=4096, description="Client certificate (TLS client auth)")]
        | None
    ) = None
    key_file: (
        Annotated[str, Meta(max_length=4096, description="Client private key (TLS client auth)")]
        | None
    ) = None
    keepalive_s: Annotated[int, Meta(ge=5, le=3600, description="Keep-alive interval (s)")] = 30
    session_expiry_s: Annotated[
        int,
        Meta(
            ge=0,
            le=MAX_SESSION_EXPIRY_S,
            description="How long the broker keeps the sink's session and queued messages "
            "while it is away (s)",
        ),
    ] = 7 * 24 * 3600
    resend_after_s: Annotated[
        float,
        Meta(
            gt=0,
            le=86400,
            description="A clip with chunks missing and quiet this long: ask the device to "
            "send them again (s)",
        ),
    ] = 60.0
    check_every_s: Annotated[
        float, Meta(gt=0, le=3600, description="How often incomplete clips are looked at (s)")
    ] = 10.0
    max_resend_requests: Annotated[
        int, Meta(ge=0, le=1000, description="Resend requests for one clip at most")
    ] = 10
    max_clip_bytes: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_CLIP_BYTES,
            description="Largest clip a device may announce (bytes); larger: dead letter "
            "too_large. A 15-minute 16 kHz WAV contact is ~29 MB: raise it with longer contacts",
        ),
    ] = DEFAULT_LIMITS.max_clip_bytes
    max_chunks: Annotated[
        int,
        Meta(
            ge=1,
            le=MAX_CHUNKS,
            description="Most chunks a clip may be sent in; more: dead letter too_large",
        ),
    ] = DEFAULT_LIMITS.max_chunks
    clip_expire_after_s: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=365 * 86400,
                description="A clip still incomplete this long after its first chunk is dropped "
                "(dead letter clip_expired; s); unset = never",
            ),
        ]
        | None
    ) = 24 * 3600.0
    max_ingest_attempts: Annotated[
        int,
        Meta(
            ge=1,
            le=1000,
            description="A message failing this often in a row (database or disk trouble "
            "that may pass) is dead-lettered (ingest_error)",
        ),
    ] = DEFAULT_LIMITS.max_attempts
    backoff_min_s: Annotated[
        float, Meta(gt=0, le=60, description="First reconnect delay (s), doubled each try")
    ] = 0.5
    backoff_max_s: Annotated[
        float, Meta(gt=0, le=3600, description="Longest reconnect delay (s)")
    ] = 30.0
    retention_audio_days: (
        Annotated[
            float,
            Meta(
                ge=0,
                le=36500,
                description="Delete clip audio this many days after its contact ended (personal "
                "data); unset = keep it",
            ),
        ]
        | None
    ) = None
    retention_interval_s: Annotated[
        float,
        Meta(gt=0, le=86400, description="How often 'sink run' enforces the retention (s)"),
    ] = 3600.0
    offline_after_s: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=30 * 86400,
                description="A device silent this long gets a device_offline site alert (as one "
                "whose last will fired; cleared when it is back; s); unset = only the last will",
            ),
        ]
        | None
    ) = 300.0
    batch_max_messages: Annotated[
        int,
        Meta(
            ge=1,
            le=100_000,
            description="Messages ingested in one transaction at most (each acked after its "
            "batch committed)",
        ),
    ] = 500
    batch_max_ms: Annotated[
        float,
        Meta(
            ge=0,
            le=60_000,
            description="How long a batch collects messages at most before it is committed (ms)",
        ),
    ] = 50.0
    temp_lease_s: Annotated[
        float,
        Meta(
            gt=0,
            le=7 * 86400,
            description="Another worker's temporary file untouched this long is abandoned and "
            "removed at start (s); longer than any one clip assembly takes",
        ),
    ] = 3600.0
    clips: (
        Annotated[
            str,
            Meta(
                pattern=r"^s3://\S+$",
                max_length=1024,
                description="Where verified clips are kept: unset = the data directory's clips/; "
                "s3://BUCKET/PREFIX = that bucket of an S3-compatible object storage (the [s3] "
                "table; here or --clips)",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        from cloud_sink.objects import parse_clips_url

        try:
            parse_clips_url(self.clips, "clips")
        except ValueError as exc:
            raise FieldError("clips", str(exc)) from None
        if (problem := group_problem(self.group, self.protocol)) is not None:
            raise FieldError("group", f'{problem}; set protocol = "5" or remove group (one worker)')


class S3Section(_Strict):
    """Object storage for clips (``sink.clips = "s3://..."``), read by ``sink run``, ``sink
    retention`` and ``sink serve``. An unset endpoint, region or key falls back to boto3's
    standard AWS environment (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID ...)."""

    endpoint_url: (
        Annotated[
            str,
            Meta(
                pattern=r"^https?://[^\s/]+(/\S*)?$",
                max_length=1024,
                description="S3 endpoint, e.g. 'http://127.0.0.1:8333' for a SeaweedFS of your "
                "own; unset = AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself",
            ),
        ]
        | None
    ) = None
    region: (
        Annotated[
            str,
            Meta(
                pattern=r"^[a-z0-9-]{1,64}$",
                description="Region, e.g. 'eu-central-1'; unset = AWS_REGION / AWS_DEFAULT_REGION",
            ),
        ]
        | None
    ) = None
    access_key_id: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=256,
                description="Access key id; unset = AWS_ACCESS_KEY_ID (or ~/.aws, an instance "
                "role)",
            ),
        ]
        | None
    ) = None
    secret_access_key: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=1024,
                extra=SECRET,
                description="Secret access key (with access_key_id); better kept out of this "
                "file: AWS_SECRET_ACCESS_KEY",
            ),
        ]
        | None
    ) = None
    addressing_style: Annotated[
        Literal["auto", "path", "virtual"],
        Meta(
            description="Bucket in the path (most self-hosted servers: SeaweedFS, Garage, "
            "Ceph) or in the host name (AWS)"
        ),
    ] = "auto"
    multipart_threshold_mb: Annotated[
        int,
        Meta(ge=5, le=5000, description="Clips larger than this are uploaded in parts (MiB)"),
    ] = 8
    multipart_chunk_mb: Annotated[
        int, Meta(ge=5, le=5000, description="Size of one part of a multipart upload (MiB)")
    ] = 8
    max_concurrency: Annotated[
        int, Meta(ge=1, le=64, description="Parts of one clip uploaded at once")
    ] = 4
    connect_timeout_s: Annotated[
        float, Meta(gt=0, le=300, description="Connecting to the storage gives up after (s)")
    ] = 5.0
    read_timeout_s: Annotated[
        float, Meta(gt=0, le=3600, description="A storage request waits for an answer (s)")
    ] = 60.0
    retry_min_s: Annotated[
        float,
        Meta(
            gt=0,
            le=3600,
            description="After a failed upload (the clip stays in the data directory), the "
            "next try waits this long, doubled each failure (s)",
        ),
    ] = 5.0
    retry_max_s: Annotated[
        float, Meta(gt=0, le=86400, description="Longest wait between upload tries (s)")
    ] = 300.0
    serve: Annotated[
        Literal["stream", "redirect"],
        Meta(
            description="How 'sink serve' hands out a clip kept in object storage: 'stream' "
            "it through the API (HTTP Range; the storage may stay private), or 'redirect' "
            "(307) to a presigned URL (the storage's endpoint must be reachable by the clients)",
        ),
    ] = "stream"
    presign_expiry_s: Annotated[
        int,
        Meta(ge=1, le=7 * 86400, description="How long a presigned clip URL is valid (s)"),
    ] = 300

    def __post_init__(self) -> None:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "s3.access_key_id and s3.secret_access_key go together: set both, or neither "
                "(then AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are used)"
            )
        if self.retry_max_s < self.retry_min_s:
            raise ValueError(
                f"s3.retry_max_s ({self.retry_max_s}) must be at least s3.retry_min_s "
                f"({self.retry_min_s})"
            )


class ReportSection(_Strict):
    correction_factor: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="Share of silent customers counted as dissatisfied (staff "
            "dissatisfaction, loyalty index); --correction-factor wins",
        ),
    ] = 0.5
    force_majeure_threshold: Annotated[
        float,
        Meta(
            ge=0,
            le=10,
            description="Force-majeure level above which a period's quality scores are not "
            "meaningful; --force-majeure-threshold wins",
        ),
    ] = 0.1
    timezone: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=100,
            description="IANA time zone of days, hours and bare times, e.g. 'Europe/Berlin'; "
            "--tz wins",
        ),
    ] = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FieldError(
                "timezone",
                "not an IANA time zone; use e.g. 'UTC', 'Europe/Berlin', 'Asia/Yekaterinburg'",
            ) from None


class ReasonEntry(_Strict):
    code: Annotated[
        str,
        Meta(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
            description="Code managers tick (sink annotate --reason CODE), e.g. 'long_wait'",
        ),
    ]
    label: Annotated[str, Meta(max_length=200, description="What it means; empty = the code")] = ""


def _default_reasons() -> list[ReasonEntry]:
    return [ReasonEntry(code=r.code, label=r.label) for r in DEFAULT_REASONS]


class SiteAlertsSection(Section):
    rules: Annotated[
        list[AlertRule],
        Meta(
            description="Site alert rules ([[alerts.rules]], as on the devices), evaluated by "
            "'sink run' over all devices of each site"
        ),
    ] = []
    compliance: Annotated[
        list[ComplianceRule],
        Meta(
            description="Compliance alert rules ([[alerts.compliance]]): raised while the share "
            "of contacts meeting a service standard is below a threshold, cleared when it "
            "recovers; evaluated by 'sink transcribe' and 'sink standards' as transcripts are "
            "checked, published by 'sink run'"
        ),
    ] = []

    def __post_init__(self) -> None:
        twice = duplicate_names([*self.rules, *self.compliance])
        if twice:
            raise ValueError(f"alert rule names must be unique: {', '.join(twice)}")


class SinkFile(Section):
    sink: SinkSection = SinkSection()
    s3: S3Section = S3Section()
    report: ReportSection = ReportSection()
    alerts: SiteAlertsSection = SiteAlertsSection()
    speech: SpeechSection = SpeechSection()
    reasons: Annotated[
        list[ReasonEntry],
        Meta(
            min_length=1,
            description="The checklist of reasons for dissatisfaction (sink annotate, sink "
            "reasons)",
        ),
    ] = field(default_factory=_default_reasons)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, reason in enumerate(self.reasons):
            if reason.code in seen:
                raise ValueError(f"reasons[{index}]: code {reason.code!r} appears twice")
            seen.add(reason.code)

    def checklist(self) -> list[Reason]:
        return [Reason(r.code, r.label or r.code) for r in self.reasons]


def read_sink_file(path: Path | None) -> tuple[SinkFile, dict[str, Any]]:
    """The sink's config file and its parsed TOML (None: every default, an empty document):
    the document tells which tables and keys the file sets (:func:`keys_set`)."""
    if path is None:
        return SinkFile(), {}
    raw = read_toml(path, "sink config")
    return validate(SinkFile, raw, str(path)), raw


def keys_set(section: Section, table: Any) -> dict[str, Any]:
    """The values of ``section`` for the keys its file's TOML ``table`` sets (a flag or a
    default applies to the others)."""
    if not isinstance(table, dict):
        return {}
    known = fields(type(section))
    return {key: getattr(section, known[key].name) for key in table if key in known}


def load_sink_file(path: Path | None) -> SinkFile:
    """The sink's config file (None: every default); a :class:`~contract.config.ConfigError`
    names the first problem."""
    return read_sink_file(path)[0]


def example_sink_config() -> str:
    """The whole schema as a commented file, every key at its default."""
    return example(
        SinkFile,
        [
            "contactpoint sink configuration (generated from the schema).",
            "Every key is optional: the value shown is the default; flags win over this file.",
        ],
    )
