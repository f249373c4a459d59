"""Keyed pseudonyms for PII: HMAC-SHA256 computed inside Spark SQL.

The secret comes from the environment variable ``RISKGRAPH_PSEUDONYM_KEY`` (never from
conf or code). HMAC is built from Spark's native ``sha2`` so no Python UDF runs per row:
HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), RFC 2104.
"""
from __future__ import annotations

import hashlib
import hmac
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

KEY_VAR = "RISKGRAPH_PSEUDONYM_KEY"
_BLOCK = 64  # SHA-256 block size in bytes
PSEUDONYM_HEX_CHARS = 32  # 128 bits: collisions are negligible at any lender's scale


def pseudonym_key() -> bytes:
    key = os.environ.get(KEY_VAR)
    if not key:
        raise RuntimeError(
            f"{KEY_VAR} is not set. riskgraph pseudonymises phones, emails, names and ID numbers "
            f"with a keyed hash whose secret must come from the environment: export {KEY_VAR}=<secret> "
            "(`make run` creates a local one in .secrets/pseudonym.key)."
        )
    if len(key) < 16:
        raise RuntimeError(f"{KEY_VAR} is too short ({len(key)} chars); use at least 16 random characters")
    return key.encode()


def _pads(key: bytes) -> tuple[str, str]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    return ipad, opad


def hmac_column(value: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column (UTF-8), hex, truncated to 128 bits. Null stays null."""
    ipad, opad = _pads(key)
    inner = F.unhex(F.sha2(F.concat(F.unhex(F.lit(ipad)), F.encode(value, "UTF-8")), 256))
    outer = F.sha2(F.concat(F.unhex(F.lit(opad)), inner), 256)
    return F.when(value.isNull(), F.lit(None)).otherwise(F.substring(outer, 1, PSEUDONYM_HEX_CHARS))


def hmac_python(value: str, key: bytes) -> str:
    """The same pseudonym computed in Python (for look-ups by an investigator, and tests)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


# Normalisation before hashing, so formatting differences do not split one person in two.
def normalise_phone(c: Column) -> Column:
    digits = F.regexp_replace(c, r"[^0-9]", "")
    return F.when(F.length(digits) > 0, digits)


def normalise_email(c: Column) -> Column:
    e = F.lower(F.trim(c))
    return F.when(F.length(e) > 0, e)


def normalise_name(c: Column) -> Column:
    n = F.regexp_replace(F.upper(F.trim(c)), r"\s+", " ")
    return F.when(F.length(n) > 0, n)


def normalise_national_id(c: Column) -> Column:
    n = F.upper(F.regexp_replace(c, r"[^0-9A-Za-z]", ""))
    return F.when(F.length(n) > 0, n)


NORMALISERS = {
    "phone": normalise_phone,
    "email": normalise_email,
    "full_name": normalise_name,
    "national_id": normalise_national_id,
}
