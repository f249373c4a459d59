"""Raw text → typed, pseudonymised bronze rows; every rejected row keeps its reason.

Each ``validate_*`` function takes the raw frame (all strings, as declared in
``riskgraph.schemas.RAW_*``, plus ``dt``) and returns one frame with the typed bronze
columns plus ``_reasons`` (array of strings, empty when the row is good) and ``_record``
(the raw row as JSON with PII replaced by pseudonyms). ``split_valid`` then separates
kept rows from quarantine rows. Reasons read ``<check>:<column>``, e.g. ``bad_type:amount``.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph.landing import CORRUPT, FILE, LINE, MASK, record_json_for_mask
from riskgraph.pseudonym import NORMALISERS, hmac_column

REASONS = "_reasons"
RECORD = "_record"
EARTH_M_PER_DEG = 111_320.0


def require_columns(df: DataFrame, columns: list[str], what: str) -> None:
    """Fail early, naming the missing columns and listing what is present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; present: {df.columns}")


def _blank_to_null(c: str) -> Column:
    v = F.trim(F.col(c))
    return F.when(F.length(v) > 0, v)


def _check(cond: Column, reason: str) -> Column:
    return F.when(cond, F.lit(reason))


def _reasons(*checks: Column) -> Column:
    return F.filter(F.array(*checks), lambda x: x.isNotNull())


def _typed_number(c: str, dtype: str) -> tuple[Column, Column]:
    """(typed value, check that a non-blank text failed to parse). ``NaN``, ``Infinity``
    and overflowing texts such as ``1e400`` parse as doubles but are not amounts or
    coordinates: they are bad_type too (typed value null), never kept."""
    text = _blank_to_null(c)
    typed = text.cast(dtype)
    if dtype == "double":
        finite = ~F.isnan(typed) & (F.abs(typed) < F.lit(float("inf")))
        typed = F.when(finite, typed)
    return typed, _check(text.isNotNull() & typed.isNull(), f"bad_type:{c}")


def _typed_ts(c: str) -> tuple[Column, Column]:
    text = _blank_to_null(c)
    typed = text.cast("timestamp")
    return typed, _check(text.isNotNull() & typed.isNull(), f"bad_timestamp:{c}")


def with_landing_columns(raw: DataFrame) -> DataFrame:
    """Add the landing reader's columns (riskgraph/landing.py) a frame lacks, as nulls, so
    validators also take frames built by hand (tests, other readers)."""
    for c, t in ((CORRUPT, "string"), (MASK, "string"), (FILE, "string"), (LINE, "long")):
        if c not in raw.columns:
            raw = raw.withColumn(c, F.lit(None).cast(t))
    return raw


def safe_record(record: Column) -> Column:
    """The quarantine record: a structurally broken row's fields cannot be trusted to be in
    their columns (a phone may sit under ``employer``), so it shows only its masked shape
    and what was wrong; a well-formed row shows ``record``."""
    return F.when(F.col(CORRUPT).isNotNull(), record_json_for_mask(MASK, CORRUPT)).otherwise(record)


def structural_first(reasons: Column) -> Column:
    """A structurally broken row has one reason, its structural one (its columns are empty,
    so every field check would fail too and say nothing)."""
    return F.when(F.col(CORRUPT).isNotNull(), F.array(F.col(CORRUPT))).otherwise(reasons)


def _record_json(raw_columns: list[str], pii: dict[str, str], key: bytes) -> Column:
    """The raw row as JSON for the quarantine, PII columns replaced by their pseudonyms
    (a structurally broken row: its masked shape, see ``safe_record``)."""
    fields = []
    for c in raw_columns:
        if c in pii:
            fields.append(hmac_column(NORMALISERS[_pii_kind(c)](F.col(c)), key).alias(pii[c]))
        else:
            fields.append(F.col(c))
    return safe_record(F.to_json(F.struct(*fields)))


def _pii_kind(c: str) -> str:
    return {"email": "email", "phone": "phone", "full_name": "full_name", "national_id": "national_id"}[c]


def gps_cell(lat: Column, lon: Column, grid_m: float) -> Column:
    """Id of the ~grid_m square cell holding (lat, lon); longitude steps widen with latitude
    so cells stay roughly square."""
    dlat = grid_m / EARTH_M_PER_DEG
    lat_idx = F.floor(lat / dlat)
    dlon = F.lit(dlat) / F.greatest(F.cos(F.radians((lat_idx + 0.5) * dlat)), F.lit(1e-6))
    lon_idx = F.floor(lon / dlon)
    return F.when(lat.isNotNull() & lon.isNotNull(), F.concat_ws(":", lat_idx.cast("string"), lon_idx.cast("string")))


def _future(ts: Column, tolerance_minutes: int) -> Column:
    """A timestamp after the end of its landing day (+ tolerance) cannot be true yet."""
    day_end = F.to_timestamp(F.date_add(F.to_date(F.col(S.DT)), 1))
    return ts > day_end + F.expr(f"INTERVAL {int(tolerance_minutes)} MINUTES")


def _malformed() -> list[Column]:
    """The landing reader's structural reason (malformed_row, unbalanced_quote, bad_encoding,
    bad_header, not_text:*), null for a well-formed row."""
    return [F.col(CORRUPT)]


def validate_applications(raw: DataFrame, *, key: bytes, future_tolerance_minutes: int, gps_grid_m: float) -> DataFrame:
    """Needs RAW_APPLICATIONS columns + dt (+ optional _corrupt_record); adds BRONZE_APPLICATIONS
    columns, _reasons and _record."""
    raw_cols = [c.name for c in S.RAW_APPLICATIONS]
    require_columns(raw, raw_cols + [S.DT], "validate_applications")
    raw = with_landing_columns(raw)
    ts, ts_bad = _typed_ts("application_ts")
    amount, amount_bad = _typed_number("amount", "double")
    term, term_bad = _typed_number("term_months", "int")
    income, income_bad = _typed_number("declared_income", "double")
    lat, lat_bad = _typed_number("gps_lat", "double")
    lon, lon_bad = _typed_number("gps_lon", "double")
    app_id, applicant_id = _blank_to_null("application_id"), _blank_to_null("applicant_id")
    # (0, 0) is where a failed GPS fix lands ("null island"), not a place people apply from
    gps_bad = _check(
        (lat.isNull() != lon.isNull()) | (lat < -90) | (lat > 90) | (lon < -180) | (lon > 180) | ((lat == 0) & (lon == 0)),
        "bad_gps:gps_lat,gps_lon"
    )
    reasons = _reasons(
        *_malformed(),
        _check(app_id.isNull(), "null_key:application_id"),
        _check(applicant_id.isNull(), "null_key:applicant_id"),
        _check(_blank_to_null("application_ts").isNull(), "null_value:application_ts"),
        ts_bad,
        _check(_future(ts, future_tolerance_minutes), "future_ts:application_ts"),
        amount_bad,
        _check(amount <= 0, "bad_value:amount"),
        term_bad,
        _check((term < 1) | (term > 120), "bad_value:term_months"),
        income_bad,
        _check(income < 0, "bad_value:declared_income"),
        lat_bad,
        lon_bad,
        gps_bad,
    )
    return raw.select(
        app_id.alias("application_id"),
        applicant_id.alias("applicant_id"),
        ts.alias("application_ts"),
        F.lower(_blank_to_null("product")).alias("product"),
        amount.alias("amount"),
        term.alias("term_months"),
        F.lower(_blank_to_null("channel")).alias("channel"),
        income.alias("declared_income"),
        F.upper(_blank_to_null("employer")).alias("employer"),
        hmac_column(NORMALISERS["email"](F.col("email")), key).alias("email_key"),
        hmac_column(NORMALISERS["phone"](F.col("phone")), key).alias("phone_key"),
        _blank_to_null("device_id").alias("device_id"),
        _blank_to_null("ip").alias("ip"),
        lat.alias("gps_lat"),
        lon.alias("gps_lon"),
        gps_cell(lat, lon, gps_grid_m).alias("gps_cell"),
        _blank_to_null("referrer_code").alias("referrer_code"),
        F.col(S.DT),
        structural_first(reasons).alias(REASONS),
        F.col(FILE), F.col(LINE),
        _record_json(raw_cols, S.PII_COLUMNS["applications"], key).alias(RECORD),
    )


def validate_applicants(raw: DataFrame, *, key: bytes) -> DataFrame:
    """Needs RAW_APPLICANTS columns + dt; adds BRONZE_APPLICANTS columns, _reasons, _record."""
    raw_cols = [c.name for c in S.RAW_APPLICANTS]
    require_columns(raw, raw_cols + [S.DT], "validate_applicants")
    raw = with_landing_columns(raw)
    text = _blank_to_null("birth_date")
    birth = text.cast("date")
    applicant_id = _blank_to_null("applicant_id")
    reasons = _reasons(
        *_malformed(),
        _check(applicant_id.isNull(), "null_key:applicant_id"),
        _check(text.isNotNull() & birth.isNull(), "bad_timestamp:birth_date"),
        _check(birth > F.to_date(F.col(S.DT)), "future_ts:birth_date"),
    )
    return raw.select(
        applicant_id.alias("applicant_id"),
        hmac_column(NORMALISERS["national_id"](F.col("national_id")), key).alias("national_id_key"),
        hmac_column(NORMALISERS["full_name"](F.col("full_name")), key).alias("name_key"),
        hmac_column(NORMALISERS["surname"](F.col("full_name")), key).alias("surname_key"),
        F.year(birth).alias("birth_year"),
        F.upper(_blank_to_null("region")).alias("region"),
        F.col(S.DT),
        structural_first(reasons).alias(REASONS),
        F.col(FILE), F.col(LINE),
        _record_json(raw_cols, S.PII_COLUMNS["applicants"], key).alias(RECORD),
    )


def validate_outcomes(raw: DataFrame, *, future_tolerance_minutes: int) -> DataFrame:
    """Needs RAW_OUTCOMES columns + dt; adds BRONZE_OUTCOMES columns, _reasons, _record.
    Whether the application exists is checked by ``flag_orphans``."""
    raw_cols = [c.name for c in S.RAW_OUTCOMES]
    require_columns(raw, raw_cols + [S.DT], "validate_outcomes")
    raw = with_landing_columns(raw)
    ts, ts_bad = _typed_ts("known_ts")
    app_id = _blank_to_null("application_id")
    outcome = F.lower(_blank_to_null("outcome"))
    reasons = _reasons(
        *_malformed(),
        _check(app_id.isNull(), "null_key:application_id"),
        _check(outcome.isNull() | ~outcome.isin(*S.OUTCOMES), "bad_value:outcome"),
        _check(_blank_to_null("known_ts").isNull(), "null_value:known_ts"),
        ts_bad,
        _check(_future(ts, future_tolerance_minutes), "future_ts:known_ts"),
    )
    return raw.select(
        app_id.alias("application_id"),
        outcome.alias("outcome"),
        ts.alias("known_ts"),
        F.col(S.DT),
        structural_first(reasons).alias(REASONS),
        F.col(FILE), F.col(LINE),
        _record_json(raw_cols, {}, b"").alias(RECORD),
    )


def flag_duplicates(df: DataFrame, *, keys: list[str], order_by: list[str], existing_keys: DataFrame | None = None) -> DataFrame:
    """Among rows with no other reason, keep the first per ``keys`` (by ``order_by``, then
    the raw record for a deterministic tie-break); the rest get ``duplicate_id``. Rows whose
    key was already ingested in an earlier partition (``existing_keys``) get
    ``duplicate_id:already_ingested``."""
    require_columns(df, keys + order_by + [REASONS, RECORD], "flag_duplicates")
    ok = F.size(REASONS) == 0
    w = Window.partitionBy(*keys, ok).orderBy(*[F.col(c).asc_nulls_last() for c in order_by], F.col(RECORD))
    out = df.withColumn("_rn", F.when(ok, F.row_number().over(w)))
    dup = F.when(F.col("_rn") > 1, F.lit("duplicate_id:" + ",".join(keys)))
    if existing_keys is not None:
        seen = existing_keys.select(*keys).distinct().withColumn("_seen", F.lit(True))
        out = out.join(seen, on=keys, how="left")
        prior = F.when(ok & F.col("_seen"), F.lit("duplicate_id:already_ingested"))
        out = out.withColumn(REASONS, F.filter(F.array_union(F.col(REASONS), F.array(dup, prior)), lambda x: x.isNotNull()))
        return out.drop("_rn", "_seen")
    return out.withColumn(REASONS, F.filter(F.array_union(F.col(REASONS), F.array(dup)), lambda x: x.isNotNull())).drop("_rn")


def flag_orphans(outcomes: DataFrame, applications: DataFrame) -> DataFrame:
    """Outcomes whose application does not exist in bronze get ``orphan:application_id``;
    outcomes known before their application get ``bad_value:known_ts_before_application``.
    ``applications`` needs application_id, application_ts."""
    require_columns(applications, ["application_id", "application_ts"], "flag_orphans(applications)")
    apps = applications.select("application_id", F.col("application_ts").alias("_app_ts"))
    out = outcomes.join(apps, on="application_id", how="left")
    has_key = F.col("application_id").isNotNull()
    checks = F.array(
        F.when(has_key & F.col("_app_ts").isNull(), F.lit("orphan:application_id")),
        F.when(F.col("known_ts") < F.col("_app_ts"), F.lit("bad_value:known_ts_before_application")),
    )
    return out.withColumn(REASONS, F.filter(F.array_union(F.col(REASONS), checks), lambda x: x.isNotNull())).drop("_app_ts")


def split_valid(df: DataFrame, *, source: str, bronze_columns: list[str]) -> tuple[DataFrame, DataFrame]:
    """(kept rows with exactly ``bronze_columns``, quarantine rows in the QUARANTINE layout)."""
    require_columns(df, bronze_columns + [REASONS, RECORD], "split_valid")
    good = df.filter(F.size(REASONS) == 0).select(*bronze_columns)
    bad = df.filter(F.size(REASONS) > 0).select(
        F.lit(source).alias("source"),
        F.array_join(F.array_sort(F.array_distinct(REASONS)), ";").alias("reason"),
        F.col(RECORD).alias("record"),
        F.col(S.DT),
        (F.col(FILE) if FILE in df.columns else F.lit(None).cast("string")).alias("file"),
        (F.col(LINE) if LINE in df.columns else F.lit(None).cast("long")).alias("line"),
    )
    return good, bad


def union_all(frames: list[DataFrame]) -> DataFrame:
    return reduce(lambda a, b: a.unionByName(b), frames)
