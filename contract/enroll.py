"""Enrollment by claim: the topics and the sealed reply, shared by the device (edge/enroll.py)
and the enrollment service (provisioning/enroll.py).

A device that has a claim token and no credentials connects with the fleet's claim account
(:data:`CLAIM_USER`; not a secret: its ACL only lets it publish ``<ROOT>/<id>/request`` and
subscribe to one ``<ROOT>/<id>/reply`` it names, never with a wildcard) with a random client id
(:data:`CLIENT_ID_PREFIX` + 96 random bits, told to nobody else) and sends its identity, the
token and an X25519 public key. (mosquitto 2.0's dynamic-security plugin has no
``%c`` in ACLs, so the ACL cannot tie the topic to the client id; an unguessable id plus the
sealing does.)
The credentials come back sealed to that key and bound to the client id (edge/sealing.py), so
only the holder of the private key reads them, whoever else sees the message.
"""

from __future__ import annotations

from typing import Final

ROOT: Final = "contactpoint/enroll/v1"
CLAIM_USER: Final = "claim"
# the claim account is public by design; what counts is the token in the request
CLAIM_PASSWORD: Final = "claim"  # noqa: S105
CLIENT_ID_PREFIX: Final = "claim-"


def request_topic(client_id: str) -> str:
    return f"{ROOT}/{client_id}/request"


def reply_topic(client_id: str) -> str:
    return f"{ROOT}/{client_id}/reply"
