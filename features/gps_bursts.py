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


def add_gps_burst_counts(apps: DataFrame, *, radius_m: float, window_h: float, out_col: str) -> DataFrame:
    """Adds ``out_col``: earlier applications within ``radius_m`` metres and ``window_h``
    hours before this one (0 without GPS). Needs application_id, application_ts, gps_lat, gps_lon."""
    require_columns(apps, ["application_id", "application_ts", "gps_lat", "gps_lon"], "add_gps_burst_counts")
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
    near = (
        probe.join(own, ["r", "c", "k"])
        .filter((F.col("b_t") < F.col("t")) & (F.col("t") - F.col("b_t") <= window_us))
        .filter(_haversine_m(F.col("lat"), F.col("lon"), F.col("b_lat"), F.col("b_lon")) <= radius_m)
        .select("application_id", "b_id").distinct()  # a neighbour reached through two probe keys counts once
        .groupBy("application_id").agg(F.count(F.lit(1)).alias(out_col))
    )
    return apps.join(near, "application_id", "left").withColumn(out_col, F.coalesce(F.col(out_col), F.lit(0)).cast("long"))
