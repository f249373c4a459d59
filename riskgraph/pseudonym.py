"""Keyed pseudonyms for PII: HMAC-SHA256 (RFC 2104), truncated to 128 bits.

The secret comes from the environment variable ``RISKGRAPH_PSEUDONYM_KEY`` (never from
conf or code) and never enters a Spark plan (see :func:`hmac_column`).
"""
from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

KEY_VAR = "RISKGRAPH_PSEUDONYM_KEY"
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


def hmac_column(value: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column (UTF-8), hex, truncated to 128 bits. Null stays null.

    A vectorised (Arrow) Python UDF with the key in its closure: the key travels to the
    workers inside the serialised function, never as a literal in the query plan (a literal
    - even the XOR-ed HMAC pads, which give the key back - would show in ``explain()``,
    error messages, the Spark UI and the event log of a cluster's History Server)."""
    return _hmac_udf(key)(value)


def _hmac_udf(key: bytes):
    @F.pandas_udf("string")
    def pseudonym(values: pd.Series) -> pd.Series:
        base = hmac.new(key, digestmod=hashlib.sha256)  # the keyed state once per batch, copied per value

        def one(v):
            if v is None:
                return None
            h = base.copy()
            h.update(v.encode("utf-8"))
            return h.hexdigest()[:PSEUDONYM_HEX_CHARS]

        return pd.Series([one(v) for v in values], index=values.index, dtype=object)

    return pseudonym


def hmac_python(value: str, key: bytes) -> str:
    """The same pseudonym computed in Python (for look-ups by an investigator, and tests)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


# Normalisation before hashing, so formatting differences do not split one person in two.
# Decimal digits of other scripts that phones arrive in (full-width from East Asian input
# methods, Arabic-Indic, Extended Arabic-Indic, Devanagari, Bengali): mapped to ASCII before
# the non-digits are dropped, so "０７７００ ９００１２３" and "07700 900123" are one phone.
_DIGITS_FROM = "０１２３４５６７８９٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९০১২৩৪৫৬৭৮৯"
_DIGITS_TO = "0123456789" * 5


def normalise_phone(c: Column) -> Column:
    digits = F.regexp_replace(F.translate(c, _DIGITS_FROM, _DIGITS_TO), r"[^0-9]", "")
    return F.when(F.length(digits) > 0, digits)


def normalise_email(c: Column) -> Column:
    e = F.lower(F.trim(c))
    return F.when(F.length(e) > 0, e)


def normalise_name(c: Column) -> Column:
    n = F.regexp_replace(F.upper(F.trim(c)), r"\s+", " ")
    return F.when(F.length(n) > 0, n)


def normalise_surname(c: Column) -> Column:
    """The family name: the first word of the normalised full name (the lender's files write
    the family name first). Relationship inference compares its pseudonym; a family name alone
    identifies no one, and its keyed pseudonym cannot be reversed by a dictionary without the key."""
    return F.element_at(F.split(normalise_name(c), " "), 1)


def normalise_national_id(c: Column) -> Column:
    n = F.upper(F.regexp_replace(c, r"[^0-9A-Za-z]", ""))
    return F.when(F.length(n) > 0, n)


def normalise_account(c: Column) -> Column:
    """Account numbers (and IBANs): letters and digits only, upper case, so spaces and dashes
    in how a file writes a number do not split one account in two."""
    n = F.upper(F.regexp_replace(F.translate(c, _DIGITS_FROM, _DIGITS_TO), r"[^0-9A-Za-z]", ""))
    return F.when(F.length(n) > 0, n)


NORMALISERS = {
    "account": normalise_account,
    "phone": normalise_phone,
    "email": normalise_email,
    "full_name": normalise_name,
    "surname": normalise_surname,
    "national_id": normalise_national_id,
}
