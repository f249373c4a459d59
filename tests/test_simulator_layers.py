"""The simulator as a package of layers: today's worlds byte for byte, and room for new layers.

* Golden bytes: small worlds hash exactly as the single-module simulator wrote them.
* An extra layer (its own ``layer_rng`` stream, run after the base world is written) leaves
  every base file byte-identical, is itself deterministic per seed, and sees a read-only world
  whose landing view agrees with the files on disk.
* ``layer_rng`` streams: one per (seed, layer name), stable across processes.

No Spark: the files are read back with pandas.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskgraph.config import Simulation
from riskgraph.schemas import OUTCOMES
from riskgraph.simulator import DEFECTS, SUMMARY_KEYS, LayerContext, layer_rng, simulate_world

# conf/test.yaml's simulation settings when the hashes below were recorded, written out so the
# goldens do not move when that file is tuned.
BASE = dict(
    seed=42, n_applications=3000, start_date="2026-01-01", end_date="2026-03-31", gang_share=0.1, gang_size_min=4,
    gang_size_max=60, gang_size_alpha=1.8, gang_burst_days=10, household_share=0.25, nat_ip_share=0.1, n_nat_ips=12,
    default_device_share=0.01, n_employers=4000, employer_zipf=1.3, referral_share=0.05, honest_bad_rate=0.06,
    gang_bad_rate=0.55, gang_fraud_share=0.6, performance_days=30, hub_noise=1.0, shared_dealer_share=0.3,
    dirty_rate=0.01,
)

# Produced by the pre-split simulator (riskgraph/simulator.py at git commit 8b2e723) with
# numpy 2.4.6 and pyarrow 25.0.1 (requirements.txt; the Parquet footers name the pyarrow
# version, so a pyarrow bump changes the truth files' bytes and these hashes with them).
GOLDEN = {
    "default-seed11": (
        dict(n_applications=1500, seed=11),
        "a126f797b2bc3ea0fa4e32ccebdde2cee3205104c05c076030faf2470431cbaf",
    ),
    "hubs-dealers-dirty-seed7": (
        dict(n_applications=2000, seed=7, hub_noise=2.5, shared_dealer_share=0.4, gang_share=0.2, dirty_rate=0.03),
        "e9d14cdf178083a457167904da99cb3b050fd90d0405efa27438141e5f3e4c28",
    ),
    "nohubs-clean-short-seed3": (
        dict(n_applications=700, seed=3, hub_noise=0.0, dirty_rate=0.0, household_share=0.5, end_date="2026-01-20",
             performance_days=10),
        "6c53048c22556e0e38249bca049939182b4932c5a3e4bd2ee1762af12fd9fc3d",
    ),
}


def make_sim(**overrides) -> Simulation:
    return Simulation(**{**BASE, **overrides})


def file_digests(root: Path, subs=("raw", "truth")) -> dict[str, str]:
    """sha256 of every file under ``subs``, by path relative to ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in subs for p in sorted((root / sub).rglob("*")) if p.is_file()}


# Truth files added after the goldens, derived from the world without a draw: the goldens pin
# every file that existed, so a new truth file cannot hide a change to them.
LATER_TRUTH = {"truth/relations.parquet"}


def world_digest(root: Path) -> str:
    """One sha256 over every file under raw/ and truth/ (but LATER_TRUTH): sorted relative
    paths, each with its bytes' sha256."""
    h = hashlib.sha256()
    for rel, digest in sorted(file_digests(root).items()):
        if rel in LATER_TRUTH:
            continue
        h.update(rel.encode() + b"\0")
        h.update(bytes.fromhex(digest))
    return h.hexdigest()


# ---------------------------------------------------------------- 1. golden bytes
@pytest.mark.parametrize("overrides,expected", [pytest.param(*v, id=k) for k, v in GOLDEN.items()])
def test_worlds_are_byte_identical_to_the_pre_split_simulator(tmp_path, overrides, expected):
    simulate_world(make_sim(**overrides), str(tmp_path))
    assert world_digest(tmp_path) == expected


# ---------------------------------------------------------------- 2. an extra layer
def draw_test_layer(ctx: LayerContext) -> dict:
    """A layer as media or transfers will be: its own stream, per-application draws for the
    applications the lender booked, written under its own folder. It also checks what it may
    rely on: the base world is on disk, and the world it is shown cannot be edited."""
    assert (ctx.root / "truth" / "dirty_rows.parquet").exists()
    assert (ctx.root / "raw" / "outcomes" / f"dt={ctx.calendar.date_str(ctx.calendar.n_days - 1)}").is_dir()
    with pytest.raises(ValueError, match="read-only"):
        ctx.world.amount[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        ctx.applications.day[0] = 1
    rng = layer_rng(ctx.sim.seed, "test")
    booked = np.flatnonzero(ctx.applications.booked)
    score = rng.integers(0, 1000, len(booked))
    out = ctx.root / "extra" / "test_layer.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    ids = ctx.world.application_ids(booked).to_pylist()
    days = [ctx.calendar.date_str(d) for d in ctx.applications.day[booked]]
    out.write_text("".join(f"{i},{d},{s}\n" for i, d, s in zip(ids, days, score)))
    return {"rows": len(booked)}


draw_test_layer.name = "test"


def test_an_extra_layer_leaves_the_base_world_identical_and_is_deterministic_per_seed(tmp_path):
    plain, first, again, other = (tmp_path / x for x in ("plain", "first", "again", "other"))
    s_plain = simulate_world(make_sim(n_applications=1500, seed=11), str(plain))
    s_first = simulate_world(make_sim(n_applications=1500, seed=11), str(first), layers=[draw_test_layer])
    simulate_world(make_sim(n_applications=1500, seed=11), str(again), layers=[draw_test_layer])
    simulate_world(make_sim(n_applications=1500, seed=12), str(other), layers=[draw_test_layer])

    assert world_digest(plain) == GOLDEN["default-seed11"][1]
    assert file_digests(first) == file_digests(plain)  # every base file, byte for byte
    extra = "extra/test_layer.csv"
    assert file_digests(first, ("extra",)) == file_digests(again, ("extra",))
    assert (first / extra).read_bytes() != (other / extra).read_bytes()

    assert tuple(s_plain) == SUMMARY_KEYS and tuple(s_first) == SUMMARY_KEYS + ("test",)
    s_first.pop("seconds"), s_plain.pop("seconds")
    assert s_first.pop("test") == {"rows": sum(1 for _ in (first / extra).open())}
    assert {k: v for k, v in s_first.items() if k != "root"} == {k: v for k, v in s_plain.items() if k != "root"}


def test_the_layer_context_agrees_with_the_files_the_base_world_wrote(tmp_path):
    seen = {}

    def keep(ctx: LayerContext) -> dict:
        seen["ctx"] = ctx
        return {}

    simulate_world(make_sim(n_applications=2000, seed=7, dirty_rate=0.03), str(tmp_path), layers=[keep])
    ctx = seen["ctx"]
    w, landing = ctx.world, ctx.applications
    truth = pd.read_parquet(tmp_path / "truth" / "gang_membership.parquet")
    assert w.application_ids().to_pylist() == truth.application_id.tolist()
    assert w.gang_ids().to_pylist() == [None if pd.isna(g) else g for g in truth.gang_id]
    assert (w.is_gang == truth.gang_id.notna().to_numpy()).all()

    # landing day and defect of each application's own raw row, from the files and dirty_rows.parquet
    dirty = pd.read_parquet(tmp_path / "truth" / "dirty_rows.parquet")
    bad = dirty[(dirty.source == "applications") & (dirty.defect != "duplicate_id") & dirty.key.notna()]
    kinds = [landing.defect_kind(i) for i in range(w.n_applications)]
    expected = dict(zip(bad.key, bad.defect))
    got = {a: k for a, k in zip(truth.application_id, kinds) if k is not None}
    # null_key rows name no application in the truth file, so compare the named kinds and count the rest
    assert {a: k for a, k in got.items() if k != "null_key"} == expected
    assert sum(k == "null_key" for k in kinds) == ((dirty.source == "applications") & (dirty.defect == "null_key")).sum()
    assert set(truth.application_id[landing.duplicated]) == set(dirty.key[dirty.defect == "duplicate_id"])
    assert (landing.booked == np.array([k is None for k in kinds])).all()

    def landed(table: str) -> pd.DataFrame:
        frames = [pd.read_csv(f, dtype=str, keep_default_na=False).assign(dt=f.parent.name[3:])
                  for f in sorted((tmp_path / "raw" / table).glob("dt=*/part-00000.csv"))]
        return pd.concat(frames, ignore_index=True)

    apps = landed("applications")
    first_dt = apps[apps.application_id != ""].groupby("application_id").dt.min()
    dates = pd.Series([ctx.calendar.date_str(d) for d in landing.day], index=truth.application_id)
    named = first_dt.index  # every application but the null_key ones shows its id
    assert (dates[named] == first_dt[named]).all()
    assert len(named) == w.n_applications - sum(k == "null_key" for k in kinds)

    outcomes = landed("outcomes")
    outcomes = outcomes[outcomes.application_id.isin(truth.application_id)]  # not the orphans
    has_outcome = landing.outcome_day >= 0
    assert set(truth.application_id[has_outcome]) == set(outcomes.application_id)
    out_dates = pd.Series([ctx.calendar.date_str(d) for d in landing.outcome_day[has_outcome]],
                          index=truth.application_id[has_outcome])
    assert (out_dates[outcomes.application_id].to_numpy() == outcomes.dt.to_numpy()).all()
    assert landing.booked[has_outcome].all()
    assert set(OUTCOMES) >= set(truth.outcome)
    assert set(DEFECTS["applications"]) - {"duplicate_id"} == {k for k in kinds if k}


def test_layer_names_are_checked_before_anything_is_written(tmp_path):
    sim = make_sim(n_applications=200)

    def extra(ctx):
        return {}

    with pytest.raises(ValueError, match=r"\['extra'\]"):
        simulate_world(sim, str(tmp_path), layers=[extra, extra])
    with pytest.raises(ValueError, match=r"\['seconds'\]"):
        seconds = lambda ctx: {}  # noqa: E731
        seconds.name = "seconds"
        simulate_world(sim, str(tmp_path), layers=[seconds])
    with pytest.raises(ValueError, match="needs a name"):
        simulate_world(sim, str(tmp_path), layers=[lambda ctx: {}])
    assert not (tmp_path / "raw").exists()

    def broken(ctx):
        return [1]

    with pytest.raises(TypeError, match="broken"):
        simulate_world(sim, str(tmp_path), layers=[broken])


# ---------------------------------------------------------------- 3. layer_rng
def test_layer_rng_streams_differ_per_layer_and_seed_and_never_equal_the_main_stream():
    def head(g: np.random.Generator) -> list[int]:
        return g.integers(0, 2**32, 8).tolist()

    names = ("media", "transfers", "test", "Media", "media ")
    streams = {n: head(layer_rng(42, n)) for n in names}
    assert len({tuple(s) for s in streams.values()}) == len(names)
    assert head(layer_rng(42, "media")) == streams["media"]  # same name, same stream
    assert head(layer_rng(43, "media")) != streams["media"]
    main = head(np.random.default_rng(42))
    dealers = head(np.random.default_rng([42, 1]))  # the card dealers' own stream
    assert all(s not in (main, dealers) for s in streams.values())
    with pytest.raises(ValueError):
        layer_rng(42, "")


def test_layer_rng_is_stable_across_processes_and_releases():
    # Pinned: SeedSequence(42, spawn_key=(crc32(name),)) -> PCG64. A change here changes every
    # world with that layer in it.
    pinned = {"media": [1822911878, 2976310761, 1763594093], "transfers": [3897963209, 3283695810, 218907313]}
    code = ("import json; from riskgraph.simulator import layer_rng; "
            "print(json.dumps({n: layer_rng(42, n).integers(0, 2**32, 3).tolist() for n in ('media', 'transfers')}))")
    for hash_seed in ("1", "2"):  # Python's str hash differs between these; the streams must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                             cwd=Path(__file__).resolve().parents[1])
        assert json.loads(out.stdout) == pinned
    assert {n: layer_rng(42, n).integers(0, 2**32, 3).tolist() for n in pinned} == pinned
