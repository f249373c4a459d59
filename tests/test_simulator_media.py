"""The simulator's media layer and stealth gangs (issue 10): what it plants is what the truth says,
it is deterministic whatever the worker count, and it leaves the structured world alone except
for the stealth gangs' own rows."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from riskgraph.config import load_config
from riskgraph.media.photos import decode_image
from riskgraph.media.voices import decode_wav
from riskgraph.simulator import simulate_world

LINK_COLUMNS = ("phone", "device_id", "ip", "email", "referrer_code")


def _cfg(**media):
    over = {"simulation.n_applications": 700, "simulation.start_date": "2026-01-01",
            "simulation.end_date": "2026-02-28", "simulation.gang_share": 0.15,
            "simulation.media.enabled": True, "simulation.media.from_date": "2026-02-15",
            "simulation.media.photo_size": 96, "simulation.media.call_seconds": 1.5,
            "simulation.media.defect_rate": 0.02}
    over.update({f"simulation.media.{k}": v for k, v in media.items()})
    return load_config("test", overrides=over).simulation


def _digest(root: Path, sub: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / sub).rglob("*")) if p.is_file()}


def _rows(root: Path, table: str) -> list[dict]:
    out = []
    for f in sorted((root / "raw" / table).glob("dt=*/part-00000.csv")):
        with open(f, newline="", encoding="utf-8") as fh:
            out += list(csv.DictReader(fh))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("media_world")
    summary = simulate_world(_cfg(stealth_gang_share=0.5, workers=2), root)
    return root, summary


def test_items_match_refs_truth_and_files(world):
    root, summary = world
    refs = _rows(root, "media_refs")
    truth = pq.read_table(root / "truth" / "media.parquet").to_pylist()
    assert summary["media"]["refs"] == len(refs) == len(truth) > 300
    assert {(r["application_id"], r["kind"], r["uri"]) for r in refs} == {(t["application_id"], t["kind"], t["uri"]) for t in truth}
    apps = {r["application_id"]: r for r in _rows(root, "applications")}
    for t in truth:
        p = Path(t["uri"])
        assert t["application_id"] in apps  # media only for booked applications
        if t["defect"] == "missing_file":
            assert not p.exists()
            continue
        data = p.read_bytes()
        if t["defect"] == "zero_bytes":
            assert data == b""
        elif t["kind"] in ("selfie", "id_photo", "premises"):
            img = decode_image(data)
            if t["defect"] in ("truncated", "wrong_kind"):
                assert img is None or not data.endswith(b"\xff\xd9")
            elif t["defect"] == "too_small":
                assert img.shape[:2] == (40, 40)
            else:
                assert img.shape[:2] == (96, 96), t
        elif t["kind"] == "call" and t["defect"] is None:
            samples, rate = decode_wav(data)
            assert rate == 8000 and len(samples) == 1.5 * 8000
        elif t["kind"] == "purpose":
            assert len(data.decode("utf-8")) > 0
    planted = {t["defect"] for t in truth if t["defect"]}
    assert planted == {"missing_file", "zero_bytes", "truncated", "wrong_kind", "too_small", "silent_audio",
                       "too_short_audio", "duplicate_content"}
    by_key = {(t["application_id"], t["kind"]): t for t in truth}
    for t in truth:
        if t["defect"] == "duplicate_content":
            assert Path(t["uri"]).read_bytes() == Path(by_key[(t["application_id"], "selfie")]["uri"]).read_bytes()


def test_gangs_share_rooms_voices_and_templates(world):
    root, _ = world
    truth = pq.read_table(root / "truth" / "media.parquet").to_pandas()
    gangs = pq.read_table(root / "truth" / "gang_membership.parquet").to_pandas()
    t = truth.merge(gangs[["application_id", "gang_id"]], on="application_id")
    selfies = t[(t.kind == "selfie")]
    in_gang = selfies[selfies.gang_id.notna()]
    honest = selfies[selfies.gang_id.isna()]
    # most gang selfies are in a back office shared with other members; honest ones never are
    assert (in_gang.place_kind == "back_office").mean() > 0.6
    assert not (honest.place_kind == "back_office").any()
    calls = t[t.kind == "call"]
    assert calls[calls.gang_id.notna()].speaker_id.str.startswith("int").mean() > 0.5
    assert not calls[calls.gang_id.isna()].speaker_id.str.startswith("int").any()
    # chain stores are hubs of strangers: one decor, many unrelated applicants
    chain = honest[honest.place_kind == "chain_store"]
    assert chain.place_id.nunique() <= 3


def test_stealth_gangs_share_no_linking_value(world):
    root, summary = world
    stealth = set(pq.read_table(root / "truth" / "stealth_gangs.parquet").column("gang_id").to_pylist())
    assert summary["n_stealth_gangs"] == len(stealth) >= 1
    gangs = pq.read_table(root / "truth" / "gang_membership.parquet").to_pandas()
    members = gangs[gangs.gang_id.isin(stealth)]
    apps = {r["application_id"]: r for r in _rows(root, "applications")}
    for _, grp in members.groupby("gang_id"):
        rows = [apps[a] for a in grp.application_id if a in apps]
        for col in LINK_COLUMNS:
            vals = [r[col] for r in rows if r[col]]
            assert len(vals) == len(set(vals)), (col, vals)
    # they are still found by media: most of their selfies are in their intermediary's rooms
    truth = pq.read_table(root / "truth" / "media.parquet").to_pandas()
    s = truth[truth.application_id.isin(members.application_id) & (truth.kind == "selfie")]
    assert (s.place_kind == "back_office").mean() > 0.6


def test_blacklists_point_at_existing_samples(world):
    root, summary = world
    bl = _rows(root, "blacklists")
    assert len(bl) == sum(summary["media"]["blacklist_entries"].values()) > 0
    for e in bl:
        assert e["kind"] in ("voice", "background", "device", "phone")
        if e["kind"] in ("voice", "background"):
            assert Path(e["uri"]).stat().st_size > 0 and not e["value"]
        else:
            assert e["value"] and not e["uri"]


def test_deterministic_whatever_the_workers(world, tmp_path):
    root, _ = world
    again = tmp_path / "w1"
    simulate_world(_cfg(stealth_gang_share=0.5, workers=1), again)
    a, b = _digest(root, "raw"), _digest(again, "raw")
    # the refs and truth name absolute paths under each root: compare the files themselves
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k] and "media_refs" not in k and "blacklists" not in k]
    assert differ == []


def test_media_layer_leaves_the_structured_world_alone(tmp_path):
    with_media = simulate_world(_cfg(stealth_gang_share=0.0), tmp_path / "on")
    sim_off = _cfg(stealth_gang_share=0.0).model_copy(update={"media": _cfg().media.model_copy(update={"enabled": False})})
    without = simulate_world(sim_off, tmp_path / "off")
    for table in ("applications", "applicants", "outcomes"):
        assert _digest(tmp_path / "on", f"raw/{table}") == _digest(tmp_path / "off", f"raw/{table}")
    for f in ("gang_membership.parquet", "dirty_rows.parquet"):
        on = pq.read_table(tmp_path / "on" / "truth" / f)
        off = pq.read_table(tmp_path / "off" / "truth" / f)
        assert on.equals(off)
    assert with_media["rows"] == without["rows"]


def test_stealth_changes_only_the_stealth_gangs_rows(tmp_path):
    simulate_world(_cfg(stealth_gang_share=0.0), tmp_path / "plain")
    simulate_world(_cfg(stealth_gang_share=0.5), tmp_path / "stealth")
    stealth = set(pq.read_table(tmp_path / "stealth" / "truth" / "stealth_gangs.parquet").column("gang_id").to_pylist())
    gangs = pq.read_table(tmp_path / "plain" / "truth" / "gang_membership.parquet").to_pandas()
    stealth_apps = set(gangs[gangs.gang_id.isin(stealth)].application_id)
    plain = _rows(tmp_path / "plain", "applications")
    other = _rows(tmp_path / "stealth", "applications")
    assert len(plain) == len(other)
    changed = {a["application_id"] for a, b in zip(plain, other) if a != b}
    assert changed and changed <= stealth_apps
    assert np.mean([a["application_id"] in changed for a in plain if a["application_id"] in stealth_apps]) > 0.9
