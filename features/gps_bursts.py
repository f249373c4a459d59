"""GPS bursts: many applications from within a small radius in a short time window — a
coached group applying from one office (the first seed's "short-term GPS clusters").

Applications are hashed to a grid of cells two radii wide and time buckets two windows long.
A neighbour within the radius lies in the application's own cell or, along each axis, in the
one adjacent cell on the side the application is nearer to; an earlier neighbour within the
window lies in its own bucket or, if the application sits in the first half of its bucket,
the previous one. So each application probes 4 cells x 1-2 buckets (6 keys on average, each
neighbour found exactly once) instead of the 3 x 3 cells x 2 buckets of a radius-wide grid:
a local join whose size grows with density, never an all-pairs join. Distances are
haversine; the window is strictly before the application, so the counts are point-in-time
correct.
"""
from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from riskgraph.features.graph import APP_PREFIX
from riskgraph.features.validation import require_columns

EARTH_RADIUS_M = 6_371_000.0
# Cells are a little more than two radii wide: the grid's degree-to-metre conversion and the
# haversine distance must never disagree about which side of a border a neighbour is on.
_MARGIN = 1.01


def _haversine_m(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    dlat, dlon = F.radians(lat2 - lat1), F.radians(lon2 - lon1)
    a = F.sin(dlat / 2) ** 2 + F.cos(F.radians(lat1)) * F.cos(F.radians(lat2)) * F.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * F.asin(F.least(F.lit(1.0), F.sqrt(a)))


def _cell_height_deg(radius_m: float) -> float:
    # A great-circle distance d spans at most d / R radians of latitude.
    return 2 * _MARGIN * math.degrees(radius_m / EARTH_RADIUS_M)


def _column(lon: Column, row: Column, radius_m: float) -> tuple[Column, Column]:
    """(column, nearer neighbour column) of ``lon`` in grid row ``row``. A row's columns are
    two radii wide at the most poleward latitude of the row and its two neighbours, so they
    are at least that wide wherever a point or its neighbour can be: a neighbour within the
    radius spans at most radius / (R cos(latitude)) radians of longitude."""
    h = _cell_height_deg(radius_m)
    poleward = F.least(F.greatest(F.abs((row - 1) * h), F.abs((row + 2) * h)), F.lit(89.9))
    dlon = F.lit(2 * _MARGIN * math.degrees(radius_m / EARTH_RADIUS_M)) / F.cos(F.radians(poleward))
    x = lon / dlon
    col = F.floor(x)
    return col, F.when(x - col < 0.5, col - 1).otherwise(col + 1)


def gps_near_pairs(apps: DataFrame, *, radius_m: float, window_h: float) -> DataFrame:
    """Pairs (application_id, earlier_id): ``earlier_id`` came strictly before and at most
    ``window_h`` hours before ``application_id``, within ``radius_m`` metres of it.
    Needs application_id, application_ts, gps_lat, gps_lon; rows without GPS pair with nobody."""
    require_columns(apps, ["application_id", "application_ts", "gps_lat", "gps_lon"], "gps_near_pairs")
    window_us = int(window_h * 3_600 * 1_000_000)
    h = _cell_height_deg(radius_m)
    pts = apps.filter(F.col("gps_lat").isNotNull() & F.col("gps_lon").isNotNull()).select(
        "application_id", F.unix_micros("application_ts").alias("t"), F.col("gps_lat").alias("lat"), F.col("gps_lon").alias("lon")
    )
    y = F.col("lat") / h
    row = F.floor(y)
    near_row = F.when(y - row < 0.5, row - 1).otherwise(row + 1)
    bucket = F.floor(F.col("t") / (2 * window_us))
    early = F.col("t") - bucket * (2 * window_us) < window_us  # first half of its bucket: earlier neighbours may be in the previous one
    own = pts.select(F.col("application_id").alias("b_id"), F.col("t").alias("b_t"), F.col("lat").alias("b_lat"),
                     F.col("lon").alias("b_lon"), row.alias("r"), _column(F.col("lon"), row, radius_m)[0].alias("c"), bucket.alias("k"))
    probes = []
    for rr in (row, near_row):
        col, near_col = _column(F.col("lon"), rr, radius_m)
        for cc in (col, near_col):
            probes.append(F.struct(rr.alias("r"), cc.alias("c"), bucket.alias("k")))
            probes.append(F.struct(rr.alias("r"), cc.alias("c"), F.when(early, bucket - 1).alias("k")))
    probe = pts.select("application_id", "t", "lat", "lon", F.explode(F.filter(F.array(*probes), lambda p: p["k"].isNotNull())).alias("p"))
    probe = probe.select("application_id", "t", "lat", "lon", "p.r", "p.c", "p.k")
    # Each neighbour sits in exactly one probed key, so no pair is found twice.
    return (
        probe.join(own, ["r", "c", "k"])
        .filter((F.col("b_t") < F.col("t")) & (F.col("t") - F.col("b_t") <= window_us))
        .filter(_haversine_m(F.col("lat"), F.col("lon"), F.col("b_lat"), F.col("b_lon")) <= radius_m)
        .select("application_id", F.col("b_id").alias("earlier_id"))
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
