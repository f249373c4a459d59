"""Media similarity as graph links, point in time: "same room", "same voice", "same wording".

From a modality's embeddings and their nearest neighbours (``features/vector_search.py``):

* **Threshold, calibrated without labels.** A pair of items of two different applicants is
  almost always two different rooms / voices / texts, so the similarity distribution of
  random cross-applicant pairs is the impostor distribution; the threshold is its
  ``1 - false_match_rate`` quantile (the biometric "FMR" operating point, e.g. ISO/IEC
  19795-1). It is computed on a bounded sample of items from the calibration period (before
  ``evaluate.train_until``: never the test months) and recorded in the run record. Pairs of
  identical vectors (the same text written by strangers) are left out of the calibration:
  identical content is a hub question (below), not a threshold question.
* **Point in time.** An application's item links to an *earlier* item (strictly earlier
  time, another application) whose similarity is at or above the threshold. The search is
  symmetric (a pair is kept when either side found the other among its k nearest), then
  oriented from the later item to the earlier one: the link exists from the later time on.
* **Anchors as vertices.** A link's value is the earlier item's media key (its *anchor*);
  each item is also the anchor of itself. Two applications whose photos show the room of one
  anchor photo share that vertex, so the graph's machinery (pairs inside the link window,
  components, communities, the point-in-time sweep) applies unchanged, and the sweep's
  components of anchors are exactly the similarity clusters known at each time.
* **Hubs, point in time.** A chain-store interior that strangers photograph all year, an
  honest phrase everybody writes: an item similar to earlier items of at least
  ``hub_min_applicants`` distinct applicants within ``hub_window_days`` -- spread out: taken a
  median of more than ``hub_spread_km`` away from it, or more than ``hub_age_days`` before it --
  is a hub item and links nobody (it is kept in the table, flagged, for the analyst and the hub
  report), the rule of an attribute value whose prior degree reached its cap. The spread is what
  tells a chain's decor (the same in every city) or a lobby people pass through all year from an
  intermediary's back office, which a whole gang of one town fills in one burst.

Blacklist hits are the same search against the blacklist samples (voices, backgrounds) plus
exact matches of devices and phones, each counted only after the entry was added.
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from riskgraph.features.geo import haversine_m
from riskgraph.features.validation import require_columns

DAY_US = 86_400 * 1_000_000
IDENTICAL = 1.0 - 1e-6  # cosine of two L2-normalised float32 copies of one vector


def calibrate_threshold(vectors: np.ndarray, owners: np.ndarray, *, false_match_rate: float) -> dict:
    """The similarity threshold at ``false_match_rate`` of random cross-owner pairs.

    ``vectors``: n × d L2-normalised sample (bounded by the caller); ``owners``: n applicant
    ids (pairs of one owner are skipped: a person's own selfie and ID photo share a room).
    Every cross-owner pair of the sample is scored (n ≤ a few thousand: n²/2 dot products).
    Returns threshold, n_items, n_pairs, n_identical (pairs of identical vectors left out)
    and the rate's expected false links per item against the sample (a sanity number).
    """
    v = np.asarray(vectors, dtype=np.float32)
    o = np.asarray(owners)
    n = len(v)
    if n < 50:
        raise ValueError(f"calibration needs at least 50 items of distinct applicants, got {n}")
    if not 0 < false_match_rate < 0.5:
        raise ValueError(f"false_match_rate must be in (0, 0.5), got {false_match_rate}")
    scores = []
    identical = 0
    for i in range(0, n, 512):  # blocks of rows: memory n * 512 floats at a time
        s = v[i:i + 512] @ v.T
        rows = np.arange(i, min(i + 512, n))[:, None]
        keep = (np.arange(n)[None, :] > rows) & (o[i:i + 512][:, None] != o[None, :])
        block = s[keep]
        identical += int((block >= IDENTICAL).sum())
        scores.append(block[block < IDENTICAL])
    s = np.concatenate(scores)
    if len(s) * false_match_rate < 5:
        raise ValueError(f"{len(s)} calibration pairs cannot estimate a false-match rate of {false_match_rate}: "
                         f"sample more items or raise the rate")
    threshold = float(np.quantile(s, 1.0 - false_match_rate, method="higher"))
    return {"threshold": round(threshold, 6), "n_items": int(n), "n_pairs": int(len(s)), "n_identical": identical,
            "false_match_rate": false_match_rate}


def operating_points(vectors: np.ndarray, labels: np.ndarray, false_match_rates=(1e-3, 1e-4, 1e-5)) -> list[dict]:
    """A model's operating points on *labelled* development data (a model card's numbers): per
    false-match rate, the threshold at that rate of pairs of different labels (places,
    speakers; :func:`calibrate_threshold` with the labels as owners) and the true-match rate,
    the share of same-label pairs at or above it. Rates the sample cannot estimate (fewer than
    5 pairs in the tail) are left out. ``vectors`` n × d L2-normalised, n ≤ a few thousand."""
    v = np.asarray(vectors, dtype=np.float32)
    lab = np.asarray(labels)
    iu = np.triu_indices(len(lab), 1)
    same = lab[iu[0]] == lab[iu[1]]
    genuine = (v[iu[0][same]] * v[iu[1][same]]).sum(1)
    out = []
    for f in false_match_rates:
        try:
            cal = calibrate_threshold(v, lab, false_match_rate=f)
        except ValueError:
            continue
        out.append({"false_match_rate": f, "threshold": cal["threshold"],
                    "true_match_rate": round(float((genuine >= cal["threshold"]).mean()), 4) if len(genuine) else None,
                    "impostor_pairs": cal["n_pairs"], "genuine_pairs": int(same.sum())})
    return out


def linked_pairs(neighbours: DataFrame, items: DataFrame, *, threshold: float) -> DataFrame:
    """Oriented similarity links: media_key (the later item), anchor_key (the earlier one),
    similarity, for pairs at or above ``threshold`` of two different applications with
    strictly ordered times; found by either side's search, counted once (max score).

    Needs neighbours(query_key, neighbour_key, score) and items(media_key, application_id,
    item_ts) — the application items only (blacklist samples are not anchors)."""
    require_columns(neighbours, ["query_key", "neighbour_key", "score"], "linked_pairs(neighbours)")
    require_columns(items, ["media_key", "application_id", "item_ts"], "linked_pairs(items)")
    hits = neighbours.filter(F.col("score") >= F.lit(float(threshold)))
    both = hits.select(F.col("query_key").alias("a"), F.col("neighbour_key").alias("b"), "score").unionByName(
        hits.select(F.col("neighbour_key").alias("a"), F.col("query_key").alias("b"), "score"))
    ia = items.select(F.col("media_key").alias("a"), F.col("application_id").alias("app_a"), F.col("item_ts").alias("ts_a"))
    ib = items.select(F.col("media_key").alias("b"), F.col("application_id").alias("app_b"), F.col("item_ts").alias("ts_b"))
    # a is the later item: each unordered pair appears once with a later than b (strict times)
    return (
        both.join(ia, "a").join(ib, "b")
        .filter((F.col("app_a") != F.col("app_b")) & (F.col("ts_a") > F.col("ts_b")))
        .groupBy(F.col("a").alias("media_key"), F.col("b").alias("anchor_key"))
        .agg(F.max("score").cast("double").alias("similarity"))
    )


def media_links(items: DataFrame, pairs: DataFrame, *, modality: str, hub_min_applicants: int,
                hub_window_days: float, hub_spread_km: float | None = None, hub_age_days: float | None = None,
                max_link_km: float | None = None, unknown_distance_threshold: float | None = None,
                max_link_days: float | None = None) -> DataFrame:
    """The links table's rows of one modality (``schemas.MEDIA_LINKS`` without run_date).

    For every application item: one row with its own key as anchor (similarity 1), and one per
    earlier anchor from ``pairs``. ``is_hub``: the item is similar to earlier items of at least
    ``hub_min_applicants`` distinct applicants within ``hub_window_days`` before it (a popular
    place, a stock phrase) and -- when ``hub_spread_km`` or ``hub_age_days`` is set -- those
    items are spread out: taken a median of more than ``hub_spread_km`` away (distance between
    the applications' GPS fixes; a chain's decor, a stock phrase or a recorded prompt turns up
    across the country), or a median of more than ``hub_age_days`` earlier (a bank lobby, an
    office, a shop that people pass through all year). An intermediary's back office is
    neither: a gang of one town fills it in one burst. Without either setting the count alone
    decides; where no distance is known (no GPS fixes) the age decides, or the count alone when
    ``hub_age_days`` is not set. ``links``: not ``is_hub`` (a hub item links nobody, nor does it serve as an
    anchor for later items) and, with ``max_link_km``, the two applications' GPS fixes are at
    most that far apart. A look-alike between two random applications is typically a thousand km
    away, while a gang's members apply near their intermediary, so nearness is evidence too:
    where a side sent no fix, the pair must instead reach ``unknown_distance_threshold`` (a stricter
    operating point; None: kept at the threshold the pairs passed). With ``max_link_days`` the
    anchor must also be at most that many days earlier: a gang photographs its members in its
    intermediary's room within days of each other, while family at home, colleagues at the office
    and visitors to a bank lobby come months apart. A row that is no link stays, as evidence, with
    ``links`` false.

    Needs items(media_key, application_id, applicant_id, kind, item_ts; gps_lat, gps_lon with
    ``hub_spread_km`` or ``max_link_km``) and pairs(media_key, anchor_key, similarity) from
    :func:`linked_pairs`.
    """
    use_gps = hub_spread_km is not None or max_link_km is not None
    need = ["media_key", "application_id", "applicant_id", "kind", "item_ts"] + (["gps_lat", "gps_lon"] if use_gps else [])
    require_columns(items, need, "media_links(items)")
    require_columns(pairs, ["media_key", "anchor_key", "similarity"], "media_links(pairs)")
    gps = [F.col("gps_lat"), F.col("gps_lon")] if use_gps else [
        F.lit(None).cast("double").alias("gps_lat"), F.lit(None).cast("double").alias("gps_lon")]
    it = items.select("media_key", "application_id", "applicant_id", "kind", "item_ts", *gps)
    anchors = it.select(F.col("media_key").alias("anchor_key"), F.col("application_id").alias("anchor_application_id"),
                        F.col("applicant_id").alias("anchor_applicant_id"), F.col("item_ts").alias("anchor_ts"),
                        F.col("gps_lat").alias("anchor_lat"), F.col("gps_lon").alias("anchor_lon"))
    to_earlier = pairs.join(it, "media_key").join(anchors, "anchor_key")
    window_us = int(hub_window_days * DAY_US)
    in_window = F.unix_micros("item_ts") - F.unix_micros("anchor_ts") <= window_us
    km = haversine_m(F.col("gps_lat"), F.col("gps_lon"), F.col("anchor_lat"), F.col("anchor_lon")) / 1000.0
    # one vote per earlier applicant (its nearest item), so three photos of one room by one
    # applicant count once, like the count itself
    per_applicant = (
        to_earlier.filter(in_window & (F.col("anchor_applicant_id") != F.col("applicant_id")))
        .groupBy("media_key", "anchor_applicant_id").agg(F.min(km).alias("_km"), F.min(
            (F.unix_micros("item_ts") - F.unix_micros("anchor_ts")) / DAY_US).alias("_days"))
    )
    crowd = per_applicant.groupBy("media_key").agg(
        F.count("*").alias("_crowd"),
        F.median("_km").alias("_spread_km"),  # exact median; nulls (no GPS) skipped
        F.median("_days").alias("_age_days"))
    cols = ["media_key", "application_id", "applicant_id", "kind", "item_ts", "anchor_key", "anchor_application_id",
            "anchor_applicant_id", "anchor_ts", "similarity"]
    own = it.select("media_key", "application_id", "applicant_id", "kind", "item_ts",
                    F.col("media_key").alias("anchor_key"), F.col("application_id").alias("anchor_application_id"),
                    F.col("applicant_id").alias("anchor_applicant_id"), F.col("item_ts").alias("anchor_ts"),
                    F.lit(1.0).alias("similarity"), F.lit(0.0).alias("_km"))
    rows = to_earlier.select(*cols, km.alias("_km")).unionByName(own).join(crowd, "media_key", "left")
    if max_link_km is None:
        near = F.lit(True)
    else:
        unknown_ok = F.lit(True) if unknown_distance_threshold is None else F.col("similarity") >= F.lit(float(unknown_distance_threshold))
        near = F.when(F.col("_km").isNull(), unknown_ok).otherwise(F.col("_km") <= float(max_link_km))
    if max_link_days is not None:  # the own row (anchor = the item itself) is 0 days old
        near = near & (F.unix_micros("item_ts") - F.unix_micros("anchor_ts") <= int(max_link_days * DAY_US))
    is_hub = F.coalesce(F.col("_crowd"), F.lit(0)) >= int(hub_min_applicants)
    if hub_spread_km is not None or hub_age_days is not None:
        spread = F.lit(False)
        if hub_spread_km is not None:
            # no distance known (no GPS on this side or theirs): the age decides, or the count
            # alone when there is no age rule
            spread = spread | F.coalesce(F.col("_spread_km") > float(hub_spread_km), F.lit(hub_age_days is None))
        if hub_age_days is not None:
            spread = spread | (F.col("_age_days") > float(hub_age_days))
        is_hub = is_hub & spread
    # An earlier hub item is no anchor either: its links are off, so later items cannot use it.
    hub_anchor = rows.filter(is_hub).select(F.col("media_key").alias("anchor_key")).distinct().withColumn("_anchor_hub", F.lit(True))
    rows = rows.withColumn("is_hub", is_hub).join(hub_anchor, "anchor_key", "left")
    return rows.select(
        "application_id", F.col("item_ts").alias("ts"), F.lit(modality).alias("type"), F.col("anchor_key").alias("value"),
        "media_key", "kind", "anchor_application_id", "anchor_ts", "similarity", "is_hub",
        (~F.col("is_hub") & F.col("_anchor_hub").isNull() & near).alias("links"),
        F.coalesce(F.col("_crowd"), F.lit(0)).cast("long").alias("earlier_applicants"),
        F.col("_spread_km").cast("double").alias("earlier_median_km"),
        F.col("_age_days").cast("double").alias("earlier_median_days"),
        F.lit(None).cast("string").alias("blacklist_kind"),
    )


def blacklist_media_hits(neighbours: DataFrame, app_items: DataFrame, samples: DataFrame, *, modality: str,
                         threshold: float) -> DataFrame:
    """Hits of application items on blacklisted voices / backgrounds: the sample is among the
    item's nearest neighbours at or above ``threshold`` and its entry was added strictly
    before the application time. Same layout as :func:`media_links` (type 'blacklist',
    value = entry id, anchor = the sample).

    Needs neighbours(query_key, neighbour_key, score) with the application items as queries,
    app_items(media_key, application_id, kind, item_ts), samples(media_key, entry_id, added_ts)."""
    require_columns(samples, ["media_key", "entry_id", "added_ts"], "blacklist_media_hits(samples)")
    s = samples.select(F.col("media_key").alias("neighbour_key"), "entry_id", "added_ts")
    it = app_items.select(F.col("media_key").alias("query_key"), "application_id", "kind", "item_ts")
    hits = (
        neighbours.filter(F.col("score") >= F.lit(float(threshold))).join(s, "neighbour_key").join(it, "query_key")
        .filter(F.col("added_ts") < F.col("item_ts"))
    )
    best = Window.partitionBy("application_id", "entry_id").orderBy(F.desc("score"), "query_key")
    return (
        hits.withColumn("_r", F.row_number().over(best)).filter(F.col("_r") == 1)
        .select("application_id", F.col("item_ts").alias("ts"), F.lit("blacklist").alias("type"), F.col("entry_id").alias("value"),
                F.col("query_key").alias("media_key"), "kind", F.lit(None).cast("string").alias("anchor_application_id"),
                F.col("added_ts").alias("anchor_ts"), F.col("score").cast("double").alias("similarity"),
                F.lit(False).alias("is_hub"), F.lit(True).alias("links"), F.lit(0).cast("long").alias("earlier_applicants"),
                F.lit(None).cast("double").alias("earlier_median_km"), F.lit(None).cast("double").alias("earlier_median_days"),
                F.lit(modality).alias("blacklist_kind"))
    )


def blacklist_value_hits(apps: DataFrame, entries: DataFrame) -> DataFrame:
    """Exact blacklist hits on devices and phones, added strictly before the application:
    same layout as :func:`blacklist_media_hits` (similarity 1).
    Needs apps(application_id, application_ts, device_id, phone_key), entries(entry_id, kind,
    value_key, added_ts)."""
    require_columns(apps, ["application_id", "application_ts", "device_id", "phone_key"], "blacklist_value_hits(apps)")
    require_columns(entries, ["entry_id", "kind", "value_key", "added_ts"], "blacklist_value_hits(entries)")
    out = None
    for kind, col in (("device", "device_id"), ("phone", "phone_key")):
        e = entries.filter((F.col("kind") == kind) & F.col("value_key").isNotNull()).select("entry_id", F.col("value_key").alias(col), "added_ts")
        hit = apps.select("application_id", "application_ts", col).join(e, col).filter(F.col("added_ts") < F.col("application_ts"))
        hit = hit.select("application_id", F.col("application_ts").alias("ts"), F.lit("blacklist").alias("type"), F.col("entry_id").alias("value"),
                         F.lit(None).cast("string").alias("media_key"), F.lit(kind).alias("kind"),
                         F.lit(None).cast("string").alias("anchor_application_id"), F.col("added_ts").alias("anchor_ts"),
                         F.lit(1.0).alias("similarity"), F.lit(False).alias("is_hub"), F.lit(True).alias("links"),
                         F.lit(0).cast("long").alias("earlier_applicants"), F.lit(None).cast("double").alias("earlier_median_km"),
                         F.lit(None).cast("double").alias("earlier_median_days"), F.lit(kind).alias("blacklist_kind"))
        out = hit if out is None else out.unionByName(hit)
    return out


def similarity_features(links: DataFrame, bad_events: DataFrame, *, modality: str) -> DataFrame:
    """Per application, point in time, from its links of one modality (non-hub, to earlier
    anchors of other applications): ``sim_<m>_prior_apps`` (distinct earlier applications
    it is similar to), ``sim_<m>_prior_bad`` (those whose bad outcome was known before its
    time), ``sim_<m>_max_bad_similarity`` (its highest similarity to one of those; 0 if none),
    ``sim_<m>_is_hub`` (1 if one of its items is a hub item).
    Needs links(application_id, ts, type, anchor_application_id, similarity, is_hub, links)
    and bad_events(application_id, known_ts)."""
    require_columns(links, ["application_id", "ts", "type", "anchor_application_id", "similarity", "is_hub", "links"], "similarity_features")
    mine = links.filter(F.col("type") == modality)
    hub = mine.groupBy("application_id").agg(F.max(F.col("is_hub").cast("long")).alias(f"sim_{modality}_is_hub"))
    other = mine.filter(F.col("links") & (F.col("anchor_application_id") != F.col("application_id")))
    bad = bad_events.select(F.col("application_id").alias("anchor_application_id"), F.col("known_ts").alias("_bad_ts"))
    o = other.join(bad, "anchor_application_id", "left").withColumn("_bad", F.col("_bad_ts") < F.col("ts"))
    agg = o.groupBy("application_id").agg(
        F.countDistinct("anchor_application_id").alias(f"sim_{modality}_prior_apps"),
        F.countDistinct(F.when(F.col("_bad"), F.col("anchor_application_id"))).alias(f"sim_{modality}_prior_bad"),
        F.max(F.when(F.col("_bad"), F.col("similarity"))).alias(f"sim_{modality}_max_bad_similarity"),
    )
    return hub.join(agg, "application_id", "left")


def blacklist_features(links: DataFrame, kinds: tuple[str, ...]) -> DataFrame:
    """Per application: ``blacklist_hits`` (entries hit before its time), ``blacklist_<kind>_hit``
    (0/1 per entry kind) and ``blacklist_max_similarity`` (its best media hit; 1 for an exact
    device/phone hit). Needs links(application_id, type, value, blacklist_kind, similarity)."""
    require_columns(links, ["application_id", "type", "value", "blacklist_kind", "similarity"], "blacklist_features")
    b = links.filter(F.col("type") == "blacklist")
    return b.groupBy("application_id").agg(
        F.countDistinct("value").alias("blacklist_hits"),
        *[F.max(F.when(F.col("blacklist_kind") == k, F.lit(1)).otherwise(F.lit(0))).alias(f"blacklist_{k}_hit") for k in kinds],
        F.max("similarity").alias("blacklist_max_similarity"),
    )
