"""The contract: code the device (``edge``) and the central sink (``cloud_sink``) must agree on.

What belongs here is what would otherwise be written twice, once on each side, and must never
drift apart: the wire (:mod:`contract.wire`: topics, message kinds, payload shapes, the schema
version and the limits), the alert-rule model and its one evaluation engine
(:mod:`contract.alerts`), the base of both configuration files (:mod:`contract.config`: the
closed section model, the TOML loader, the "did you mean" error wording, the commented
example), the explanation of TLS
failures of a broker link (:mod:`contract.tls`), the crash points of the fault suite
(:mod:`contract.crashpoint`), how both daemons talk to systemd (:mod:`contract.service`:
sd_notify, the journal) and what every ``contactpoint`` command agrees on (the user-error
type, a reader that stops early: :mod:`contract.cli`). Device-only or sink-only code does not
belong here.

Rules: ``contract`` imports nothing from ``edge``, ``cloud_sink``, ``hardware`` or
``provisioning`` (tests/test_layout.py checks it), and of third-party libraries only light ones
that both sides install (msgspec; ``tomlkit`` only in :mod:`contract.config`, imported when an
example is written; systemd-python only in :mod:`contract.service`, imported when used). This
package imports none of its modules: importing ``contract.crashpoint`` or ``contract.cli``
loads no msgspec.
"""
