"""GPS bursts: many applications from within a small radius in a short time window — a
coached group applying from one office (the first seed's "short-term GPS clusters").

Applications are hashed to a square grid of ``radius_m`` cells and ``window_h`` time
buckets, and each application is compared only with those in the 3 x 3 neighbouring cells
and its own and the previous time bucket: a local join whose size grows with density, never
an all-pairs join. Distances are haversine; the window is strictly before the application,
so the counts are point-in-time correct.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from riskgraph.features.graph import APP_PREFIX
from riskgraph.features.validation import EARTH_M_PER_DEG, require_columns

EARTH_RADIUS_M = 6_371_000.0


def _haversine_m(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    dlat, dlon = F.radians(lat2 - lat1), F.radians(lon2 - lon1)
    a = F.sin(dlat / 2) ** 2 + F.cos(F.radians(lat1)) * F.cos(F.radians(lat2)) * F.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * F.asin(F.least(F.lit(1.0), F.sqrt(a)))


def _cell(lat: Column, lon: Column, row_offset: int, radius_m: float) -> tuple[Column, Column]:
    """(row, column) of the grid cell ``row_offset`` rows away; each row's column width is
    set by its own latitude, so cells stay about radius_m wide everywhere."""
    dlat = radius_m / EARTH_M_PER_DEG
    row = F.floor(lat / dlat) + row_offset
    dlon = F.lit(dlat) / F.greatest(F.cos(F.radians((row + 0.5) * dlat)), F.lit(1e-6))
    return row, F.floor(lon / dlon)


def gps_near_pairs(apps: DataFrame, *, radius_m: float, window_h: float) -> DataFrame:
    """Pairs (application_id, earlier_id): ``earlier_id`` came strictly before and at most
    ``window_h`` hours before ``application_id``, within ``radius_m`` metres of it.
    Needs application_id, application_ts, gps_lat, gps_lon; rows without GPS pair with nobody."""
    require_columns(apps, ["application_id", "application_ts", "gps_lat", "gps_lon"], "gps_near_pairs")
    window_us = int(window_h * 3_600 * 1_000_000)
    pts = apps.filter(F.col("gps_lat").isNotNull() & F.col("gps_lon").isNotNull()).select(
        "application_id", F.unix_micros("application_ts").alias("t"), F.col("gps_lat").alias("lat"), F.col("gps_lon").alias("lon")
    )
    row, col = _cell(F.col("lat"), F.col("lon"), 0, radius_m)
    own = pts.select(F.col("application_id").alias("b_id"), F.col("t").alias("b_t"), F.col("lat").alias("b_lat"),
                     F.col("lon").alias("b_lon"), row.alias("r"), col.alias("c"), F.floor(F.col("t") / window_us).alias("k"))
    # the keys each application probes: 3 rows x 3 columns x (this and the previous bucket)
    probes = F.array(*[
        F.struct(_cell(F.col("lat"), F.col("lon"), dr, radius_m)[0].alias("r"),
                 (_cell(F.col("lat"), F.col("lon"), dr, radius_m)[1] + dc).alias("c"),
                 (F.floor(F.col("t") / window_us) - dk).alias("k"))
        for dr in (-1, 0, 1) for dc in (-1, 0, 1) for dk in (0, 1)
    ])
    probe = pts.select("application_id", "t", "lat", "lon", F.explode(probes).alias("p")).select(
        "application_id", "t", "lat", "lon", "p.r", "p.c", "p.k")
    return (
        probe.join(own, ["r", "c", "k"])
        .filter((F.col("b_t") < F.col("t")) & (F.col("t") - F.col("b_t") <= window_us))
        .filter(_haversine_m(F.col("lat"), F.col("lon"), F.col("b_lat"), F.col("b_lon")) <= radius_m)
        .select("application_id", F.col("b_id").alias("earlier_id")).distinct()  # a neighbour reached through two probe keys counts once
    )


def add_gps_burst_counts(apps: DataFrame, *, radius_m: float, window_h: float, out_col: str) -> DataFrame:
    """Adds ``out_col``: earlier applications within ``radius_m`` metres and ``window_h``
    hours before this one (0 without GPS). Needs application_id, application_ts, gps_lat, gps_lon."""
    near = gps_near_pairs(apps, radius_m=radius_m, window_h=window_h).groupBy("application_id").agg(F.count(F.lit(1)).alias(out_col))
    return apps.join(near, "application_id", "left").withColumn(out_col, F.coalesce(F.col(out_col), F.lit(0)).cast("long"))


def gps_burst_edges(apps: DataFrame, *, radius_m: float, window_h: float, min_apps: int) -> DataFrame:
    """Application–application edges (src, dst as 'app:<id>' vertex ids) inside GPS bursts:
    an application with at least ``min_apps - 1`` earlier applications within ``radius_m``
    metres and ``window_h`` hours (so at least ``min_apps`` applications in one spot and
    window) is linked to each of them. Feeds gang detection next to the attribute links; a
    pair of neighbours applying the same day is no burst and links nobody."""
    if min_apps < 2:
        raise ValueError(f"gps burst links need min_apps >= 2, got {min_apps}")
    pairs = gps_near_pairs(apps, radius_m=radius_m, window_h=window_h)
    bursting = pairs.groupBy("application_id").agg(F.count(F.lit(1)).alias("_n")).filter(F.col("_n") >= min_apps - 1)
    return pairs.join(bursting.select("application_id"), "application_id").select(
        F.concat(F.lit(APP_PREFIX), "application_id").alias("src"), F.concat(F.lit(APP_PREFIX), "earlier_id").alias("dst"))
