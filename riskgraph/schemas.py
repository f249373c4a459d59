"""Every table's columns, declared once, each documented where it is declared.

Raw landing files arrive as CSV text (a bank's file drop): every raw column is read as a
string and typed by ``features.validation``, so a malformed value becomes a quarantine row
with a reason instead of a failed job or a silent null.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    FloatType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from riskgraph import link_sources as LS


@dataclass(frozen=True)
class Column:
    name: str
    dtype: object
    description: str
    nullable: bool = True

    def field(self) -> StructField:
        return StructField(self.name, self.dtype, self.nullable, metadata={"comment": self.description})


def struct(columns: list[Column]) -> StructType:
    return StructType([c.field() for c in columns])


# ---------------------------------------------------------------- partition columns
DT = "dt"  # landing date of a raw/bronze row, yyyy-MM-dd
RUN_DATE = "run_date"  # nightly run date that owns a derived row, yyyy-MM-dd

# ---------------------------------------------------------------- raw landing (text)
RAW_APPLICATIONS = [
    Column("application_id", StringType(), "unique id of the loan application"),
    Column("applicant_id", StringType(), "the lender's customer id of the applicant"),
    Column("application_ts", StringType(), "ISO-8601 UTC time the application was submitted"),
    Column("product", StringType(), "loan product: cash, consumer, sme"),
    Column("amount", StringType(), "requested amount"),
    Column("term_months", StringType(), "requested term in months"),
    Column("channel", StringType(), "app, web, agent"),
    Column("declared_income", StringType(), "declared monthly income"),
    Column("employer", StringType(), "declared employer name"),
    Column("email", StringType(), "applicant email (PII)"),
    Column("phone", StringType(), "applicant mobile phone (PII)"),
    Column("device_id", StringType(), "device fingerprint reported by the app SDK"),
    Column("ip", StringType(), "client IP address"),
    Column("gps_lat", StringType(), "latitude reported by the device"),
    Column("gps_lon", StringType(), "longitude reported by the device"),
    Column("referrer_code", StringType(), "referral / intermediary code, empty if none"),
]
RAW_APPLICANTS = [
    Column("applicant_id", StringType(), "the lender's customer id"),
    Column("full_name", StringType(), "full name (PII)"),
    Column("national_id", StringType(), "national ID number (PII)"),
    Column("birth_date", StringType(), "date of birth, yyyy-MM-dd"),
    Column("region", StringType(), "home region code"),
]
RAW_OUTCOMES = [
    Column("application_id", StringType(), "application the outcome belongs to"),
    Column("outcome", StringType(), "fraud_confirmed, default or good"),
    Column("known_ts", StringType(), "ISO-8601 UTC time the outcome became known"),
]
RAW_TABLES = {"applications": RAW_APPLICATIONS, "applicants": RAW_APPLICANTS, "outcomes": RAW_OUTCOMES}
OUTCOMES = ("fraud_confirmed", "default", "good")
BAD_OUTCOMES = ("fraud_confirmed", "default")

# ---------------------------------------------------------------- bronze (typed, pseudonymised)
BRONZE_APPLICATIONS = [
    Column("application_id", StringType(), "unique id of the loan application", False),
    Column("applicant_id", StringType(), "the lender's customer id", False),
    Column("application_ts", TimestampType(), "UTC time the application was submitted", False),
    Column("product", StringType(), "loan product"),
    Column("amount", DoubleType(), "requested amount (> 0)"),
    Column("term_months", IntegerType(), "requested term in months (1..120)"),
    Column("channel", StringType(), "app, web, agent"),
    Column("declared_income", DoubleType(), "declared monthly income (>= 0)"),
    Column("employer", StringType(), "declared employer name, trimmed and upper-cased"),
    Column("email_key", StringType(), "keyed pseudonym (HMAC-SHA256) of the lower-cased email"),
    Column("phone_key", StringType(), "keyed pseudonym (HMAC-SHA256) of the digits of the phone"),
    Column("device_id", StringType(), "device fingerprint"),
    Column("ip", StringType(), "client IP address"),
    Column("gps_lat", DoubleType(), "latitude in [-90, 90]"),
    Column("gps_lon", DoubleType(), "longitude in [-180, 180]"),
    Column("gps_cell", StringType(), "id of the ~ingest.gps_grid_m square grid cell holding the GPS point"),
    Column("referrer_code", StringType(), "referral / intermediary code, null if none"),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
]
BRONZE_APPLICANTS = [
    Column("applicant_id", StringType(), "the lender's customer id", False),
    Column("national_id_key", StringType(), "keyed pseudonym of the national ID number"),
    Column("name_key", StringType(), "keyed pseudonym of the normalised full name"),
    Column("surname_key", StringType(), "keyed pseudonym of the family name (the first word of the normalised full name): relationship inference's family cue"),
    Column("birth_year", IntegerType(), "year of birth (the full date is not kept)"),
    Column("region", StringType(), "home region code"),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
]
BRONZE_OUTCOMES = [
    Column("application_id", StringType(), "application the outcome belongs to", False),
    Column("outcome", StringType(), "fraud_confirmed, default or good", False),
    Column("known_ts", TimestampType(), "UTC time the outcome became known", False),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
]
BRONZE_TABLES = {
    "applications": BRONZE_APPLICATIONS,
    "applicants": BRONZE_APPLICANTS,
    "outcomes": BRONZE_OUTCOMES,
}
BRONZE_KEYS = {"applications": "application_id", "applicants": "applicant_id", "outcomes": "application_id"}
# Raw columns holding PII and the bronze pseudonym each becomes.
PII_COLUMNS = {
    "applications": {"email": "email_key", "phone": "phone_key"},
    "applicants": {"national_id": "national_id_key", "full_name": "name_key"},
    "outcomes": {},
}

QUARANTINE = [
    Column("source", StringType(), "raw table the row came from", False),
    Column("reason", StringType(), "why the row was rejected, e.g. null_key:application_id", False),
    Column("record", StringType(), "the raw row as JSON, with PII columns replaced by their pseudonyms; a structurally broken row (wrong field count, stray quote, bad bytes or header) only as its masked shape, never its values", False),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
    Column("file", StringType(), "the landing file the record came from (null for rows not read from a file)"),
    Column("line", LongType(), "the file's line where the record starts (1 is the header; null for a whole-file problem)"),
]

# ---------------------------------------------------------------- media (docs/media.md)
# Kinds of media item an application (or a blacklist entry) can carry, and the modality each
# is embedded as: photos are "background" media (the room behind the person matters), the
# verification call is "voice", the free-text loan purpose is "text".
MEDIA_KINDS = {"selfie": "background", "id_photo": "background", "premises": "background",
               "call": "voice", "purpose": "text"}
MODALITIES = ("background", "voice", "text")
BLACKLIST_KINDS = ("voice", "background", "device", "phone")
RAW_MEDIA_REFS = [
    Column("application_id", StringType(), "application the media item belongs to"),
    Column("kind", StringType(), "selfie, id_photo, premises, call or purpose"),
    Column("uri", StringType(), "where the file is: a local path or an object-store URI"),
]
RAW_BLACKLISTS = [
    Column("entry_id", StringType(), "the lender's id of the blacklist entry"),
    Column("kind", StringType(), "voice, background, device or phone"),
    Column("value", StringType(), "device id or phone number (PII) for device/phone entries, empty otherwise"),
    Column("uri", StringType(), "sample recording / photo for voice/background entries, empty otherwise"),
    Column("added_ts", StringType(), "ISO-8601 UTC time the entry was added"),
]
BRONZE_MEDIA = [
    Column("media_key", StringType(), "the media item's id: 'm:' + 32 hex digits of the content's SHA-256 (photos, recordings) or of (owner, kind, content) (texts, which strangers may write identically)", False),
    Column("application_id", StringType(), "application the item belongs to (null for a blacklist sample)"),
    Column("blacklist_entry_id", StringType(), "blacklist entry the item is the sample of (null for an application's item)"),
    Column("kind", StringType(), "selfie, id_photo, premises, call, purpose, or blacklist_voice / blacklist_background", False),
    Column("modality", StringType(), "background, voice or text: which embedding table the item goes to", False),
    Column("uri", StringType(), "where the file is", False),
    Column("size_bytes", LongType(), "file size in bytes", False),
    Column("content_sha256", StringType(), "SHA-256 of the file's bytes (hex)", False),
    Column("format", StringType(), "jpeg, png, wav or text", False),
    Column("width", IntegerType(), "image width in pixels (photos only)"),
    Column("height", IntegerType(), "image height in pixels (photos only)"),
    Column("duration_s", DoubleType(), "audio duration in seconds (calls only)"),
    Column("sample_rate", IntegerType(), "audio sample rate in Hz (calls only)"),
    Column("n_chars", IntegerType(), "characters of the decoded text (texts only)"),
    Column("item_ts", TimestampType(), "application time (application items) or added time (blacklist samples)", False),
    Column(DT, StringType(), "landing date of the reference row (partition)", False),
]
BRONZE_BLACKLISTS = [
    Column("entry_id", StringType(), "the lender's id of the blacklist entry", False),
    Column("kind", StringType(), "voice, background, device or phone", False),
    Column("value_key", StringType(), "device id (device entries) or keyed pseudonym of the phone's digits (phone entries, comparable with phone_key); null for media entries"),
    Column("media_key", StringType(), "media key of the sample (voice/background entries; see bronze/media)"),
    Column("added_ts", TimestampType(), "UTC time the entry was added: it counts only for applications after it", False),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
]
EMBEDDINGS = [
    Column("media_key", StringType(), "media item (bronze/media.media_key)", False),
    Column("application_id", StringType(), "application the item belongs to (null for a blacklist sample)"),
    Column("blacklist_entry_id", StringType(), "blacklist entry the item is the sample of"),
    Column("kind", StringType(), "media kind (selfie, id_photo, premises, call, purpose, blacklist_*)", False),
    Column("item_ts", TimestampType(), "application time / blacklist added time of the item", False),
    Column("model_id", StringType(), "embedding model, e.g. background-fused, voice-triplet-cnn, text-char-ngram-svd", False),
    Column("model_version", StringType(), "version of that model (weights/config digest or registry version): a new version re-embeds everything", False),
    Column("dim", IntegerType(), "vector length", False),
    Column("vector", ArrayType(FloatType(), False), "L2-normalised embedding (cosine = dot product)", False),
    Column(DT, StringType(), "landing date of the media item (partition)", False),
]

# ---------------------------------------------------------------- media links (link_media step)
MEDIA_LINKS = [
    Column("application_id", StringType(), "application", False),
    Column("ts", TimestampType(), "application time: when the link appeared", False),
    Column("type", StringType(), "link source: background, voice, text or blacklist (riskgraph/link_sources.py)", False),
    Column("value", StringType(), "the vertex: the anchor item's media key (similarity) or the blacklist entry id", False),
    Column("media_key", StringType(), "this application's item that matched (null for a device/phone blacklist hit)"),
    Column("kind", StringType(), "this application's item kind (selfie, id_photo, premises, call, purpose) or device/phone", False),
    Column("anchor_application_id", StringType(), "application of the anchor item (itself for its own item; null for a blacklist hit)"),
    Column("anchor_ts", TimestampType(), "anchor item's time, or the blacklist entry's added time; always before ts except for the own item", False),
    Column("similarity", DoubleType(), "cosine similarity to the anchor (1 for the own item and exact blacklist hits)", False),
    Column("is_hub", BooleanType(), "the item resembles earlier items of >= similarity.<modality>.hub_min_applicants distinct applicants inside hub_window_days, spread out: a median of more than hub_spread_km away or hub_age_days earlier (a chain's decor, a lobby, a stock phrase)", False),
    Column("links", BooleanType(), "the row is a graph link: not a hub item, not to a hub anchor, the two applications at most similarity.<modality>.max_link_km apart (without a GPS fix on a side: similarity at or above the stricter unknown-distance threshold) and, where set, the anchor at most similarity.<modality>.max_link_days earlier", False),
    Column("earlier_applicants", LongType(), "distinct other applicants with earlier similar items inside the hub window (what is_hub is decided on)", False),
    Column("earlier_median_km", DoubleType(), "median km between this application's GPS fix and those earlier similar items' (a room is in one place; a chain's decor is everywhere); null without them or without GPS"),
    Column("earlier_median_days", DoubleType(), "median days between this item and those earlier similar items (a lobby is visited all year; a gang fills its back office in one burst); null without them"),
    Column("blacklist_kind", StringType(), "voice, background, device or phone for a blacklist hit; null otherwise"),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]

# ---------------------------------------------------------------- money (docs/money.md)
# Sectors an account can belong to, as the payment rail reports the counterparty's category.
ACCOUNT_SECTORS = ("personal", "lender", "retail", "utilities", "employer", "payroll", "real_estate", "securities")
TRANSFER_CHANNELS = ("disbursement", "salary", "card", "direct_debit", "transfer")
RAW_TRANSFERS = [
    Column("transfer_id", StringType(), "the bank's id of the transfer"),
    Column("transfer_ts", StringType(), "ISO-8601 UTC time the money moved"),
    Column("from_account", StringType(), "paying account number (PII)"),
    Column("to_account", StringType(), "receiving account number (PII)"),
    Column("amount", StringType(), "amount moved, > 0, in the book's currency"),
    Column("channel", StringType(), "disbursement, salary, card, direct_debit or transfer"),
    Column("application_id", StringType(), "the loan application a disbursement pays out (empty for every other transfer)"),
    Column("from_sector", StringType(), "payer's sector as the payment rail reports it (ACCOUNT_SECTORS)"),
    Column("to_sector", StringType(), "payee's sector as the payment rail reports it (ACCOUNT_SECTORS)"),
]
BRONZE_TRANSFERS = [
    Column("transfer_id", StringType(), "the bank's id of the transfer", False),
    Column("transfer_ts", TimestampType(), "UTC time the money moved", False),
    Column("from_account_key", StringType(), "keyed pseudonym of the paying account number", False),
    Column("to_account_key", StringType(), "keyed pseudonym of the receiving account number", False),
    Column("amount", DoubleType(), "amount moved (> 0)", False),
    Column("channel", StringType(), "disbursement, salary, card, direct_debit or transfer", False),
    Column("application_id", StringType(), "the loan a disbursement pays out (null for every other transfer)"),
    Column("from_sector", StringType(), "payer's sector", False),
    Column("to_sector", StringType(), "payee's sector", False),
    Column(DT, StringType(), "landing date of the raw file (partition)", False),
]
# A hop of a money path or cycle (the fields are never null; declared nullable because
# Spark cannot prove it through the joins that build them).
_HOP = ArrayType(StructType([
    StructField("transfer_id", StringType()), StructField("from_account_key", StringType()),
    StructField("to_account_key", StringType()), StructField("transfer_ts", TimestampType()),
    StructField("amount", DoubleType()), StructField("to_sector", StringType())]))
LOAN_MONEY = [
    Column("application_id", StringType(), "the loan (its application)", False),
    Column("borrower_account_key", StringType(), "pseudonym of the account the loan was paid into", False),
    Column("disbursed_ts", TimestampType(), "when the loan was paid out", False),
    Column("disbursed_amount", DoubleType(), "amount paid out", False),
    Column("share_real_estate", DoubleType(), "share of the disbursement traced to real-estate developers by the run date (sum of the distinct last hops into the sector over every valid path, capped at 1); null: the sector is not in money.flagged_sectors, so money is not traced into it"),
    Column("share_securities", DoubleType(), "share of the disbursement traced to securities brokers by the run date (as share_real_estate; null: not a flagged sector)"),
    Column("share_flagged", DoubleType(), "share traced to any flagged sector (money.flagged_sectors), capped at 1", False),
    Column("hops_to_flagged", IntegerType(), "fewest hops after the disbursement to a flagged sector (null: none reached)"),
    Column("paths_traced", LongType(), "valid paths followed from the disbursement (after truncation), any end", False),
    Column("diverted", BooleanType(), "share_flagged >= money.diversion_share: the loan money went where the loan purpose does not allow", False),
    Column("borrower_cycles", LongType(), "temporal cycles (money_cycles of this run) through the borrower's account", False),
    Column("counterparties_in_other_diversions", LongType(), "accounts on this loan's flagged paths that are also on another loan's flagged path by the run date", False),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]
MONEY_PATHS = [
    Column("application_id", StringType(), "the loan whose money the path follows", False),
    Column("path_rank", IntegerType(), "1 = the path carrying the most money into a flagged sector (ties: fewer hops, then transfer ids)", False),
    Column("sector", StringType(), "flagged sector the path ends in", False),
    Column("n_hops", IntegerType(), "transfers after the disbursement", False),
    Column("hops", _HOP, "the path, hop by hop: transfer id, from, to (pseudonyms), time, amount, payee sector", False),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]
MONEY_CYCLES = [
    Column("cycle_id", StringType(), "'c:' + the first 16 hex digits of SHA-256 of the cycle's transfer ids: the same cycle has the same id in every run", False),
    Column("start_account_key", StringType(), "the account the money left first and came back to", False),
    Column("length", IntegerType(), "transfers in the cycle", False),
    Column("start_ts", TimestampType(), "time of its first transfer", False),
    Column("end_ts", TimestampType(), "time of its last transfer (the money is back)", False),
    Column("amount_out", DoubleType(), "amount of the first transfer", False),
    Column("amount_back", DoubleType(), "amount of the last transfer", False),
    Column("hops", _HOP, "the cycle, hop by hop", False),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]

# ---------------------------------------------------------------- shared neighbours (features/shared_neighbours.py)
RELATIONS = ("family", "flatmate", "colleague", "friend", "none")  # features/relationships.py
RELATIONSHIPS = [
    Column("application_id", StringType(), "the application", False),
    Column("partner_application_id", StringType(), "an earlier application of another applicant it shares a non-hub value with (graph/shared_neighbours)", False),
    Column("applicant_id", StringType(), "the application's applicant", False),
    Column("partner_applicant_id", StringType(), "the partner's applicant", False),
    Column("relation", StringType(), "inferred: family, flatmate, colleague, friend (one friends' referral code, nothing else) or none; a reason not to link, never an accusation", False),
    Column("evidence", ArrayType(StringType()), "the cues behind it, e.g. 'same IP', 'GPS 12 m apart', 'same family name'", False),
    Column("gps_distance_m", DoubleType(), "metres between the two applications' GPS fixes (null: a side sent none)"),
    Column("age_gap", IntegerType(), "years between the applicants' birth years (evidence only)"),
    Column("ip_applicants", LongType(), "applicants who had used the shared IP by the later application (a home serves few)"),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]
SHARED_NEIGHBOURS = [
    Column("application_id", StringType(), "the application", False),
    Column("application_ts", TimestampType(), "its time: everything in the row was known strictly before it", False),
    Column("partner_application_id", StringType(), "an earlier application of another applicant sharing at least one non-hub attribute value with it", False),
    Column("partner_ts", TimestampType(), "the partner's application time (< application_ts)", False),
    Column("shared_values", LongType(), "distinct attribute values the two share (values that were not hubs at application_ts: fewer than graph.max_degree earlier applications)", False),
    Column("shared_types", ArrayType(StringType()), "the types of those values, sorted (device, phone, ip, gps, email, employer, referrer)", False),
    Column("adamic_adar", DoubleType(), "sum over shared values of 1 / ln(applications linked to the value up to the application): a rare shared value weighs more", False),
    Column("partner_bad_known", BooleanType(), "the partner's bad outcome (fraud or default) was known before application_ts", False),
    Column(RUN_DATE, StringType(), "run date of the snapshot (partition)", False),
]

# ---------------------------------------------------------------- graph (GraphFrames layout)
VERTICES = [
    Column("id", StringType(), "vertex id '<type>:<value>', e.g. 'app:A000001', 'device:d-93ab'", False),
    Column("type", StringType(), "application or a link source type (riskgraph/link_sources.py: device, phone, ip, gps, email, employer, referrer, background, voice, text, blacklist)", False),
    Column("degree", LongType(), "applications linked to this vertex (1 for an application vertex)", False),
    Column("applicants", LongType(), "distinct applicants among those applications (attribute reuse: e.g. type = 'phone' and applicants >= 5; 1 for an application vertex)", False),
    Column("first_seen_ts", TimestampType(), "earliest application time touching this vertex", False),
    Column("last_seen_ts", TimestampType(), "latest application time touching this vertex by the run date", False),
    Column(RUN_DATE, StringType(), "run date of the graph snapshot (partition)", False),
]
EDGES = [
    Column("src", StringType(), "application vertex id", False),
    Column("dst", StringType(), "attribute vertex id", False),
    Column("relationship", StringType(), "edge label of the link source (riskgraph/link_sources.py): uses_device, has_phone, from_ip, ..., same_background, same_voice", False),
    Column("ts", TimestampType(), "time the link appeared: the application time", False),
    Column(RUN_DATE, StringType(), "run date of the graph snapshot (partition)", False),
]
RELATIONSHIP = {t: src.relationship for t, src in LS.SOURCES.items()}  # edge label per link source

# ---------------------------------------------------------------- gangs
GANG_MEMBERS = [
    Column("application_id", StringType(), "member application", False),
    Column("gang_id", StringType(), "deterministic gang id: 'g:' + the smallest application id of its community", False),
    Column("component_id", StringType(), "'c:' + the smallest application id of the connected component holding the gang", False),
    Column("method", StringType(), "how the component was cut: component (small, kept whole), leiden or lpa", False),
    Column(RUN_DATE, StringType(), "run date (partition)", False),
]
GANGS = [
    Column("gang_id", StringType(), "deterministic gang id", False),
    Column("component_id", StringType(), "connected component holding the gang (several gangs can share one)", False),
    Column("method", StringType(), "how the component was cut: component (small, kept whole), leiden or lpa", False),
    Column("size", LongType(), "member applications", False),
    Column("n_applicants", LongType(), "distinct applicants among the members", False),
    Column("n_bad_known", LongType(), "members with a bad outcome (fraud or default) known by the end of the run date", False),
    Column("bad_rate_known", DoubleType(), "n_bad_known / size", False),
    Column("first_ts", TimestampType(), "first member application time", False),
    Column("last_ts", TimestampType(), "last member application time", False),
    Column("age_days", DoubleType(), "days from the first member application to the end of the run date", False),
    Column("span_hours", DoubleType(), "hours from the first to the last member application", False),
    Column("apps_per_hour", DoubleType(), "burstiness: size / max(span_hours, 1)", False),
    Column("max_apps_24h", LongType(), "burstiness: the most member applications in any 24 hours", False),
    Column("n_pairs", LongType(), "linked member pairs (sharing a non-hub value inside the link window, or a GPS burst)", False),
    Column("density", DoubleType(), "n_pairs / (size * (size - 1) / 2)", False),
    Column("n_links", LongType(), "application-attribute links of the members (non-hub, linking types)", False),
    Column("n_shared_values", LongType(), "attribute values linking at least two members, used at most graph.link_window_days apart (attribute diversity)", False),
    Column("n_link_types", LongType(), "link types among the gang's linked pairs (attribute types and gps_burst; attribute diversity)", False),
    Column("link_types", StringType(), "the link types of the gang's linked pairs (attribute types, gps_burst), comma-separated, sorted", False),
    Column("evidence", StringType(), "JSON list of what links the members, most members first (top 20): each attribute value ('type:value') linking >= 2 members inside the link window with how many it links, and 'gps_burst' with the members in GPS bursts together", False),
    Column(RUN_DATE, StringType(), "run date (partition)", False),
]
SUPER_NODES = [
    Column("id", StringType(), "attribute vertex id", False),
    Column("type", StringType(), "attribute type", False),
    Column("degree", LongType(), "applications linked to it by the run date", False),
    Column("threshold", LongType(), "largest degree its type allows: min(graph.max_degree cap, max(min_degree, robust fence))", False),
    Column("robust_z", DoubleType(), "robust z-score of log(degree) against its type's shared values (null when the type's MAD is 0)"),
    Column("bound", StringType(), "which limit set the threshold: robust (the fence), cap (graph.max_degree) or floor (super_nodes.min_degree)", False),
    Column(RUN_DATE, StringType(), "run date (partition)", False),
]


# ---------------------------------------------------------------- feature store
@dataclass(frozen=True)
class FeatureSpec:
    """One feature-store column: the catalog entry rendered to docs/features.md."""

    name: str
    dtype: object
    description: str
    entity: str = "application"
    source_job: str = "assemble_features"
    as_of: str = "strictly before the application time"
    # Valid range of a numeric feature (inclusive; None = unbounded), checked by the
    # feature store's quality gate (features/quality_gates.py) before every commit.
    min_value: float | None = None
    max_value: float | None = None
    # Feature group for the KS ablation (jobs/evaluate.py): 'structured' (attribute sharing,
    # components, GPS bursts) or 'multimodal' (media similarity, blacklist hits, and components
    # whose links include media). Keys have no group.
    group: str = "structured"

    def valid_range(self) -> str:
        """The range the write-time quality gate enforces, e.g. '>= 0', '1..7', '' for none."""
        fmt = lambda v: f"{v:g}"  # noqa: E731
        if self.min_value is not None and self.max_value is not None:
            return f"{fmt(self.min_value)}..{fmt(self.max_value)}"
        if self.min_value is not None:
            return f">= {fmt(self.min_value)}"
        return f"<= {fmt(self.max_value)}" if self.max_value is not None else ""


def gps_burst_column(radius_m: float, hours: float) -> str:
    return f"prior_apps_within_{int(radius_m)}m_{int(hours)}h"


def reuse_column(min_applicants: int) -> str:
    """The feature counting an application's values already used by many other applicants."""
    return f"reuse_values_{int(min_applicants)}plus_applicants"


def _feature_specs(sharing_types: tuple[str, ...], windows_days: tuple[int, ...], burst_hours: int,
                   gps_burst: tuple[float, float], link_types: tuple[str, ...], shared_neighbours: tuple[str, ...] = (),
                   reuse_min_applicants: int = 5) -> list[FeatureSpec]:
    specs = [
        FeatureSpec("application_id", StringType(), "entity key: the application", as_of="key"),
        FeatureSpec("applicant_id", StringType(), "the applicant (join key for applicant-level data)", as_of="key"),
        FeatureSpec("as_of_ts", TimestampType(), "the application time; every feature uses only facts known strictly before it", as_of="key"),
        FeatureSpec("prior_apps_same_applicant", LongType(), "earlier applications by the same applicant", min_value=0),
    ]
    for t in sharing_types:
        specs.append(FeatureSpec(f"prior_apps_same_{t}", LongType(), f"earlier applications sharing this application's {t} value (0 if the value is missing)", min_value=0))
        for w in windows_days:
            specs.append(FeatureSpec(f"prior_apps_same_{t}_{w}d", LongType(), f"earlier applications sharing the {t} value within the last {w} days", min_value=0))
        specs.append(FeatureSpec(f"prior_bad_same_{t}", LongType(), f"earlier applications sharing the {t} value whose bad outcome (fraud or default) was known before the application time", min_value=0))
    r, h = gps_burst
    if shared_neighbours:
        src = "shared_neighbours (features/shared_neighbours.py)"
        specs += [
            FeatureSpec("sn_partners", LongType(), "earlier applications of other applicants sharing at least one attribute value with this one that was not a hub at its time (graph/shared_neighbours)", source_job=src, min_value=0, group="shared_neighbours"),
            FeatureSpec("sn_partners_2plus", LongType(), "of those, partners sharing two or more values (one shared value is often a colleague or a neighbour)", source_job=src, min_value=0, group="shared_neighbours"),
            FeatureSpec("sn_max_shared", LongType(), "most values shared with one earlier partner (0 without partners)", source_job=src, min_value=0, group="shared_neighbours"),
            FeatureSpec("sn_max_adamic_adar", DoubleType(), "highest Adamic-Adar score with one earlier partner: sum over shared values of 1/ln(applications linked to the value so far)", source_job=src, min_value=0, group="shared_neighbours"),
            FeatureSpec("sn_bad_partners", LongType(), "partners whose bad outcome was known before the application time", source_job=src, min_value=0, group="shared_neighbours"),
            FeatureSpec("sn_bad_partners_2plus", LongType(), "partners sharing two or more values whose bad outcome was known before the application time", source_job=src, min_value=0, group="shared_neighbours"),
        ]
        src = "assemble_features (features/network.py)"
        specs += [FeatureSpec(f"reuse_applicants_same_{t}", LongType(), f"distinct other applicants who had used this application's {t} value before its time (attribute reuse; the most over its values when it has several; 0 if the value is missing)", source_job=src, min_value=0, group="shared_neighbours")
                  for t in shared_neighbours]
        specs.append(FeatureSpec(reuse_column(reuse_min_applicants), LongType(), f"of this application's {', '.join(shared_neighbours)} values, those already used by {int(reuse_min_applicants)} or more other applicants before its time (features.reuse_min_applicants)", source_job=src, min_value=0, group="shared_neighbours"))
    specs.append(FeatureSpec(gps_burst_column(r, h), LongType(),
                             f"earlier applications whose GPS point lies within {int(r)} m of this one's and that came in the {int(h)} hours before it (GPS burst; 0 without GPS)",
                             source_job="assemble_features (features/gps_bursts.py)", min_value=0))
    specs += [
        # at most one per linking type
        FeatureSpec("pit_linked_attribute_types", LongType(), "linking attribute types (graph.link_types, not capped as super-nodes at that time) through which the application links to an earlier application used within graph.link_window_days",
                    min_value=0, max_value=len(link_types)),
        FeatureSpec("pit_component_size", LongType(), "size, including this application, of its connected component in the graph of linking attributes (graph.link_types) made of links known before its time, as gangs are built: a value links two uses at most graph.link_window_days apart, and super-node values stop linking once their prior degree reaches graph.max_degree",
                    min_value=1),
        FeatureSpec("pit_component_bad_known", LongType(), "component members whose bad outcome was known before the application time", min_value=0),
        FeatureSpec("pit_component_age_days", DoubleType(), "days since the component's first application (0 for a new component)", min_value=0),
        FeatureSpec(f"pit_component_apps_{burst_hours}h", LongType(), f"component members that applied in the {burst_hours} hours before the application (burstiness)", min_value=0),
        FeatureSpec(RUN_DATE, StringType(), "partition: the date of as_of_ts, i.e. the nightly run that owns the row", as_of="key"),
    ]
    return specs


def media_feature_specs(similarity_types: tuple[str, ...], blacklist: bool) -> list[FeatureSpec]:
    """The multimodal features (features/similarity.py): per media source, similarity to
    earlier applications' items and the point-in-time cluster; blacklist hits."""
    src = "assemble_features (features/similarity.py)"
    specs = []
    what = {"background": "photo backgrounds (same room)", "voice": "call voices (same speaker)", "text": "loan-purpose wording (near copy)"}
    for m in similarity_types:
        w = what.get(m, m)
        specs += [
            FeatureSpec(f"sim_{m}_prior_apps", LongType(), f"earlier applications whose {w} match this one's above the calibrated threshold (similarity.{m}) through a graph link: hub items, pairs farther apart than similarity.{m}.max_link_km (or without a GPS fix and below the stricter unknown-distance threshold) and anchors older than similarity.{m}.max_link_days, excluded", source_job=src, min_value=0, group="multimodal"),
            FeatureSpec(f"sim_{m}_prior_bad", LongType(), f"of those, applications whose bad outcome was known before the application time", source_job=src, min_value=0, group="multimodal"),
            FeatureSpec(f"sim_{m}_max_bad_similarity", DoubleType(), f"highest {m} similarity to an earlier application with a known bad outcome (0 if none)", source_job=src, min_value=0, max_value=1.0001, group="multimodal"),
            FeatureSpec(f"sim_{m}_is_hub", LongType(), f"1 if one of the application's {m} items resembles earlier items of many distinct applicants (similarity.{m}.hub_min_applicants) spread out in space or time (a chain's decor, a lobby, a stock phrase), else 0", source_job=src, min_value=0, max_value=1, group="multimodal"),
            FeatureSpec(f"pit_{m}_cluster_size", LongType(), f"size, including this application, of its {m} similarity cluster made of links known before its time (anchor items linked inside graph.link_window_days, hub items excluded)", source_job=src, min_value=1, group="multimodal"),
            FeatureSpec(f"pit_{m}_cluster_bad_known", LongType(), f"members of that cluster whose bad outcome was known before the application time", source_job=src, min_value=0, group="multimodal"),
        ]
    if blacklist:
        specs += [
            FeatureSpec("blacklist_hits", LongType(), "blacklist entries the application matched, each added before its time (voices and backgrounds by similarity, devices and phones exactly)", source_job=src, min_value=0, group="multimodal"),
            *[FeatureSpec(f"blacklist_{k}_hit", LongType(), f"1 if the application matched a {k} blacklist entry added before its time", source_job=src, min_value=0, max_value=1, group="multimodal") for k in BLACKLIST_KINDS],
            FeatureSpec("blacklist_max_similarity", DoubleType(), "best similarity of a blacklist hit (1 for an exact device/phone hit, 0 without a hit)", source_job=src, min_value=0, max_value=1.0001, group="multimodal"),
        ]
    return specs


def feature_specs(cfg) -> list[FeatureSpec]:
    """The feature table's catalog for a config (link sources, windows, burst hours)."""
    base = _feature_specs(LS.with_feature(cfg.graph.sources, "sharing"), tuple(cfg.features.windows_days), cfg.features.burst_hours,
                          (cfg.features.gps_burst_radius_m, cfg.features.gps_burst_hours), structured_link_types(cfg),
                          shared_neighbours=shared_neighbour_types(cfg), reuse_min_applicants=cfg.features.reuse_min_applicants)
    media = media_feature_specs(LS.with_feature(cfg.graph.sources, "similarity"), bool(LS.with_feature(cfg.graph.sources, "blacklist")))
    if set(cfg.graph.link_types) - set(structured_link_types(cfg)):  # gangs link on media too: the same components, media-aware
        src = "assemble_features (features/network.py)"
        media += [
            FeatureSpec("pit_mm_component_size", LongType(), "pit_component_size over every linking source (graph.link_types) including media similarity: what the gangs are built from", source_job=src, min_value=1, group="multimodal"),
            FeatureSpec("pit_mm_component_bad_known", LongType(), "members of that component whose bad outcome was known before the application time", source_job=src, min_value=0, group="multimodal"),
            FeatureSpec(f"pit_mm_component_apps_{cfg.features.burst_hours}h", LongType(), f"members of that component that applied in the {cfg.features.burst_hours} hours before the application (a gang's wave, seen through its intermediary's voice too)", source_job=src, min_value=0, group="multimodal"),
        ]
    return base[:-1] + media + base[-1:]  # run_date stays last


def shared_neighbour_types(cfg) -> tuple[str, ...]:
    """The link types shared neighbours are counted over: features.shared_neighbour_types that
    are among graph.sources (empty: the family is off)."""
    return tuple(t for t in cfg.features.shared_neighbour_types if t in cfg.graph.sources)


def structured_link_types(cfg) -> tuple[str, ...]:
    """graph.link_types without the media sources: what the structured pit_component_* use, so
    that the KS ablation's structured step is the same whatever media links."""
    return tuple(t for t in cfg.graph.link_types if LS.get(t).column is not None)


def render_catalog_markdown(cfg) -> str:
    """docs/features.md: the feature table's columns, from the one declaration above."""
    from riskgraph.tables import FEATURES

    lines = [
        "# Feature catalog: `application_network` feature table",
        "",
        "Generated from `riskgraph/schemas.py` by `riskgraph features doc > docs/features.md`; a test fails when this",
        "file and the code disagree. The same descriptions are stored as column comments in the Delta table's schema.",
        "",
        f"- table: `<paths.root>/{'/'.join(FEATURES.parts)}` (Delta), partitioned by `{FEATURES.partition_col}`",
        "- entity: one row per application, keyed by `application_id` and `as_of_ts` (the application time)",
        "- point in time: every feature uses only facts known strictly before `as_of_ts`; labels count from the time",
        "  they became known, links from the time they appeared",
        "",
        "| column | type | entity | source job | as of | valid range (quality gate) | group (KS ablation) | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sp in feature_specs(cfg):
        lines.append(f"| `{sp.name}` | {sp.dtype.simpleString()} | {sp.entity} | {sp.source_job} | {sp.as_of} | {sp.valid_range()} | {'' if sp.as_of == 'key' else sp.group} | {sp.description} |")
    from riskgraph import tables as T

    lines += ["", "# Gang tables (detect_gangs): an investigator's view as of the run date", "",
              "Not point in time per application: each run date's partition describes the gangs as known at the end",
              "of that date (the feature table's `pit_component_*` columns are the point-in-time view).", ""]
    for table, columns in ((T.GANGS, GANGS), (T.GANG_MEMBERS, GANG_MEMBERS), (T.SUPER_NODES, SUPER_NODES)):
        lines += [f"## `<paths.root>/{'/'.join(table.parts)}`: {table.description}", "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype.simpleString()} | {c.description} |" for c in columns]
        lines.append("")
    lines += ["# Post-loan money monitoring (trace_funds): NOT application-time credit features", "",
              "These columns use what happened **after** the loan was paid out (where its money went, cycles through",
              "the borrower's account), as of the run date. They are monitoring signals and investigation evidence;",
              "a model scored at application time must never use them (docs/money.md).", ""]
    for table, columns in ((T.LOAN_MONEY, LOAN_MONEY), (T.MONEY_PATHS, MONEY_PATHS), (T.MONEY_CYCLES, MONEY_CYCLES)):
        lines += [f"## `<paths.root>/{'/'.join(table.parts)}`: {table.description}", "", "| column | type | description |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype.simpleString()} | {c.description} |" for c in columns]
        lines.append("")
    return "\n".join(lines)


def feature_schema(cfg) -> StructType:
    return StructType(
        [StructField(s.name, s.dtype, s.as_of != "key", metadata={"comment": s.description}) for s in feature_specs(cfg)]
    )

