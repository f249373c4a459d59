"""The registry of link sources: every kind of vertex an application can link to, declared once.

A link source is one kind of node of the application graph (a device id, a phone, a room
seen behind selfies, a blacklist entry ...). Each declares:

* ``type``: the vertex prefix (``'device:…'``) and the name used everywhere in the config
  (``graph.sources``, ``graph.link_types``, ``graph.max_degree``) and in feature names;
* ``relationship``: the edge label (GraphFrames' ``relationship`` column);
* how it yields ``(application_id, ts, type, value)`` rows: from a column of bronze
  applications (``column``) or from a links table an upstream step writes (``table``, in the
  same long layout, see ``schemas.MEDIA_LINKS``);
* its super-node cap and whether it links gangs: configuration, ``graph.max_degree`` and
  ``graph.link_types`` (validated against this registry, so a type cannot be misspelt);
* its feature families (``features``): ``sharing`` = the per-type prior-sharing counts
  (``prior_apps_same_<type>``, windows, ``prior_bad_same_<type>``); ``similarity`` = the
  media features of ``features/similarity.py`` (cluster size, known-bad neighbours, nearest
  known-bad similarity); ``blacklist`` = blacklist-hit features.

Adding a kind of link = one entry here (plus, for a table source, the step that writes its
rows). Nothing else names the types: the graph, the gang detection, the feature catalog and
the config validation all read this registry. Pure data: no Spark import.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkSource:
    type: str
    relationship: str
    value: str  # what one value of the type is (docs and the feature catalog)
    column: str | None = None  # bronze/applications column holding the value
    table: str | None = None  # or: tables.<name> of a links table (application_id, ts, type, value, ...)
    features: tuple[str, ...] = ("sharing",)

    def __post_init__(self):
        if (self.column is None) == (self.table is None):
            raise ValueError(f"link source {self.type!r} needs exactly one of column / table")
        if ":" in self.type:
            raise ValueError(f"link source type {self.type!r} must not contain ':' (it prefixes vertex ids)")


# The table sources' rows come from the `link_media` step (features/similarity.py).
MEDIA_LINKS_TABLE = "MEDIA_LINKS"

_SOURCES = (
    LinkSource("device", "uses_device", "device id reported by the app", column="device_id"),
    LinkSource("phone", "has_phone", "keyed pseudonym of the phone number", column="phone_key"),
    LinkSource("ip", "from_ip", "IP address", column="ip"),
    LinkSource("gps", "at_gps", "GPS grid cell (ingest.gps_grid_m)", column="gps_cell"),
    LinkSource("email", "has_email", "keyed pseudonym of the e-mail address", column="email_key"),
    LinkSource("employer", "works_at", "employer name", column="employer"),
    LinkSource("referrer", "referred_by", "referral code", column="referrer_code"),
    # Media similarity: a value is an anchor media item; an application links to its own
    # items and to every *earlier* item of that modality above the calibrated threshold.
    LinkSource("background", "same_background", "a photo (media key) whose room this application's photos show",
               table=MEDIA_LINKS_TABLE, features=("similarity",)),
    LinkSource("voice", "same_voice", "a call (media key) whose voice this application's call carries",
               table=MEDIA_LINKS_TABLE, features=("similarity",)),
    LinkSource("text", "same_wording", "a loan-purpose text (media key) this application's text is a near copy of",
               table=MEDIA_LINKS_TABLE, features=("similarity",)),
    LinkSource("blacklist", "hits_blacklist", "a blacklist entry (id) the application matched before its time",
               table=MEDIA_LINKS_TABLE, features=("blacklist",)),
)

SOURCES: dict[str, LinkSource] = {s.type: s for s in _SOURCES}
COLUMN_SOURCES = tuple(s.type for s in _SOURCES if s.column is not None)
MEDIA_MODALITIES = ("background", "voice", "text")


def get(type_: str) -> LinkSource:
    try:
        return SOURCES[type_]
    except KeyError:
        raise ValueError(f"unknown link source {type_!r}; registered: {sorted(SOURCES)}") from None


def relationship(type_: str) -> str:
    return get(type_).relationship


def with_feature(types, family: str) -> tuple[str, ...]:
    """The types among ``types`` (in their order) that have the feature family ``family``."""
    return tuple(t for t in types if family in get(t).features)
