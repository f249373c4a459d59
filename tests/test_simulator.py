"""The simulated world: contract of the landing files, determinism, and the world's shape.

No Spark here: the files are read back with pandas / the csv module, and the planted defects
are re-found by an independent validator and reconciled with ``truth/dirty_rows.parquet``.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from riskgraph.config import load_config
from riskgraph.schemas import OUTCOMES, RAW_TABLES
from riskgraph.simulator import DEFAULT_DEVICE, DEFECTS, simulate_world

TABLES = ("applications", "applicants", "outcomes")


def make_sim(**overrides):
    return load_config("test", overrides={f"simulation.{k}": v for k, v in overrides.items()}).simulation


def read_raw(root: Path, table: str) -> pd.DataFrame:
    """All landing files of a table as text, with the landing date and the row's place in its file."""
    frames = []
    for f in sorted((root / "raw" / table).glob("dt=*/part-00000.csv")):
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        frames.append(df.assign(dt=f.parent.name[3:], row=np.arange(len(df))))
    return pd.concat(frames, ignore_index=True)


def file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("raw", "truth") for p in sorted((root / sub).rglob("*")) if p.is_file()}


class World:
    def __init__(self, root: Path, sim, summary: dict):
        self.root, self.sim, self.summary = root, sim, summary
        self.raw = {t: read_raw(root, t) for t in TABLES}
        self.truth = pd.read_parquet(root / "truth" / "gang_membership.parquet")
        self.dirty = pd.read_parquet(root / "truth" / "dirty_rows.parquet")

    def clean_apps(self) -> pd.DataFrame:
        """Application rows with no planted defect, one per application, with their truth."""
        bad = self.dirty[self.dirty.source == "applications"]
        skip = set(bad.loc[bad.defect != "duplicate_id", "key"].dropna())
        apps = self.raw["applications"]
        apps = apps[(apps.application_id != "") & ~apps.application_id.isin(skip)]
        apps = apps.sort_values(["dt", "row"]).drop_duplicates("application_id")
        return apps.merge(self.truth, on="application_id", how="left", validate="one_to_one")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    sim = make_sim(n_applications=5000)
    root = tmp_path_factory.mktemp("world")
    return World(root, sim, simulate_world(sim, str(root)))


# ---------------------------------------------------------------- contract of the files
def test_same_seed_gives_identical_files_and_another_seed_another_world(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate_world(make_sim(n_applications=1500, seed=11), str(a))
    simulate_world(make_sim(n_applications=1500, seed=11), str(b))
    simulate_world(make_sim(n_applications=1500, seed=12), str(c))
    da, db, dc = file_digests(a), file_digests(b), file_digests(c)
    assert len(da) == 3 * 90 + 3  # + gang membership, dirty rows, relations
    assert da == db
    changed = [k for k in da if da[k] != dc.get(k)]
    assert len(changed) > 0.9 * len(da)


def test_resimulation_replaces_raw_and_truth(tmp_path):
    stale = tmp_path / "raw" / "applications" / "dt=1999-01-01" / "part-00000.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "old.parquet").write_text("old")
    keep = tmp_path / "bronze" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("not the simulator's")
    simulate_world(make_sim(n_applications=500), str(tmp_path))
    assert not stale.exists() and not (tmp_path / "truth" / "old.parquet").exists()
    assert keep.exists()


def test_every_date_has_one_file_per_table_with_the_declared_header(world):
    days = [(world.sim.start_date + dt.timedelta(days=i)).isoformat() for i in range(90)]
    for table in TABLES:
        names = [c.name for c in RAW_TABLES[table]]
        folders = sorted(p.name for p in (world.root / "raw" / table).iterdir())
        assert folders == [f"dt={d}" for d in days]
        for d in days:
            files = list((world.root / "raw" / table / f"dt={d}").iterdir())
            assert [f.name for f in files] == ["part-00000.csv"]
            with files[0].open(newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows[0] == names, (table, d)
            assert all(len(r) == len(names) for r in rows[1:]), (table, d)
    # a field with a comma is quoted, so it survives as one field
    employers = world.raw["applications"].employer
    assert employers.str.contains(",").any()
    assert world.raw["outcomes"].groupby("dt").size().reindex(days, fill_value=0).eq(0).any()  # quiet days exist


def test_truth_files_have_the_declared_columns(world):
    t = pq.read_schema(world.root / "truth" / "gang_membership.parquet")
    assert [(f.name, str(f.type)) for f in t] == [
        ("application_id", "string"), ("gang_id", "string"), ("is_bad", "bool"), ("outcome", "string")]
    d = pq.read_schema(world.root / "truth" / "dirty_rows.parquet")
    assert [(f.name, str(f.type)) for f in d] == [("source", "string"), ("dt", "string"), ("key", "string"), ("defect", "string")]
    assert world.truth.application_id.is_unique
    assert (world.truth.is_bad == world.truth.outcome.isin(["fraud_confirmed", "default"])).all()
    assert set(world.truth.outcome) == set(OUTCOMES)


def test_relation_truth_matches_the_raw_files(world):
    """truth/relations.parquet: one row per application; a household shares its home IP in the
    raw applications; family members (kin) of one household share the family name, and
    flatmates were really drawn apart (not all of them share it); the real employer is what an
    honest application declares."""
    rel = pd.read_parquet(world.root / "truth" / "relations.parquet")
    assert rel.application_id.is_unique and set(rel.application_id) == set(world.truth.application_id)
    people = world.raw["applicants"].drop_duplicates("applicant_id").set_index("applicant_id")
    rel = rel.merge(people[["full_name"]], left_on="applicant_id", right_index=True, how="left")
    rel["surname"] = rel.full_name.str.split(" ").str[0]
    multi = rel.drop_duplicates("applicant_id").groupby("household_id").filter(lambda g: len(g) > 1)
    assert multi.household_id.nunique() > 20
    kin = multi[multi.kin].dropna(subset=["surname"])
    assert (kin.groupby("household_id").surname.nunique() == 1).all()
    flat = multi[~multi.kin].merge(multi[multi.kin][["household_id", "surname"]], on="household_id", suffixes=("", "_kin"))
    assert len(flat) and (flat.surname != flat.surname_kin).mean() > 0.5
    apps = world.clean_apps().merge(rel[["application_id", "household_id", "employer_id"]], on="application_id")
    honest = apps[apps.gang_id.isna()]
    assert ((honest.employer == "") == (honest.employer_id < 0)).mean() > 0.99


def test_row_counts_match_the_summary(world):
    s, raw = world.summary, world.raw
    n_dups = int((world.dirty.defect == "duplicate_id").sum())
    assert n_dups > 0
    assert len(raw["applications"]) == s["rows"]["applications"] == 5000 + n_dups
    assert len(world.truth) == s["n_applications"] == 5000
    assert len(raw["applicants"]) == s["rows"]["applicants"] == s["n_applicants"]
    assert len(raw["outcomes"]) == s["rows"]["outcomes"] == s["outcomes_known"] + s["dirty_rows"]["outcomes"]["orphan"]
    ids = raw["applications"].application_id
    assert set(ids[ids != ""]) <= set(world.truth.application_id)
    assert (world.truth.gang_id.notna().sum(), world.truth.gang_id.nunique()) == (s["n_gang_apps"], s["n_gangs"])


# ---------------------------------------------------------------- dirty rows, reconciled
def find_defects(world: World) -> pd.DataFrame:
    """An independent validator over the raw text: every row that breaks a rule, with the rule."""
    found = []
    apps = world.raw["applications"]
    for key, kind in (
        (apps.application_id == "", "null_key"),
        ((apps.application_id != "") & apps.application_id.duplicated(keep="first"), "duplicate_id"),
    ):
        found.append(apps[key].assign(defect=kind))
    ts = pd.to_datetime(apps.application_ts, format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True)
    found.append(apps[ts.isna()].assign(defect="bad_timestamp"))
    found.append(apps[ts.dt.strftime("%Y-%m-%d") > apps.dt].assign(defect="future_ts"))
    amount, term = pd.to_numeric(apps.amount, errors="coerce"), pd.to_numeric(apps.term_months, errors="coerce")
    found.append(apps[amount.isna() | term.isna()].assign(defect="bad_type"))
    found.append(apps[amount <= 0].assign(defect="bad_value"))
    lat, lon = pd.to_numeric(apps.gps_lat, errors="coerce"), pd.to_numeric(apps.gps_lon, errors="coerce")
    found.append(apps[(lat.abs() > 90) | (lon.abs() > 180)].assign(defect="bad_gps"))
    out = pd.concat(found).rename(columns={"application_id": "key"}).assign(source="applications")
    outcomes = world.raw["outcomes"].rename(columns={"application_id": "key"})
    bad_label = outcomes[~outcomes.outcome.isin(OUTCOMES)].assign(defect="bad_value")
    orphan = outcomes[~outcomes.key.isin(world.truth.application_id)].assign(defect="orphan")
    people = world.raw["applicants"]
    null_person = people[people.applicant_id == ""].assign(defect="null_key", key="")
    res = pd.concat([out, pd.concat([bad_label, orphan]).assign(source="outcomes"), null_person.assign(source="applicants")])
    res["key"] = res.key.where(res.defect != "null_key", None)
    return res[["source", "dt", "key", "defect"]].sort_values(["source", "dt", "defect", "key"]).reset_index(drop=True)


def test_every_defect_is_planted_recorded_and_nothing_else_is_wrong(world):
    recorded = world.dirty.sort_values(["source", "dt", "defect", "key"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(find_defects(world), recorded, check_dtype=False)
    kinds = {(s, k) for s, ks in DEFECTS.items() for k in ks}
    assert set(zip(recorded.source, recorded.defect)) == kinds
    counts = recorded.groupby(["source", "defect"]).size()
    assert (counts >= 1).all()
    assert counts["applications"].eq(round(0.01 * 5000)).all()  # dirty_rate of the rows, per kind
    assert world.summary["dirty_rows"] == {s: {k: int(counts[s][k]) for k in ks} for s, ks in DEFECTS.items()}


def test_defects_only_touch_honest_applications_and_defective_ones_have_no_outcome(world):
    app_keys = world.dirty.loc[world.dirty.source == "applications", "key"].dropna()
    assert world.truth.set_index("application_id").loc[app_keys, "gang_id"].isna().all()
    outcome_keys = world.dirty.loc[(world.dirty.source == "outcomes") & (world.dirty.defect == "bad_value"), "key"]
    assert world.truth.set_index("application_id").loc[outcome_keys, "gang_id"].isna().all()
    # every outcome that is not a planted orphan belongs to a clean application row
    orphans = set(world.dirty.loc[world.dirty.defect == "orphan", "key"])
    keys = set(world.raw["outcomes"].application_id) - orphans
    assert keys <= set(world.clean_apps().application_id)


def test_no_dirty_rows_when_dirty_rate_is_zero(tmp_path):
    s = simulate_world(make_sim(n_applications=800, dirty_rate=0), str(tmp_path))
    assert len(pd.read_parquet(tmp_path / "truth" / "dirty_rows.parquet")) == 0
    assert s["rows"]["applications"] == 800


@pytest.mark.parametrize("overrides", [
    pytest.param(dict(n_applications=1, gang_share=0), id="one-application-no-gangs"),
    pytest.param(dict(n_applications=60, end_date="2026-01-01"), id="one-day"),
    pytest.param(dict(n_applications=5, gang_share=0.5), id="gang-smaller-than-min-size"),
    pytest.param(dict(n_applications=300, hub_noise=0, gang_share=0.5), id="no-hubs-many-gangs"),
    pytest.param(dict(n_applications=400, gang_burst_days=200, performance_days=400), id="burst-and-window-longer-than-period"),
])
def test_small_and_extreme_worlds_stay_consistent(tmp_path, overrides):
    sim = make_sim(**overrides)
    s = simulate_world(sim, str(tmp_path))
    truth = pd.read_parquet(tmp_path / "truth" / "gang_membership.parquet")
    dirty = pd.read_parquet(tmp_path / "truth" / "dirty_rows.parquet")
    apps = read_raw(tmp_path, "applications")
    assert len(truth) == sim.n_applications
    assert len(apps) == sim.n_applications + (dirty.defect == "duplicate_id").sum()
    assert truth.gang_id.notna().sum() == s["n_gang_apps"]
    assert len(read_raw(tmp_path, "applicants")) == s["n_applicants"]
    if s["n_gang_apps"]:
        assert truth.groupby("gang_id").size().min() >= 2


# ---------------------------------------------------------------- the world's shape
def test_gang_share_and_bad_rates_follow_the_config(world):
    sim, t = world.sim, world.truth
    gang = t.gang_id.notna()
    assert gang.sum() == round(sim.gang_share * sim.n_applications)
    assert t.is_bad[~gang].mean() == pytest.approx(sim.honest_bad_rate, abs=0.015)
    assert t.is_bad[gang].mean() == pytest.approx(sim.gang_bad_rate, abs=0.1)
    fraud = (t.outcome[gang & t.is_bad] == "fraud_confirmed").mean()
    assert fraud == pytest.approx(sim.gang_fraud_share, abs=0.12)
    sizes = t[gang].groupby("gang_id").size()
    assert sizes.between(sim.gang_size_min, sim.gang_size_max).all()
    assert sizes.median() < sizes.max()  # many small gangs, a few big


def test_gangs_share_resources_and_apply_in_bursts(world):
    apps = world.clean_apps()
    gang = apps[apps.gang_id.notna()]

    def share_of_gangs_with_shared(col: str) -> float:
        used = gang[gang[col] != ""].groupby(["gang_id", col]).size()
        return used[used >= 2].reset_index().gang_id.nunique() / gang.gang_id.nunique()

    assert share_of_gangs_with_shared("referrer_code") > 0.8
    assert share_of_gangs_with_shared("device_id") > 0.7
    assert share_of_gangs_with_shared("phone") > 0.7
    dev = gang.groupby(["gang_id", "device_id"]).size()
    ph = gang.groupby(["gang_id", "phone"]).size()
    linked = set(dev[dev >= 2].reset_index().gang_id) | set(ph[ph >= 2].reset_index().gang_id)
    assert len(linked) / gang.gang_id.nunique() > 0.85  # most gangs: a device or a SIM used by >= 2 members
    ts = pd.to_datetime(gang.application_ts)
    span = ts.groupby(gang.gang_id).agg(lambda s: (s.max() - s.min()).total_seconds() / 86400)
    assert (span <= world.sim.gang_burst_days + 1).all()
    # honest applications never use a gang's referrer code
    honest = apps[apps.gang_id.isna()]
    assert not set(honest.referrer_code[honest.referrer_code != ""]) & set(gang.referrer_code[gang.referrer_code != ""])


def _gangs_sharing_a_phone(root: Path) -> int:
    raw = read_raw(root, "applications")
    truth = pd.read_parquet(root / "truth" / "gang_membership.parquet")
    gang = raw.merge(truth[truth.gang_id.notna()], on="application_id")
    per_phone = gang.groupby("phone").gang_id.nunique()
    return int((per_phone >= 2).sum())


def test_card_dealers_bridge_gangs_only_when_asked_and_leave_the_rest_of_the_world_alone(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    simulate_world(make_sim(n_applications=3000, gang_share=0.2, shared_dealer_share=0.0), str(a))
    simulate_world(make_sim(n_applications=3000, gang_share=0.2, shared_dealer_share=0.5), str(b))
    assert _gangs_sharing_a_phone(a) == 0
    assert _gangs_sharing_a_phone(b) >= 5
    ra, rb = read_raw(a, "applications"), read_raw(b, "applications")
    changed = (ra.phone != rb.phone)
    assert 0 < changed.sum() <= 0.05 * len(ra)  # a SIM or two per bridging gang; nothing else moves
    assert (ra.drop(columns="phone") == rb.drop(columns="phone")).all().all()


def test_honest_sharing_makes_hubs_and_households(world):
    apps = world.clean_apps()
    honest = apps[apps.gang_id.isna()]
    assert honest.ip.value_counts().max() >= 50  # a carrier NAT IP
    assert (apps.device_id == DEFAULT_DEVICE).sum() >= 20
    assert honest.employer[honest.employer != ""].value_counts().max() >= 100
    # households: a home IP shared by 2-4 honest applicants
    people_per_ip = honest.groupby("ip").applicant_id.nunique()
    assert people_per_ip.between(2, 4).sum() >= 50
    refs = honest.referrer_code[honest.referrer_code != ""].value_counts()
    assert 1 <= refs.min() and refs.max() <= 5 and (refs >= 2).any()
    assert (honest.gps_lat == "").mean() > 0.05  # some apps have no GPS


def test_applications_follow_daily_and_weekly_seasonality(world):
    ts = pd.to_datetime(world.clean_apps().application_ts)
    per_hour = ts.dt.hour.value_counts().reindex(range(24), fill_value=0)
    assert per_hour[9:22].mean() > 3 * per_hour[1:6].mean()
    days = ts.dt.date.value_counts()
    assert len(days) == 90  # spread over the whole period
    wd = ts.dt.weekday.value_counts()
    assert wd[[0, 1, 2, 3, 4]].mean() > wd[[5, 6]].mean()


def test_outcomes_are_known_after_the_application_and_land_on_their_date(world):
    apps = world.clean_apps()[["application_id", "application_ts", "outcome"]]
    raw = world.raw["outcomes"]
    out = raw[raw.outcome.isin(OUTCOMES)].merge(apps, on="application_id", suffixes=("", "_truth"))
    assert len(out) > 1000
    known, applied = pd.to_datetime(out.known_ts), pd.to_datetime(out.application_ts)
    delay = (known - applied).dt.total_seconds() / 86400
    assert (delay > 0).all()
    assert (delay <= world.sim.performance_days).all()
    assert (delay[out.outcome == "good"] == world.sim.performance_days).all()
    assert (known.dt.strftime("%Y-%m-%d") == out.dt).all()
    assert (known.dt.date <= world.sim.end_date).all()
    assert (out.outcome == out.outcome_truth).all()
    # everything known by the end of the period is written; nothing later
    end = pd.Timestamp(world.sim.end_date, tz="UTC") + pd.Timedelta(days=1)
    all_apps = world.clean_apps()
    matured = pd.to_datetime(all_apps.application_ts) + pd.Timedelta(days=world.sim.performance_days) < end
    assert set(all_apps.application_id[matured]) <= set(raw.application_id)


def test_applicants_have_plausible_unique_pii_and_land_with_their_first_application(world):
    people = world.raw["applicants"]
    people = people[people.applicant_id != ""]
    assert people.applicant_id.is_unique and people.national_id.is_unique
    nid = people.national_id
    assert nid.str.fullmatch(r"\d{17}[\dX]").all()
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    digits = np.array([[int(ch) for ch in s[:17]] for s in nid])
    assert (np.array(list("10X98765432"))[(digits * weights).sum(1) % 11] == nid.str[17].to_numpy()).all()
    assert (nid.str[6:14] == people.birth_date.str.replace("-", "")).all()
    assert (nid.str[:2] == people.region).all()
    assert people.full_name.str.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+").all()
    apps = world.raw["applications"]
    assert apps.phone.str.fullmatch(r"1[358]\d{9}").all()
    assert apps.email.str.fullmatch(r"[a-z0-9.]+@[a-z0-9]+\.com").all()
    # one email per applicant; distinct applicants never share an email
    assert apps.groupby("email").applicant_id.nunique().max() == 1
    first = apps.groupby("applicant_id").dt.min()
    assert (people.set_index("applicant_id").dt == first.reindex(people.applicant_id)).all()
    clean = world.clean_apps().merge(people[["applicant_id", "birth_date"]], on="applicant_id")
    age = (pd.to_datetime(clean.application_ts).dt.tz_localize(None) - pd.to_datetime(clean.birth_date)).dt.days / 365.25
    assert age.between(18, 70).all()
    assert people.region.nunique() >= 25
    assert people.region.value_counts().iloc[0] > 3 * people.region.value_counts().iloc[-1]  # skewed


# ---------------------------------------------------------------- the job
def test_job_maps_named_knobs_onto_simulation_settings():
    from riskgraph.jobs.simulate import build_parser, overrides_from_args

    args = build_parser().parse_args(["--env", "test", "--set", "simulation.seed=1", "--seed", "9", "--n-applications", "1200",
                                      "--start-date", "2026-02-01", "--hub-noise", "3", "--dirty-rate", "0"])
    assert overrides_from_args(args) == {"simulation.seed": "9", "simulation.n_applications": "1200",
                                         "simulation.start_date": "2026-02-01", "simulation.hub_noise": "3",
                                         "simulation.dirty_rate": "0"}
    flags = {a.dest for a in build_parser()._actions}
    assert {"seed", "n_applications", "start_date", "end_date", "gang_share", "gang_size_min", "gang_size_max",
            "gang_size_alpha", "hub_noise", "honest_bad_rate", "gang_bad_rate", "dirty_rate"} <= flags


def test_job_main_writes_a_world_and_prints_a_summary(tmp_path, capsys):
    from riskgraph.jobs.simulate import main

    summary = main(["--env", "test", "--set", f"paths.root={tmp_path}", "--n-applications", "700", "--gang-share", "0.2"])
    assert summary["n_applications"] == 700 and summary["n_gang_apps"] == 140
    assert (tmp_path / "truth" / "gang_membership.parquet").exists()
    assert "gangs" in capsys.readouterr().out
