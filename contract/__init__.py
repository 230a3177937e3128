"""The contract: code the device (``edge``) and the central sink (``cloud_sink``) must agree on.

What belongs here is what would otherwise be written twice, once on each side, and must never
drift apart: the alert-rule model and its one evaluation engine (:mod:`contract.alerts`), the
explanation of TLS failures of a broker link (:mod:`contract.tls`) and the crash points of the
fault suite (:mod:`contract.crashpoint`). Device-only or sink-only code does not belong here.

Rules: ``contract`` imports nothing from ``edge``, ``cloud_sink``, ``hardware`` or
``provisioning`` (tests/test_layout.py checks it), and only light dependencies (pydantic, the
standard library; ``cryptography`` only in :mod:`contract.tls`). This package imports none of
its modules: importing ``contract.crashpoint`` loads neither pydantic nor cryptography.
"""
