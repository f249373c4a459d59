"""Point-in-time network features per application.

Every feature of application *a* uses only facts known strictly before its time t_a:
another application counts only if it was submitted before t_a, a bad outcome only if it
became known before t_a, and a link only if it existed before t_a. The super-node guard is
point-in-time too: an attribute value stops linking once its prior degree reaches its
type's cap, so no "this value will become a hub" knowledge from the future leaks in.
"""
from __future__ import annotations

import bisect
import logging

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from riskgraph.features.components import connected_components
from riskgraph.features.graph import application_of, cap_column, star_edges, vertex_type
from riskgraph.features.validation import require_columns
from riskgraph.schemas import BAD_OUTCOMES, reuse_column

log = logging.getLogger("riskgraph.features.network")

DAY_US = 86_400 * 1_000_000
APPLICANT = "applicant"


def _us(ts: Column) -> Column:
    return F.unix_micros(ts)


def application_links(edges: DataFrame, apps: DataFrame) -> DataFrame:
    """Long format links: application_id, ts, type, value — the graph's edges plus each
    application's applicant (for repeat-applicant counts)."""
    require_columns(edges, ["src", "dst", "ts"], "application_links(edges)")
    require_columns(apps, ["application_id", "applicant_id", "application_ts"], "application_links(apps)")
    graph = edges.select(application_of(F.col("src")).alias("application_id"), "ts", vertex_type(F.col("dst")).alias("type"), F.col("dst").alias("value"))
    applicant = apps.select("application_id", F.col("application_ts").alias("ts"), F.lit(APPLICANT).alias("type"),
                            F.concat(F.lit(APPLICANT + ":"), "applicant_id").alias("value"))
    return graph.unionByName(applicant)


def bad_known_events(outcomes: DataFrame) -> DataFrame:
    """application_id, known_ts: the first time a bad outcome (fraud or default) became known."""
    require_columns(outcomes, ["application_id", "outcome", "known_ts"], "bad_known_events")
    return outcomes.filter(F.col("outcome").isin(*BAD_OUTCOMES)).groupBy("application_id").agg(F.min("known_ts").alias("known_ts"))


def add_prior_sharing_counts(links: DataFrame, bad_events: DataFrame, *, windows_days: tuple[int, ...],
                             applicants: DataFrame | None = None) -> DataFrame:
    """Per link: ``prior_all`` (earlier applications with the same value), ``prior_<w>d``
    (the same within w days) and ``prior_bad`` (earlier applications with the same value
    whose bad outcome was known before this application's time). With ``applicants``
    (application_id, applicant_id) also ``prior_applicants``: distinct *other* applicants who
    had used the value before this application's time (attribute reuse: one phone, many people).

    Needs links(application_id, ts, type, value), bad_events(application_id, known_ts).
    """
    require_columns(links, ["application_id", "ts", "type", "value"], "add_prior_sharing_counts")
    ev_app = links.select("application_id", "type", "value", "ts", _us(F.col("ts")).alias("t"), F.lit(0).alias("is_bad_event"))
    ev_bad = (
        links.join(bad_events, "application_id")
        .select("application_id", "type", "value", "ts", _us(F.col("known_ts")).alias("t"), F.lit(1).alias("is_bad_event"))
    )
    if applicants is not None:
        require_columns(applicants, ["application_id", "applicant_id"], "add_prior_sharing_counts(applicants)")
        who = applicants.select("application_id", F.col("applicant_id").alias("_who"))
        # an application without a known applicant is its own applicant (never lumped with others)
        ev_app = ev_app.join(who, "application_id", "left").withColumn("_who", F.coalesce("_who", "application_id"))
        ev_bad = ev_bad.withColumn("_who", F.lit(None).cast("string"))
    ev = ev_app.unionByName(ev_bad)
    if applicants is not None:
        # Distinct applicants by time without collect_set over a window (quadratic on a busy
        # value): each applicant counts once, at its first use of the value (ties: by
        # application id); the applicant itself is subtracted when its first use came earlier.
        # One shuffle by value serves this window and the per-value windows below.
        ev = ev.repartition("value")
        by_user = Window.partitionBy("value", "_who")
        is_app = F.col("is_bad_event") == 0
        ev = (ev.withColumn("_first_use", ((F.row_number().over(by_user.orderBy("is_bad_event", "t", "application_id")) == 1) & is_app).cast("int"))
              .withColumn("_own_first_t", F.min(F.when(is_app, F.col("t"))).over(by_user)))
    # rangeBetween(..., -1) on microseconds: strictly earlier events only.
    by_value = Window.partitionBy("value").orderBy("t")
    before = by_value.rangeBetween(Window.unboundedPreceding, -1)
    cols = {
        "prior_all": F.sum(1 - F.col("is_bad_event")).over(before),
        "prior_bad": F.sum("is_bad_event").over(before),
    }
    for w in windows_days:
        cols[f"prior_{w}d"] = F.sum(1 - F.col("is_bad_event")).over(by_value.rangeBetween(-w * DAY_US, -1))
    if applicants is not None:
        cols["prior_applicants"] = F.sum("_first_use").over(before) - (F.col("_own_first_t") < F.col("t")).cast("long")
    out = ev.withColumns({k: F.coalesce(v, F.lit(0)).cast("long") for k, v in cols.items()})
    return out.filter(F.col("is_bad_event") == 0).drop("is_bad_event", "t", "_who", "_first_use", "_own_first_t")


def pivot_sharing_counts(counts: DataFrame, *, attribute_types: tuple[str, ...], windows_days: tuple[int, ...],
                         reuse_types: tuple[str, ...] = (), reuse_min_applicants: int = 5) -> DataFrame:
    """Long per-link counts → one row per application with the catalog's column names. With
    ``reuse_types`` (counts from ``add_prior_sharing_counts(..., applicants=...)``) also
    ``reuse_applicants_same_<t>`` and :func:`reuse_column`."""
    aggs = [F.max(F.when(F.col("type") == APPLICANT, F.col("prior_all"))).alias("prior_apps_same_applicant")]
    for t in attribute_types:
        is_t = F.col("type") == t
        aggs.append(F.max(F.when(is_t, F.col("prior_all"))).alias(f"prior_apps_same_{t}"))
        aggs += [F.max(F.when(is_t, F.col(f"prior_{w}d"))).alias(f"prior_apps_same_{t}_{w}d") for w in windows_days]
        aggs.append(F.max(F.when(is_t, F.col("prior_bad"))).alias(f"prior_bad_same_{t}"))
    if reuse_types:
        require_columns(counts, ["prior_applicants"], "pivot_sharing_counts(reuse_types)")
        aggs += [F.max(F.when(F.col("type") == t, F.col("prior_applicants"))).alias(f"reuse_applicants_same_{t}") for t in reuse_types]
        busy = F.col("type").isin(*reuse_types) & (F.col("prior_applicants") >= int(reuse_min_applicants))
        aggs.append(F.sum(busy.cast("long")).alias(reuse_column(reuse_min_applicants)))
    return counts.groupBy("application_id").agg(*aggs)


def _sweep_schema(burst_hours: int) -> StructType:
    return StructType([
        StructField("application_id", StringType(), False),
        StructField("pit_linked_attribute_types", LongType(), False),
        StructField("pit_component_size", LongType(), False),
        StructField("pit_component_bad_known", LongType(), False),
        StructField("pit_component_age_days", DoubleType(), False),
        StructField(f"pit_component_apps_{burst_hours}h", LongType(), False),
    ])


def sweep_components(events: pd.DataFrame, burst_hours: int, window_days: float | None = None) -> pd.DataFrame:
    """Replay one bucket of events in time order with a union-find over attribute values.

    ``events`` columns: application_id, t (µs), value (None for a bad-known event), kind
    (0 = application with one linkable value per row, 1 = its bad outcome became known).
    For each application, before it joins, read the components of its values as they were
    from events strictly before its time. Written by hand because no library offers an
    incremental, time-ordered connectivity sweep; it runs per bucket inside applyInPandas.

    With ``window_days`` the links are the gangs' (``graph.link_window_days``): a value links
    an application to the value's previous use only if that use came at most ``window_days``
    earlier; after a longer gap the value starts afresh (a new node), as a household's home IP
    used again months later does not join the old component.
    """
    burst_us = burst_hours * 3_600 * 1_000_000
    window_us = None if window_days is None else int(window_days * 86_400 * 1_000_000)
    node: dict[str, str] = {}  # value -> its current union-find node (a new one after a gap > window)
    last: dict[str, int] = {}  # value -> time of its last use
    parent: dict[str, str] = {}
    size: dict[str, int] = {}
    bad: dict[str, int] = {}
    first: dict[str, int] = {}
    times: dict[str, list[int]] = {}
    app_value: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def recent(ts: list[int], cutoff: int) -> list[int]:
        # Only times inside the burst window of the current (and so of every later: the sweep
        # runs forward) application are ever counted: older ones are dropped, which keeps a
        # component's list as long as its last burst_hours of applications, not its history.
        return ts[bisect.bisect_left(ts, cutoff):]

    def union(a: str, b: str, cutoff: int) -> str:
        ra, rb = find(a), find(b)
        if ra == rb:
            return ra
        if size[ra] < size[rb] or (size[ra] == size[rb] and ra > rb):
            ra, rb = rb, ra  # union by size (deterministic tie-break)
        parent[rb] = ra
        size[ra] += size[rb]
        bad[ra] += bad[rb]
        first[ra] = min(first[ra], first[rb])
        times[ra] = sorted(recent(times[ra], cutoff) + recent(times.pop(rb), cutoff))  # two sorted runs: a linear merge
        return ra

    events = events.sort_values(["t", "kind", "application_id", "value"], kind="mergesort", na_position="last")
    out_rows = []
    t_arr = events["t"].to_numpy()
    kind_arr = events["kind"].to_numpy()
    app_arr = events["application_id"].to_numpy()
    val_arr = events["value"].to_numpy()
    n = len(events)
    i = 0
    while i < n:
        j = i
        while j < n and t_arr[j] == t_arr[i]:
            j += 1
        t = int(t_arr[i])
        arrivals: dict[str, list[str]] = {}
        bads: list[str] = []
        for k in range(i, j):
            if kind_arr[k] == 0:
                arrivals.setdefault(app_arr[k], []).append(val_arr[k])
            else:
                bads.append(app_arr[k])
        def live(v: str) -> bool:  # the value's last use still links at time t
            return v in node and (window_us is None or t - last[v] <= window_us)

        # 1. read: everything strictly before t
        for app, values in arrivals.items():
            seen = [node[v] for v in values if live(v)]
            roots = {find(x) for x in seen}
            first_t = min((first[r] for r in roots), default=t)
            out_rows.append((
                app, len(seen), 1 + sum(size[r] for r in roots), sum(bad[r] for r in roots),
                (t - first_t) / 86_400e6,
                sum(bisect.bisect_left(times[r], t) - bisect.bisect_left(times[r], t - burst_us) for r in roots),
            ))
        # 2. write: the applications at t join, and bad outcomes known at t count
        for app, values in arrivals.items():
            keys = []
            for v in values:
                if not live(v):
                    k = v if v not in node else f"{v}\x1f{t}"  # a fresh node for the value's new epoch
                    node[v] = k
                    parent[k], size[k], bad[k], first[k], times[k] = k, 0, 0, t, []
                last[v] = t
                keys.append(node[v])
            root = keys[0]
            for k in keys[1:]:
                root = union(root, k, t - burst_us)
            root = find(root)
            size[root] += 1
            first[root] = min(first[root], t)
            times[root] = recent(times[root], t - burst_us)
            times[root].append(t)  # t is the latest time so far: the list stays sorted
            app_value[app] = keys[0]
        for app in bads:
            if app in app_value:
                bad[find(app_value[app])] += 1
        i = j
    return pd.DataFrame(out_rows, columns=["application_id", "pit_linked_attribute_types", "pit_component_size",
                                           "pit_component_bad_known", "pit_component_age_days", "_burst"])


def compute_pit_components(link_counts: DataFrame, bad_events: DataFrame, *, attribute_types: tuple[str, ...],
                           max_degree: dict[str, int], burst_hours: int, buckets: int, window_days: float | None = None,
                           events_per_bucket: int | None = None,
                           cc_backend: str = "dataframe",
                           cc_max_iter: int = 100, cc_checkpoint_every: int = 2,
                           cc_reliable_checkpoint: bool = False) -> DataFrame:
    """Point-in-time component features for applications that share a linkable value with
    another application (others are singletons: size 1, the rest 0).

    A link is linkable when its value's prior degree is below the type's cap; with
    ``window_days`` it links only to uses of the value at most that long before (see
    :func:`sweep_components`). Components of the linkable graph (up to the run date, without
    the window: a superset) bound where the sweep must look, so whole
    components are hashed into ``buckets`` and each bucket is replayed by
    ``sweep_components`` on a worker. With ``events_per_bucket`` there are more buckets when
    the linkable events would exceed that many per bucket, so a bucket's pandas frame stays
    bounded as history grows (a single component is never split: its events are one sweep).

    Needs link_counts(application_id, ts, type, value, prior_all), bad_events(application_id, known_ts).
    """
    require_columns(link_counts, ["application_id", "ts", "type", "value", "prior_all"], "compute_pit_components")
    linkable = link_counts.filter(F.col("type").isin(*attribute_types)).filter(F.col("prior_all") < cap_column(max_degree, F.col("type")))
    edges = star_edges(linkable, node_col="application_id", value_col="value", order_col="ts")
    vertices = edges.select(F.col("src").alias("id")).unionByName(edges.select(F.col("dst").alias("id"))).distinct()
    comp = connected_components(vertices, edges, backend=cc_backend, max_iter=cc_max_iter, checkpoint_every=cc_checkpoint_every,
                                reliable_checkpoint=cc_reliable_checkpoint)
    if events_per_bucket:
        n_events = linkable.count()
        if n_events > buckets * events_per_bucket:
            buckets = -(-n_events // events_per_bucket)
            log.info("point-in-time sweep: %d linkable events -> %d buckets", n_events, buckets)
    grouped = comp.select(F.col("id").alias("application_id"), F.pmod(F.xxhash64("component"), F.lit(buckets)).alias("bucket"))
    app_events = linkable.join(grouped, "application_id").select("bucket", "application_id", _us(F.col("ts")).alias("t"), "value", F.lit(0).alias("kind"))
    bad_ev = bad_events.join(grouped, "application_id").select("bucket", "application_id", _us(F.col("known_ts")).alias("t"),
                                                               F.lit(None).cast("string").alias("value"), F.lit(1).alias("kind"))
    schema = _sweep_schema(burst_hours)
    burst_col = f"pit_component_apps_{burst_hours}h"

    def _apply(pdf: pd.DataFrame) -> pd.DataFrame:
        res = sweep_components(pdf.drop(columns=["bucket"]), burst_hours, window_days)
        return res.rename(columns={"_burst": burst_col})[schema.fieldNames()]

    return app_events.unionByName(bad_ev).groupBy("bucket").applyInPandas(_apply, schema)


def assemble_features(apps: DataFrame, sharing: DataFrame, pit: DataFrame, *extras: DataFrame, columns: list[str],
                      burst_hours: int) -> DataFrame:
    """One row per application in ``apps`` with exactly ``columns`` (the catalog order).
    ``extras`` are further per-application frames keyed by application_id. Missing counts
    are 0; applications outside any multi-application component get size 1 and zeros.
    ``prior_apps_same_applicant`` is never filled: every application links to its own
    applicant, so ``sharing`` has a row for each; a null there means that join lost the
    row, and the write's null-rate gate stops it.
    Needs apps(application_id, applicant_id, application_ts)."""
    require_columns(apps, ["application_id", "applicant_id", "application_ts"], "assemble_features")
    base = apps.select("application_id", "applicant_id", F.col("application_ts").alias("as_of_ts"),
                       F.date_format("application_ts", "yyyy-MM-dd").alias("run_date"))
    df = base.join(sharing, "application_id", "left").join(pit, "application_id", "left")
    for extra in extras:
        df = df.join(extra, "application_id", "left")
    sizes = [c for c in columns if c.startswith("pit_") and c.endswith("_size")]  # an application is its own component: 1
    fills = {c: 0 for c in columns if c.startswith(("prior_", "pit_", "sim_", "blacklist_", "sn_", "reuse_"))
             and c not in sizes and c not in ("prior_apps_same_applicant",)}
    fills.update({c: 1 for c in sizes})
    df = df.fillna(fills)
    return df.select(*columns)
