"""Raw transfer rows → typed, pseudonymised bronze/transfers rows; every rejected row keeps its reason.

Same contract as ``features.validation.validate_*``: the raw frame (RAW_TRANSFERS, all text,
plus ``dt`` and the landing reader's columns) in; the BRONZE_TRANSFERS columns plus
``_reasons`` and ``_record`` out, for ``validation.split_valid``. Account numbers are PII:
bronze holds only their keyed pseudonyms (``from_account_key`` / ``to_account_key``, letters
and digits normalised first) and so does the quarantine record.

Reasons, ``<check>:<column>``: the landing reader's structural ones (malformed_row, ...),
null_key:transfer_id, null_value:<column>, bad_timestamp:transfer_ts, future_ts:transfer_ts,
bad_type:amount, bad_value:amount (not > 0), bad_value:to_account (the same account on both
sides), unknown_channel:<value>, unknown_sector:<column>, null_value:application_id (a
disbursement must name its loan), bad_value:application_id (only a disbursement names a
loan); duplicates come from ``validation.flag_duplicates``.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph.features.validation import (
    RECORD,
    REASONS,
    _blank_to_null,
    _check,
    _future,
    _malformed,
    _reasons,
    _typed_number,
    _typed_ts,
    require_columns,
    safe_record,
    structural_first,
    with_landing_columns,
)
from riskgraph.landing import FILE, LINE
from riskgraph.pseudonym import NORMALISERS, hmac_column


def validate_transfers(raw: DataFrame, *, key: bytes, future_tolerance_minutes: int) -> DataFrame:
    raw_cols = [c.name for c in S.RAW_TRANSFERS]
    require_columns(raw, raw_cols + [S.DT], "validate_transfers")
    raw = with_landing_columns(raw)
    ts, ts_bad = _typed_ts("transfer_ts")
    amount, amount_bad = _typed_number("amount", "double")
    tid, app_id = _blank_to_null("transfer_id"), _blank_to_null("application_id")
    channel = F.lower(_blank_to_null("channel"))
    src, dst = NORMALISERS["account"](F.col("from_account")), NORMALISERS["account"](F.col("to_account"))
    src_key, dst_key = hmac_column(src, key), hmac_column(dst, key)
    sectors = {c: F.lower(_blank_to_null(c)) for c in ("from_sector", "to_sector")}
    reasons = _reasons(
        *_malformed(),
        _check(tid.isNull(), "null_key:transfer_id"),
        _check(_blank_to_null("transfer_ts").isNull(), "null_value:transfer_ts"),
        ts_bad,
        _check(_future(ts, future_tolerance_minutes), "future_ts:transfer_ts"),
        _check(src.isNull(), "null_value:from_account"),
        _check(dst.isNull(), "null_value:to_account"),
        _check(src.isNotNull() & (src == dst), "bad_value:to_account"),
        _check(_blank_to_null("amount").isNull(), "null_value:amount"),
        amount_bad,
        _check(amount <= 0, "bad_value:amount"),
        _check(channel.isNull(), "null_value:channel"),
        F.when(channel.isNotNull() & ~channel.isin(*S.TRANSFER_CHANNELS), F.concat(F.lit("unknown_channel:"), channel)),
        *[_check(v.isNull(), f"null_value:{c}") for c, v in sectors.items()],
        *[_check(v.isNotNull() & ~v.isin(*S.ACCOUNT_SECTORS), f"unknown_sector:{c}") for c, v in sectors.items()],
        _check((channel == "disbursement") & app_id.isNull(), "null_value:application_id"),
        _check((channel != "disbursement") & app_id.isNotNull(), "bad_value:application_id"),
    )
    record = safe_record(F.to_json(F.struct(
        F.col("transfer_id"), F.col("transfer_ts"), src_key.alias("from_account_key"), dst_key.alias("to_account_key"),
        F.col("amount"), F.col("channel"), F.col("application_id"), F.col("from_sector"), F.col("to_sector"))))
    return raw.select(
        tid.alias("transfer_id"), ts.alias("transfer_ts"), src_key.alias("from_account_key"), dst_key.alias("to_account_key"),
        amount.alias("amount"), channel.alias("channel"), app_id.alias("application_id"),
        sectors["from_sector"].alias("from_sector"), sectors["to_sector"].alias("to_sector"), F.col(S.DT),
        structural_first(reasons).alias(REASONS), record.alias(RECORD), F.col(FILE), F.col(LINE),
    )
