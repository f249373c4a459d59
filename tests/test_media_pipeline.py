"""The multimodal half end to end on a tiny world with media on every application:
ingest → ingest_media → embed → link_media → build_graph → detect_gangs → assemble_features
→ write_feature_store, with media sources in the graph and gangs linking on voices."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from riskgraph import tables as T
from riskgraph.cli import STEPS
from riskgraph.config import PROJECT_ROOT, load_config
from riskgraph.schemas import feature_specs

from conftest import BackgroundJob
from pii_scan import outputs, pii_finder, pii_in_file, raw_pii


def start_in_background(request, tmp_path_factory) -> BackgroundJob:
    """The world, simulated and run through write_feature_store by the CLI in a subprocess,
    started at the session's first test (conftest's ``background``): minutes of Spark that
    the rest of the suite runs beside."""
    root = tmp_path_factory.mktemp("media_world")
    conf = root / "conf.yaml"
    doc = yaml.safe_load((PROJECT_ROOT / "conf" / "media_tiny.yaml").read_text())
    doc["paths"] = {"root": str(root / "data"), "checkpoint_dir": str(root / "ckpt")}
    doc["mlflow"] = {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlflow-art")}
    conf.write_text(yaml.safe_dump(doc))
    steps = list(STEPS)[: list(STEPS).index("write_feature_store") + 1]
    cmd = [sys.executable, "-m", "riskgraph.cli", "run", "--simulate", "--env", "test", "--conf", str(conf),
           "--run-id", "load", "--steps", ",".join(steps)]
    return BackgroundJob("the media world", [cmd], root / "run.log", cwd=root)


@pytest.fixture(scope="module")
def media_world(background):
    job = background[__name__].wait()
    root = job.log.parent
    cfg = load_config("test", root / "conf.yaml")
    rec = json.loads((Path(T.runs_dir(cfg)) / "load.json").read_text())
    assert (rec["run_date"], rec["from_date"]) == (cfg.simulation.end_date.isoformat(), cfg.simulation.start_date.isoformat())
    return {"cfg": cfg, "rec": rec}


def _delta(cfg, table) -> pd.DataFrame:
    return DeltaTable(table.uri(cfg)).to_pandas()


def test_media_links_point_to_earlier_items_with_a_recorded_threshold(media_world):
    cfg, rec = media_world["cfg"], media_world["rec"]
    sim = rec["details"]["link_media"]["similarity"]
    assert set(sim) == {"background", "voice", "text"}
    for m, d in sim.items():
        assert 0 < d["threshold"] <= 1 and d["calibration"]["false_match_rate"] == 1.0e-3, m
    links = _delta(cfg, T.MEDIA_LINKS)
    to_other = links[(links.type != "blacklist") & (links.anchor_application_id != links.application_id)]
    assert len(to_other) > 0
    assert (to_other.anchor_ts < to_other.ts).all()  # point in time: only earlier items
    assert (to_other.similarity >= to_other.type.map({m: d["threshold"] for m, d in sim.items()}) - 1e-6).all()
    assert not links[links.is_hub].links.any()  # a hub item links nobody
    bl = links[links.type == "blacklist"]
    assert (bl.anchor_ts < bl.ts).all()  # a blacklist entry counts only after it was added


def test_voice_links_reach_the_graph_gangs_and_the_feature_store(media_world):
    cfg, rec = media_world["cfg"], media_world["rec"]
    edges = _delta(cfg, T.EDGES)
    assert {"background", "voice", "text"} <= set(edges.dst.str.split(":").str[0])
    assert set(edges[edges.dst.str.startswith("voice:")].relationship) == {"same_voice"}
    gangs = _delta(cfg, T.GANGS)
    says = [e.get("says") for g in gangs.evidence for e in json.loads(g)]
    assert any(s and s.startswith("same voice as applications") for s in says), says[:10]
    feats = _delta(cfg, T.FEATURES)
    names = [s.name for s in feature_specs(cfg)]
    assert list(feats.columns) == names
    assert {"sim_voice_prior_apps", "pit_voice_cluster_size", "blacklist_hits", "pit_mm_component_size"} <= set(names)
    assert (feats.sim_voice_prior_apps > 0).any() and (feats.pit_voice_cluster_size > 1).any()
    assert (feats.pit_mm_component_size >= feats.pit_component_size).all()  # media links only add to components
    assert rec["media_only_gangs"] is not None and rec["media_only_gangs"]["true_gangs"] >= 1


def test_media_outputs_hold_no_raw_pii(media_world):
    """The media tables (bronze/media, its quarantine, bronze/blacklists, the embeddings,
    graph/media_links) and everything else the media world wrote hold no raw phone, e-mail,
    name or national id, blacklisted phones included (issue 13: they were not scanned)."""
    cfg = media_world["cfg"]
    pii, names = raw_pii(cfg)
    find = pii_finder(pii)
    files = outputs(cfg.paths.root)
    written = {T.BRONZE_MEDIA.uri(cfg), T.BRONZE_BLACKLISTS.uri(cfg), T.MEDIA_LINKS.uri(cfg), T.EMBEDDINGS_VOICE.uri(cfg)}
    for uri in written:  # the media tables are there to scan, with data files
        assert any(p.startswith(uri + "/") and p.endswith(".parquet") for p in files), uri
    blacklisted = pd.concat(pd.read_csv(f, dtype=str) for f in Path(T.raw_dir(cfg, "blacklists")).glob("dt=*/*.csv"))
    assert (blacklisted.kind == "phone").any()  # the blacklists hold raw phones to leak
    found = [hit for p in files for hit in pii_in_file(p, find, names)]
    assert not found, f"{len(found)} raw PII value(s) in the media world's outputs, e.g. {found[:3]}"
