"""Topology code packages signed by nimbus: a supervisor runs only code nimbus signed.

ZooKeeper ACLs keep strangers from writing topology code in the first place; the signature
is the second wall. Whoever manages to write ZooKeeper anyway (a root created with open ACLs,
a leaked digest) still cannot make a supervisor run code: only a holder of the cluster
secret can sign it. A signed package is the blob, then a 32-byte HMAC-SHA256 of it keyed by
a key derived from the cluster secret, then `MAGIC`. The signature trails the blob so that a
signed package is still a valid pickle (pickle ignores what follows its STOP opcode): tools
that only read what nimbus stored keep working, while whatever runs code verifies first and
runs only the blob it verified.

Without a secret the key is derived from a fixed, public string: such a cluster has no
security at all (see the README), and the signature only catches corrupt packages.
"""

from __future__ import annotations

import hashlib
import hmac

from topology.errors import SquallError

MAGIC = b"SQC1"
MAC_SIZE = 32
NO_SECRET = "squall-no-secret"


class CodeSignatureError(SquallError):
    """A code package that is unsigned, or not signed with this cluster's secret."""


def code_key(secret: str | None) -> bytes:
    """The signing key for code packages, derived from the cluster secret."""
    return hashlib.blake2b((secret or NO_SECRET).encode(), digest_size=32,
                           person=b"squall-code").digest()


def sign_code(blob: bytes, secret: str | None) -> bytes:
    """The signed package of `blob`."""
    mac = hmac.new(code_key(secret), blob, hashlib.sha256).digest()
    return blob + mac + MAGIC


def verify_code(signed: bytes, secret: str | None, what: str = "code package") -> bytes:
    """The blob inside a signed package; CodeSignatureError (naming `what`) unless it was
    signed with `secret`."""
    tail = MAC_SIZE + len(MAGIC)
    if len(signed) < tail or not signed.endswith(MAGIC):
        raise CodeSignatureError(f"{what} is not signed by nimbus; refusing to run it")
    blob, mac = signed[:-tail], signed[-tail:-len(MAGIC)]
    expected = hmac.new(code_key(secret), blob, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise CodeSignatureError(f"{what} is not signed with this cluster's secret; "
                                 "refusing to run it")
    return blob
