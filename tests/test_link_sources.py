"""The link-source registry: one declaration per kind of vertex, and the attribute types
give exactly the edges, gangs and features they gave before the registry existed."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from riskgraph import link_sources as LS
from riskgraph import schemas as S
from riskgraph.features.communities import split_components
from riskgraph.features.components import connected_components
from riskgraph.features.gangs import application_pairs, gang_links, gang_members
from riskgraph.features.graph import app_vertex, build_edges, build_vertices, column_links, detect_super_nodes, hub_thresholds
from riskgraph.features.network import (add_prior_sharing_counts, application_links, compute_pit_components,
                                        pivot_sharing_counts)

APPS = "application_id string, applicant_id string, application_ts timestamp, device_id string, phone_key string, ip string, " \
       "gps_cell string, email_key string, employer string, referrer_code string"
TYPES = ("device", "phone", "ip", "gps", "email", "employer", "referrer")
# The column each attribute type was read from before the registry (features/graph.py at
# commit e610128), and its edge label (schemas.RELATIONSHIP then).
OLD_COLUMN = {"device": "device_id", "phone": "phone_key", "ip": "ip", "gps": "gps_cell", "email": "email_key",
              "employer": "employer", "referrer": "referrer_code"}
OLD_RELATIONSHIP = {"device": "uses_device", "phone": "has_phone", "ip": "from_ip", "gps": "at_gps", "email": "has_email",
                    "employer": "works_at", "referrer": "referred_by"}


def _old_build_edges(apps, attribute_types):
    """build_edges as it was before the registry, verbatim but for the module constants."""
    links = F.array(*[F.struct(F.lit(t).alias("type"), F.col(OLD_COLUMN[t]).cast("string").alias("value")) for t in attribute_types])
    return (
        apps.select(app_vertex(F.col("application_id")).alias("src"), F.col("application_ts").alias("ts"), F.explode(links).alias("l"))
        .filter(F.col("l.value").isNotNull())
        .select("src", F.concat_ws(":", F.col("l.type"), F.col("l.value")).alias("dst"),
                F.element_at(F.create_map(*[x for t in attribute_types for x in (F.lit(t), F.lit(OLD_RELATIONSHIP[t]))]),
                             F.col("l.type")).alias("relationship"), "ts")
    )


def _random_apps(spark, n=400, seed=3):
    """Applications with small value pools (so values are shared), a few hubs and nulls."""
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(n):
        pick = lambda pool, p_null=0.1: None if rng.random() < p_null else f"{pool}{rng.integers(0, n // 6)}"  # noqa: E731
        rows.append((f"A{i:04d}", f"P{rng.integers(0, n * 0.8):04d}", t0 + dt.timedelta(hours=float(rng.integers(0, 24 * 60))),
                     pick("d"), pick("p"), "10.0.0.1" if rng.random() < 0.15 else pick("ip"), pick("g", 0.3), pick("e"),
                     "BIG" if rng.random() < 0.3 else pick("emp"), pick("r", 0.8)))
    return spark.createDataFrame(rows, APPS)


def test_registry_declares_each_type_once_with_a_distinct_label():
    assert len({s.relationship for s in LS.SOURCES.values()}) == len(LS.SOURCES)
    assert set(S.RELATIONSHIP) == set(LS.SOURCES)
    assert LS.COLUMN_SOURCES == TYPES
    with pytest.raises(ValueError, match="exactly one of column / table"):
        LS.LinkSource("x", "rel", "value", column="c", table="T")
    with pytest.raises(ValueError, match="must not contain ':'"):
        LS.LinkSource("a:b", "rel", "value", column="c")


def test_config_names_only_registered_sources(cfg_factory):
    with pytest.raises(ValueError, match="unknown link sources \\['devcie'\\]"):
        cfg_factory(**{"graph.sources": ["devcie", "phone"]})
    with pytest.raises(ValueError, match="not in graph.sources"):
        cfg_factory(**{"graph.sources": ["phone"], "graph.link_types": ["device"]})


def test_attribute_sources_give_the_edges_gangs_and_features_they_gave_before(spark, cfg_factory):
    apps = _random_apps(spark)
    old = _old_build_edges(apps, TYPES)
    new = build_edges(column_links(apps, types=TYPES))
    assertDataFrameEqual(new, old)  # row order ignored, values and types compared

    caps = {"device": 25, "phone": 15, "ip": 40, "gps": 60, "email": 10, "employer": 80, "referrer": 80}
    link_types = ("device", "phone", "ip", "email", "referrer")

    def gangs(edges):
        vertices = build_vertices(apps, edges)
        hubs = detect_super_nodes(vertices, hub_thresholds(vertices, max_degree=caps, robust_k=6.0, min_log_scale=0.5, min_degree=10))
        pairs = application_pairs(gang_links(edges, hubs, link_types=link_types), window_days=30.0)
        linked = pairs.select(F.col("src").alias("id")).unionByName(pairs.select(F.col("dst").alias("id"))).distinct()
        part = split_components(connected_components(linked, pairs), pairs, min_component_size=4, resolution=0.1)
        return gang_members(part, apps, min_size=3)

    old_gangs = gangs(old)
    assert old_gangs.count() > 10  # the comparison means something: there are gangs
    assertDataFrameEqual(gangs(new), old_gangs)

    def features(edges):
        counts = add_prior_sharing_counts(application_links(edges, apps), spark.createDataFrame([], "application_id string, known_ts timestamp"),
                                          windows_days=(7, 30))
        sharing = pivot_sharing_counts(counts, attribute_types=TYPES, windows_days=(7, 30))
        pit = compute_pit_components(counts, spark.createDataFrame([], "application_id string, known_ts timestamp"),
                                     attribute_types=link_types, max_degree=caps, burst_hours=24, buckets=2, window_days=30.0)
        return sharing.join(pit, "application_id", "left")

    assertDataFrameEqual(features(new), features(old))
