"""Credit-model evaluation: KS against scipy / toad, out-of-time splits, the model comparison, the feature
ablation, and the evaluate job end to end on a tiny Delta world (bronze + feature store + MLflow)."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from riskgraph.features import evaluation as E

# --------------------------------------------------------------------------- KS vs scipy
SIZES = [(1, 1), (1, 6), (3, 2), (5, 5), (12, 40), (60, 60), (150, 850), (900, 30)]
KINDS = ["continuous", "ties", "binary"]
KS_CASES = [pytest.param(i, nb, ng, kind, id=f"bad{nb}-good{ng}-{kind}")
            for i, ((nb, ng), kind) in enumerate((s, k) for s in SIZES for k in KINDS)]


def _scores(rng, n, kind, shift):
    if kind == "continuous":
        return rng.normal(shift, 1.0, n)
    if kind == "ties":  # few distinct values: many ties inside and across classes
        return np.round(rng.normal(shift, 1.0, n)).clip(-2, 3)
    return (rng.uniform(size=n) < 0.4 + 0.2 * shift).astype(float)  # binary score: heavy ties


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value on tiny/tied samples; the statistic is exact
@pytest.mark.parametrize("case, n_bad, n_good, kind", KS_CASES)
def test_ks_statistic_matches_scipy_ks_2samp(case, n_bad, n_good, kind):
    rng = np.random.default_rng(1000 + case)
    bad, good = _scores(rng, n_bad, kind, 0.5), _scores(rng, n_good, kind, 0.0)
    y = np.r_[np.ones(n_bad, int), np.zeros(n_good, int)]
    s = np.r_[bad, good]
    perm = rng.permutation(len(y))  # order must not matter
    got = E.ks_statistic(y[perm], s[perm])
    assert got == pytest.approx(ks_2samp(bad, good, method="asymp").statistic, abs=1e-12)
    # the one-band-per-score table reaches exactly the same maximum
    assert E.ks_table(y, s, bins=None)["ks"].max() == pytest.approx(got, abs=1e-12)


def test_ks_statistic_reproduces_toads_published_value():
    # toad's tests/test_metrics.py: seed 1, 500 uniform scores, random targets → KS 0.055367756612569874
    np.random.seed(1)
    feature = np.random.rand(500)
    target = np.random.randint(2, size=500)
    assert E.ks_statistic(target, feature) == pytest.approx(0.055367756612569874, abs=1e-12)


def test_ks_statistic_ties_are_one_threshold():
    # Scores tie across classes: no cut separates them, so KS is 0.5, not a row-wise cumsum's 1.0.
    import toad

    y = np.array([1, 0, 1, 0])
    s = np.array([0.7, 0.7, 0.2, 0.9])
    assert E.ks_statistic(y, s) == pytest.approx(ks_2samp([0.7, 0.2], [0.7, 0.9]).statistic)
    assert E.ks_statistic(y, s) == 0.5 == toad.metrics.KS(s, y)


@pytest.mark.parametrize("seed", range(6))
def test_ks_statistic_equals_toad(seed):
    """toad.metrics.KS itself, on scores with and without ties (rounded scores tie a lot)."""
    import toad

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    s = rng.random(400) + 0.3 * y
    if seed % 2:
        s = np.round(s, 1)
    assert E.ks_statistic(y, s) == pytest.approx(toad.metrics.KS(s, y), abs=1e-12)


@pytest.mark.parametrize("y, s, message", [
    pytest.param([0, 0, 0], [0.1, 0.2, 0.3], "both bads and goods", id="no-bads"),
    pytest.param([1, 1], [0.1, 0.2], "both bads and goods", id="no-goods"),
    pytest.param([0, 2, 1], [0.1, 0.2, 0.3], "only 0", id="bad-label"),
    pytest.param([0, 1, 1], [0.1, np.nan, 0.3], "NaN", id="nan-score"),
    pytest.param([0, 1], [0.1, 0.2, 0.3], "equal length", id="length"),
])
def test_ks_statistic_rejects_bad_input(y, s, message):
    with pytest.raises(ValueError, match=message):
        E.ks_statistic(y, s)


def test_lift_by_decile_on_a_hand_checked_ranking():
    s = np.arange(1, 21, dtype=float)  # 20 scores, 2 per decile
    y = np.zeros(20, int)
    y[[19, 18, 10]] = 1  # the two highest scores and one in the middle
    t = E.lift_by_decile(y, s)
    assert t["decile"].tolist() == list(range(1, 11))
    assert t["n"].tolist() == [2] * 10
    assert t.loc[0, ["min_score", "max_score"]].tolist() == [19.0, 20.0]
    assert t.loc[0, "bad_rate"] == 1.0 and t.loc[0, "lift"] == pytest.approx(1.0 / 0.15)
    assert t["bads"].tolist() == [2, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert t["cum_bad_share"].iloc[-1] == pytest.approx(1.0)
    assert t.loc[4, "cum_bad_share"] == pytest.approx(1.0) and t.loc[3, "cum_bad_share"] == pytest.approx(2 / 3)


def test_ks_table_deciles_never_exceed_the_exact_ks():
    rng = np.random.default_rng(7)
    y = (rng.uniform(size=3000) < 0.1).astype(int)
    s = rng.normal(size=3000) + y
    t = E.ks_table(y, s, bins=10)
    assert len(t) == 10 and t["n"].sum() == 3000 and t["bads"].sum() == y.sum()
    assert t["min_score"].is_monotonic_decreasing
    assert 0 < t["ks"].max() <= E.ks_statistic(y, s) + 1e-12


def test_ks_curve_figure_marks_the_ks():
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=400) < 0.3).astype(int)
    s = rng.normal(size=400) + y
    fig = E.ks_curve_figure(y, s, title="t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(f"KS = {E.ks_statistic(y, s):.4f}" in lab for lab in labels), labels


# --------------------------------------------------------------------------- IV and PSI vs toad
def _iv_case(kind: str, rng, n: int):
    """(feature, target) of a kind; the target depends on the feature so IV is not ~0."""
    if kind == "normal":
        x = rng.normal(size=n)
    elif kind == "lognormal-tail":
        x = rng.lognormal(2, 1.2, n)
    elif kind == "few-values":  # <= 10 distinct: toad keeps them unbinned, and so do we
        x = rng.poisson(1.2, n).clip(0, 6).astype(float)
    elif kind == "many-ties":  # > 10 distinct with heavy ties at 0: quantile edges collapse
        x = (rng.poisson(0.5, n) * rng.integers(1, 40, n)).astype(float)
    else:  # "empty-bad-bin": the top bin holds no bads at all (toad counts a zero as one)
        x = rng.normal(size=n)
        y = (rng.uniform(size=n) < 0.25).astype(int)
        y[x > np.quantile(x, 0.9)] = 0
        return x, y
    p = 1 / (1 + np.exp(-(-1.5 + 0.8 * (x - np.median(x)) / (np.std(x) + 1e-9))))
    return x, (rng.uniform(size=n) < p).astype(int)


IV_KINDS = ["normal", "lognormal-tail", "few-values", "many-ties", "empty-bad-bin"]


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("kind", IV_KINDS)
def test_information_value_matches_toad(kind, seed):
    import toad

    rng = np.random.default_rng(100 + seed)
    x, y = _iv_case(kind, rng, int(rng.integers(300, 3000)))
    got = E.information_value(x, y)
    assert got == pytest.approx(float(toad.stats.IV(x, y, method="quantile", n_bins=10)), rel=1e-12, abs=1e-15)
    iv, table = E.information_value(x, y, return_table=True)
    assert iv == got and table["n"].sum() == len(x) and table["bads"].sum() == y.sum()
    assert table["iv"].ge(0).all()  # every bin's (bad share - good share) * WoE is >= 0


def test_information_value_categorical_and_missing_bins_follow_toads_formula():
    import toad
    from toad.stats import _IV as toad_iv_on_bins

    rng = np.random.default_rng(8)
    levels = rng.choice(["app", "web", "agent", "branch"], 2000, p=[0.5, 0.3, 0.15, 0.05])
    y = (rng.uniform(size=2000) < np.where(levels == "agent", 0.4, 0.1)).astype(int)
    assert E.information_value(levels, y, categorical=True) == pytest.approx(float(toad.stats.IV(levels, y)), rel=1e-12)
    # missing values are a bin of their own; on the same bins the formula is toad's
    x = rng.normal(size=2000)
    x[rng.uniform(size=2000) < 0.2] = np.nan
    bins = E.assign_bins(x, E.bin_edges(x))
    assert (bins == E.MISSING_BIN).sum() == np.isnan(x).sum()
    assert E.information_value(x, y) == pytest.approx(float(toad_iv_on_bins(bins, y)[0]), rel=1e-12)


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_psi_matches_toad_on_the_same_bins(seed):
    import toad
    from toad.merge import merge as toad_merge

    rng = np.random.default_rng(200 + seed)
    base, actual = rng.normal(0, 1, 2000), rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.3), 900)
    b, splits = toad_merge(base, method="quantile", n_bins=10, return_splits=True)  # toad's own deciles
    np.testing.assert_array_equal(E.bin_edges(base), splits)
    np.testing.assert_array_equal(E.bin_edges(base, split_point_masses=True), splits)  # no point mass: same bins
    assert E.psi(base, actual) == pytest.approx(float(toad.metrics.PSI(np.digitize(actual, splits), b)), rel=1e-12)
    cats_b, cats_a = rng.choice(list("abcd"), 800), rng.choice(list("abcd"), 700, p=[0.1, 0.2, 0.3, 0.4])
    assert E.psi(cats_b, cats_a, categorical=True) == pytest.approx(float(toad.metrics.PSI(cats_a, cats_b)), rel=1e-12)
    assert E.psi(base, base) == 0.0


def test_psi_from_counts_floors_a_one_sided_bin():
    # toad would drop bin 2 (NaN log ratio) and report 0 for these two samples
    got = E.psi_from_counts({0: 50, 1: 50}, {0: 40, 1: 40, 2: 20})
    e = E.PSI_EMPTY_SHARE
    expected = 2 * (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.2 - e) * np.log(0.2 / e)
    assert got == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="rows in both samples"):
        E.psi_from_counts({}, {0: 1})


def test_feature_stability_ranks_signal_and_flags_drift():
    import toad
    from toad.stats import _IV as toad_iv_on_bins

    df = _synthetic(6000, True, seed=21)
    rng = np.random.default_rng(1)
    df["drifting"] = np.where(df["application_ts"] < pd.Timestamp("2026-02-15"), 0.0, 2.0) + rng.normal(size=len(df))
    # a count that is 0 for ~93% of applications and carries signal: toad's deciles are all 0
    df["sparse_count"] = np.where(rng.uniform(size=len(df)) < np.where(df["is_bad"] == 1, 0.25, 0.05),
                                  rng.integers(1, 30, len(df)), 0).astype(float)
    train, _, test = E.oot_split(df, "application_ts", "2026-02-15", "2026-03-01")
    t = E.feature_stability(train, test, ["x1", "extra", "channel", "drifting", "sparse_count"], ["channel"]).set_index("feature")
    assert list(t.columns) == ["kind", "bins", "iv_train", "iv_band", "iv_test", "iv_train_toad", "psi_train_test",
                               "psi_band", "missing_train", "missing_test"]
    assert t.index[0] == "extra" and t.loc["extra", "iv_band"] in ("strong", "suspicious")  # ranked by IV
    assert t.loc["drifting", "psi_band"] == "major shift" and t.loc["x1", "psi_band"] == "stable"
    # without a point mass the stability bins are toad's deciles: both IVs are toad's IV
    for f in ("x1", "extra"):
        toad_iv = float(toad.stats.IV(train[f], train["is_bad"], method="quantile", n_bins=10))
        assert t.loc[f, "iv_train"] == pytest.approx(toad_iv) and t.loc[f, "iv_train_toad"] == pytest.approx(toad_iv)
    # with one, toad's own bins collapse (IV 0); on the stability bins toad's formula sees the signal
    y = train["is_bad"].to_numpy()
    assert t.loc["sparse_count", "iv_train_toad"] == pytest.approx(float(toad.stats.IV(train["sparse_count"], y, method="quantile", n_bins=10)))
    assert t.loc["sparse_count", "iv_train_toad"] == 0.0 and t.loc["sparse_count", "bins"] == 2
    stable = E.bin_edges(train["sparse_count"], split_point_masses=True)
    assert t.loc["sparse_count", "iv_train"] == pytest.approx(float(toad_iv_on_bins(np.digitize(train["sparse_count"], stable), y)[0]))
    assert t.loc["sparse_count", "iv_train"] > 0.1
    # test-split IV and PSI are on the training split's bins
    edges = E.bin_edges(train["extra"], split_point_masses=True)
    assert t.loc["extra", "iv_test"] == pytest.approx(E.information_value(test["extra"], test["is_bad"], edges=edges))
    assert t.loc["extra", "psi_train_test"] == pytest.approx(E.psi(train["extra"], test["extra"]))
    assert (t.loc["channel", "kind"], t.loc["channel", "bins"]) == ("categorical", 3)


# --------------------------------------------------------------------------- OOT split
def _times(tz=None):
    ts = pd.to_datetime(["2026-01-31 23:59:59.999999", "2026-02-01 00:00:00", "2026-02-14 12:00",
                         "2026-02-15 00:00:00", "2026-03-01", "2026-01-01"], format="ISO8601")
    return ts.tz_localize(tz) if tz else ts


@pytest.mark.parametrize("tz", [None, "UTC"], ids=["naive-utc", "tz-aware"])
@pytest.mark.parametrize("bounds", [("2026-02-01", "2026-02-15"), (dt.date(2026, 2, 1), dt.date(2026, 2, 15))],
                         ids=["iso-strings", "dates"])
def test_oot_split_boundary_rows_go_to_the_later_split(tz, bounds):
    df = pd.DataFrame({"application_ts": _times(tz), "k": range(6)})
    train, valid, test = E.oot_split(df, "application_ts", *bounds)
    assert sorted(train["k"]) == [0, 5]
    assert sorted(valid["k"]) == [1, 2]  # exactly train_until → valid
    assert sorted(test["k"]) == [3, 4]   # exactly valid_until → test


@pytest.mark.parametrize("bounds, message", [
    pytest.param(("2026-02-15", "2026-02-01"), "must be before", id="reversed"),
    pytest.param(("2026-02-01", "2026-02-01"), "must be before", id="equal"),
])
def test_oot_split_rejects_bad_bounds(bounds, message):
    df = pd.DataFrame({"application_ts": _times()})
    with pytest.raises(ValueError, match=message):
        E.oot_split(df, "application_ts", *bounds)


def test_oot_split_names_a_missing_column_and_rejects_null_times():
    with pytest.raises(KeyError, match=r"application_ts.*present: \['t'\]"):
        E.oot_split(pd.DataFrame({"t": _times()}), "application_ts", "2026-02-01", "2026-02-15")
    df = pd.DataFrame({"application_ts": pd.to_datetime(["2026-01-05", None])})
    with pytest.raises(ValueError, match="null in 1 row"):
        E.oot_split(df, "application_ts", "2026-02-01", "2026-02-15")


# --------------------------------------------------------------------------- models
PARAMS = dict(n_estimators=200, learning_rate=0.1, num_leaves=7, min_child_samples=40)


def _synthetic(n: int, informative: bool, seed: int) -> pd.DataFrame:
    """A credit world: x1 and channel carry signal; ``extra`` carries strong signal or none."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.uniform(0, 90, n), unit="D")
    x1, extra = rng.normal(size=n), rng.normal(size=n)
    channel = rng.choice(["app", "web", "agent"], n)
    logit = -2.2 + 0.7 * x1 + 0.3 * (channel == "agent") + (1.4 * extra if informative else 0.0)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"application_ts": ts, "x1": x1, "channel": channel, "extra": extra, "is_bad": y})


@pytest.mark.parametrize("informative, n", [(True, 5000), (False, 20000)], ids=["signal-feature", "noise-feature"])
def test_compare_models_uplift_follows_the_added_features_signal(informative, n):
    train, valid, test = E.oot_split(_synthetic(n, informative, seed=11), "application_ts", "2026-02-15", "2026-03-01")
    r = E.compare_models(train, valid, test, ["x1", "channel"], ["x1", "channel", "extra"], ["channel"], PARAMS, [1, 2])
    assert r["seeds"] == [1, 2] and (r["n_train"], r["n_valid"], r["n_test"]) == (len(train), len(valid), len(test))
    for m in ("baseline", "enriched"):
        assert len(r[m]["ks"]) == 2 and len(r[m]["auc"]) == 2
        assert r[m]["ks_mean"] == pytest.approx(np.mean(r[m]["ks"]))
        assert r[m]["ks_sd"] == pytest.approx(np.std(r[m]["ks"], ddof=1))
        # per-seed metrics are what the returned model scores give on test
        y = test["is_bad"].to_numpy()
        s = r["test_scores"][m][1]
        assert r[m]["ks"][1] == pytest.approx(ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)
        assert r[m]["auc"][1] == pytest.approx(roc_auc_score(y, s))
    assert r["ks_uplift"] == pytest.approx(r["enriched"]["ks_mean"] - r["baseline"]["ks_mean"])
    if informative:
        assert r["ks_uplift"] > 0.1 and r["auc_uplift"] > 0.05
    else:
        assert abs(r["ks_uplift"]) < 0.02 and abs(r["auc_uplift"]) < 0.02


def test_fit_lgbm_is_deterministic_per_seed_and_seeds_differ():
    train, valid, test = E.oot_split(_synthetic(4000, True, seed=5), "application_ts", "2026-02-15", "2026-03-01")
    feats = ["x1", "channel", "extra"]
    a = E.predict_score(E.fit_lgbm(train, valid, feats, ["channel"], PARAMS, seed=7), test)
    b = E.predict_score(E.fit_lgbm(train, valid, feats, ["channel"], PARAMS, seed=7), test)
    c = E.predict_score(E.fit_lgbm(train, valid, feats, ["channel"], PARAMS, seed=8), test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_canonical_order_makes_the_fit_independent_of_the_collected_row_order():
    """A spine collected from Spark comes in file order; shuffled, the raw fit moves, and
    canonical_order gives the same rows, order and scores back."""
    df = _synthetic(4000, True, seed=5).assign(application_id=lambda d: [f"A{i:05d}" for i in range(len(d))])
    shuffled = df.sample(frac=1.0, random_state=3)
    feats, params = ["x1", "channel", "extra"], {**PARAMS, "bagging_fraction": 0.7, "bagging_freq": 1}

    def scores(frame):
        train, valid, test = E.oot_split(frame, "application_ts", "2026-02-15", "2026-03-01")
        test = test.sort_values("application_id")
        return E.predict_score(E.fit_lgbm(train, valid, feats, ["channel"], params, seed=7), test)

    a, b = E.canonical_order(df), E.canonical_order(shuffled)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(scores(a), scores(b))
    assert not np.array_equal(scores(df.sort_values("x1")), scores(shuffled))  # why it is needed
    with pytest.raises(KeyError, match="application_id"):
        E.canonical_order(df.drop(columns="application_id"))


def test_predict_score_treats_an_unseen_category_as_missing():
    train, valid, test = E.oot_split(_synthetic(3000, True, seed=2), "application_ts", "2026-02-15", "2026-03-01")
    model = E.fit_lgbm(train, valid, ["x1", "channel"], ["channel"], PARAMS, seed=1)
    assert model.pandas_categorical == [["agent", "app", "web"]]
    unseen = test.assign(channel="branch")
    missing = test.assign(channel=None)
    np.testing.assert_array_equal(E.predict_score(model, unseen), E.predict_score(model, missing))


@pytest.mark.parametrize("baseline, enriched, categorical, message", [
    pytest.param(["x1", "channel"], ["x1", "extra"], ["channel"], "must contain the baseline", id="enriched-drops-baseline"),
    pytest.param(["x1"], ["x1", "extra"], ["channel"], "not features", id="stray-categorical"),
    pytest.param(["x1"], ["x1", "nope"], [], r"missing column\(s\) \['nope'\]", id="missing-column"),
])
def test_compare_models_rejects_inconsistent_feature_sets(baseline, enriched, categorical, message):
    train, valid, test = E.oot_split(_synthetic(2000, True, seed=3), "application_ts", "2026-02-15", "2026-03-01")
    with pytest.raises((ValueError, KeyError), match=message):
        E.compare_models(train, valid, test, baseline, enriched, categorical, PARAMS, [1])


# --------------------------------------------------------------------------- ablation
ABLATION_COLUMNS = ["step", "previous", "n_features", "n_added", "ks_mean", "ks_sd", "auc_mean", "auc_sd",
                    "ks_uplift_vs_previous", "ks_uplift_vs_previous_sd", "auc_uplift_vs_previous",
                    "ks_uplift_vs_baseline", "ks_uplift_vs_baseline_sd"]


def _grouped(n: int, seed: int) -> pd.DataFrame:
    """:func:`_synthetic` with ``extra`` informative, plus two pure-noise columns."""
    df = _synthetic(n, True, seed=seed)
    rng = np.random.default_rng(seed + 100)
    return df.assign(noise_a=rng.normal(size=n), noise_b=rng.integers(0, 5, n).astype(float))


@pytest.mark.parametrize("signal_first", [True, False], ids=["signal-then-noise", "noise-then-signal"])
def test_ablation_uplift_follows_each_groups_signal(signal_first, monkeypatch):
    train, valid, test = E.oot_split(_grouped(20000, seed=11), "application_ts", "2026-02-15", "2026-03-01")
    base, signal, noise = ["x1", "channel"], ["extra"], ["noise_a", "noise_b"]
    g1, g2 = (("signal", signal), ("noise", noise)) if signal_first else (("noise", noise), ("signal", signal))
    steps = [("baseline", base), (g1[0], base + g1[1]), (g2[0], base + g1[1] + g2[1]),
             ("side", base + ["noise_a"])]  # a branch off baseline, like the oracle
    fitted = []
    real_fit = E.fit_lgbm

    def counting_fit(train, valid, features, categorical, params, seed, **kw):
        fitted.append((tuple(features), seed))
        return real_fit(train, valid, features, categorical, params, seed, **kw)

    monkeypatch.setattr(E, "fit_lgbm", counting_fit)
    table, fits = E.ablation(train, valid, test, steps, ["channel"], PARAMS, [1, 2])
    monkeypatch.undo()

    # every step fit exactly once per seed, with the same seeds
    assert sorted(fitted) == sorted((tuple(f), s) for _, f in steps for s in (1, 2))
    assert list(table.columns) == ABLATION_COLUMNS
    assert table["step"].tolist() == ["baseline", g1[0], g2[0], "side"]
    assert table["previous"].tolist() == [None, "baseline", g1[0], "baseline"]
    assert table["n_features"].tolist() == [2, 2 + len(g1[1]), 5, 3]
    assert table["n_added"].tolist() == [2, len(g1[1]), len(g2[1]), 1]
    assert all(fits[name]["seeds"] == [1, 2] and fits[name]["features"] == feats for name, feats in steps)
    # a step's model for a seed is the model fit_lgbm gives for that seed alone (same splits, same seed)
    alone = E.fit_lgbm(train, valid, steps[2][1], ["channel"], PARAMS, seed=2)
    np.testing.assert_array_equal(fits[g2[0]]["test_scores"][1], E.predict_score(alone, test))

    y = test["is_bad"].to_numpy()
    t = table.set_index("step")
    for name, feats in steps:
        s = fits[name]["test_scores"][0]
        assert fits[name]["ks"][0] == pytest.approx(ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)
        assert t.loc[name, "ks_mean"] == pytest.approx(np.mean(fits[name]["ks"]))
        assert t.loc[name, "ks_sd"] == pytest.approx(np.std(fits[name]["ks"], ddof=1))
    for name, prev in (("signal", t.loc["signal", "previous"]), ("noise", t.loc["noise", "previous"]), ("side", "baseline")):
        d = np.subtract(fits[name]["ks"], fits[prev]["ks"])  # paired by seed
        assert t.loc[name, "ks_uplift_vs_previous"] == pytest.approx(d.mean(), abs=1e-12)
        assert t.loc[name, "ks_uplift_vs_previous_sd"] == pytest.approx(np.std(d, ddof=1), abs=1e-12)
        assert t.loc[name, "auc_uplift_vs_previous"] == pytest.approx(np.mean(np.subtract(fits[name]["auc"], fits[prev]["auc"])))
        assert t.loc[name, "ks_uplift_vs_baseline"] == pytest.approx(t.loc[name, "ks_mean"] - t.loc["baseline", "ks_mean"])
    assert np.isnan(t.loc["baseline", "ks_uplift_vs_previous"]) and t.loc["baseline", "ks_uplift_vs_baseline"] == 0.0

    # the signal group lifts KS whichever comes first; the noise group adds nothing
    assert t.loc["signal", "ks_uplift_vs_previous"] > 0.15
    assert abs(t.loc["noise", "ks_uplift_vs_previous"]) < 0.02
    assert abs(t.loc["side", "ks_uplift_vs_previous"]) < 0.02


def _fit(seeds, ks, auc):
    return {"seeds": list(seeds), "ks": list(ks), "auc": list(auc)}


def test_ablation_table_pairs_seeds_and_compares_each_step_with_the_one_it_extends():
    steps = [("base", ["a"]), ("more", ["a", "b"]), ("most", ["a", "b", "c", "d"]), ("oracle", ["a", "truth"])]
    fits = {"base": _fit([3, 5, 8], [0.20, 0.30, 0.25], [0.60, 0.70, 0.65]),
            "more": _fit([3, 5, 8], [0.30, 0.35, 0.40], [0.70, 0.72, 0.74]),
            "most": _fit([3, 5, 8], [0.30, 0.36, 0.39], [0.71, 0.72, 0.73]),
            "oracle": _fit([3, 5, 8], [0.50, 0.60, 0.55], [0.80, 0.85, 0.90])}
    t = E.ablation_table(steps, fits).set_index("step")
    assert t["previous"].tolist() == [None, "base", "more", "base"]
    assert t["n_added"].tolist() == [1, 1, 2, 1]
    # hand-computed: more − base per seed = 0.10, 0.05, 0.15
    assert t.loc["more", "ks_uplift_vs_previous"] == pytest.approx(0.10)
    assert t.loc["more", "ks_uplift_vs_previous_sd"] == pytest.approx(0.05)
    assert t.loc["more", "auc_uplift_vs_previous"] == pytest.approx((0.10 + 0.02 + 0.09) / 3)
    # most − more = 0, 0.01, −0.01; most − base = 0.10, 0.06, 0.14
    assert t.loc["most", "ks_uplift_vs_previous"] == pytest.approx(0.0, abs=1e-15)
    assert t.loc["most", "ks_uplift_vs_previous_sd"] == pytest.approx(0.01)
    assert t.loc["most", "ks_uplift_vs_baseline"] == pytest.approx(0.10)
    assert t.loc["most", "ks_uplift_vs_baseline_sd"] == pytest.approx(0.04)
    assert t.loc["oracle", "ks_uplift_vs_previous"] == pytest.approx(0.30) == t.loc["oracle", "ks_uplift_vs_baseline"]
    assert t.loc["base", "ks_sd"] == pytest.approx(0.05) and t.loc["base", "auc_mean"] == pytest.approx(0.65)

    with pytest.raises(ValueError, match=r"same seeds; got \[3, 5, 9\] and \[3, 5, 8\]"):
        E.ablation_table(steps, {**fits, "most": _fit([3, 5, 9], [0.3] * 3, [0.7] * 3)})
    with pytest.raises(KeyError, match=r"no fit for step\(s\) \['oracle'\]"):
        E.ablation_table(steps, {k: v for k, v in fits.items() if k != "oracle"})


@pytest.mark.parametrize("steps, categorical, message", [
    pytest.param([], [], "at least one step", id="no-steps"),
    pytest.param([("b", ["x1"]), ("b", ["x1", "extra"])], [], "names repeat", id="repeated-name"),
    pytest.param([("b", ["x1"]), ("e", ["x1", "extra"]), ("f", ["extra", "x1"])], [], "'e' and 'f' have the same features",
                 id="same-features"),
    pytest.param([("b", ["x1", "channel"]), ("e", ["x1", "extra"])], [], r"must contain the first step 'b'; it lacks \['channel'\]",
                 id="drops-baseline"),
    pytest.param([("b", ["x1"]), ("e", ["x1", "extra", "extra"])], [], "lists a feature twice", id="feature-twice"),
    pytest.param([("b", ["x1"]), ("e", ["x1", "extra"])], ["channel"], "not features of any step", id="stray-categorical"),
    pytest.param([("b", ["x1"]), ("e", ["x1", "nope"])], [], r"ablation train: missing column\(s\) \['nope'\]", id="missing-column"),
])
def test_ablation_rejects_inconsistent_steps(steps, categorical, message):
    train, valid, test = E.oot_split(_synthetic(600, True, seed=3), "application_ts", "2026-02-15", "2026-03-01")
    with pytest.raises((ValueError, KeyError), match=message):
        E.ablation(train, valid, test, steps, categorical, PARAMS, [1])


def test_ablation_steps_without_multimodal_columns_are_baseline_and_structured():
    from riskgraph.config import load_config
    from riskgraph.schemas import feature_specs

    specs = feature_specs(load_config("test", overrides={"features.shared_neighbour_types": []}))  # media disabled
    steps, skipped = E.ablation_steps(E.BASELINE_FEATURES, specs)
    assert [name for name, _ in steps] == ["baseline", "structured"]
    assert steps[0][1] == list(E.BASELINE_FEATURES)
    assert steps[1][1] == list(E.BASELINE_FEATURES) + [s.name for s in specs if s.as_of != "key"]
    assert "application_id" not in steps[1][1] and "as_of_ts" not in steps[1][1]
    assert skipped == {"shared_neighbours": "not in the feature catalog", "multimodal": "not in the feature catalog"}
    # the test world's default: shared neighbours between structured and multimodal
    on = feature_specs(load_config("test"))
    steps, skipped = E.ablation_steps(E.BASELINE_FEATURES, on)
    assert [name for name, _ in steps] == ["baseline", "structured", "shared_neighbours"]
    assert steps[2][1][len(steps[1][1]):] == [s.name for s in on if s.group == "shared_neighbours"]
    assert steps[2][1][len(steps[1][1]):] and all(c.startswith(("sn_", "reuse_")) for c in steps[2][1][len(steps[1][1]):])


def test_ablation_steps_add_each_group_on_top_of_the_previous_one():
    from pyspark.sql.types import LongType, StringType

    from riskgraph.schemas import FeatureSpec

    specs = [FeatureSpec("application_id", StringType(), "key", as_of="key"),
             FeatureSpec("face_matches", LongType(), "m", group="multimodal"),
             FeatureSpec("prior_apps_same_phone", LongType(), "s"),
             FeatureSpec("voice_matches", LongType(), "m", group="multimodal"),
             FeatureSpec("pit_component_size", LongType(), "s", group="structured")]
    steps, skipped = E.ablation_steps(["amount", "channel"], specs)
    assert steps == [("baseline", ["amount", "channel"]),
                     ("structured", ["amount", "channel", "prior_apps_same_phone", "pit_component_size"]),
                     ("multimodal", ["amount", "channel", "prior_apps_same_phone", "pit_component_size",
                                     "face_matches", "voice_matches"])]
    assert skipped == {"shared_neighbours": "not in the feature catalog"}
    only_media = [s for s in specs if s.group == "multimodal" or s.as_of == "key"]
    assert E.ablation_steps(["amount"], only_media) == (
        [("baseline", ["amount"]), ("multimodal", ["amount", "face_matches", "voice_matches"])],
        {"structured": "not in the feature catalog", "shared_neighbours": "not in the feature catalog"})
    with pytest.raises(ValueError, match="group 'media'; expected one of"):
        E.ablation_steps(["amount"], [FeatureSpec("x", LongType(), "d", group="media")])
    with pytest.raises(ValueError, match="'amount' has the name of a baseline feature"):
        E.ablation_steps(["amount"], [FeatureSpec("amount", LongType(), "d")])


# --------------------------------------------------------------------------- Spark spine
def test_build_labelled_spine_labels_and_maturity(spark):
    from pyspark.testing import assertDataFrameEqual

    from riskgraph import schemas as S

    def T(*a):  # aware UTC: independent of the test process's local time zone
        return dt.datetime(*a, tzinfo=dt.timezone.utc)

    apps = spark.createDataFrame([
        # id, applicant, ts, amount, term, income, channel, product
        ("A1", "P1", T(2026, 1, 10, 8), 1200.0, 12, 100.0, "app", "cash"),      # bad known on day 29 → 1
        ("A2", "P2", T(2026, 1, 10, 8), 1000.0, 10, 0.0, "web", "cash"),        # bad known on day 31 → 0; income 0
        ("A3", "P1", T(2026, 3, 31, 23, 59, 59), 500.0, 5, 50.0, "agent", "sme"),  # matured on the run date's last second
        ("A4", "P2", T(2026, 4, 1, 0, 0, 0), 500.0, 5, 50.0, "app", "sme"),    # horizon = next day → not matured
        ("A5", "P3", T(2026, 2, 1), 300.0, None, 30.0, "app", "cash"),          # late default + early fraud → earliest bad
    ], "application_id string, applicant_id string, application_ts timestamp, amount double, term_months int, "
       "declared_income double, channel string, product string")
    people = spark.createDataFrame([("P1", 1990, "R1"), ("P2", 1980, "R2"), ("P3", None, None)],
                                   "applicant_id string, birth_year int, region string")
    outcomes = spark.createDataFrame([
        ("A1", "default", T(2026, 2, 8, 8)), ("A1", "good", T(2026, 1, 20)),
        ("A2", "fraud_confirmed", T(2026, 2, 10, 8, 0, 1)),
        ("A3", "default", T(2026, 4, 30, 23, 59, 59)),  # exactly at the horizon: still inside the window
        ("A5", "default", T(2026, 4, 1)), ("A5", "fraud_confirmed", T(2026, 2, 5)),
    ], "application_id string, outcome string, known_ts timestamp")
    feats = spark.createDataFrame([("A1", T(2026, 1, 10, 8), 3), ("A3", T(2026, 3, 31, 23, 59, 59), 0),
                                   ("A4", T(2026, 4, 1), 1), ("A5", T(2026, 2, 1), 7)],
                                  "application_id string, as_of_ts timestamp, prior_apps_same_device long")
    got = E.build_labelled_spine(apps, people, outcomes, feats, run_date=dt.date(2026, 4, 30), target_days=30,
                                 network_features=["prior_apps_same_device"])
    expected = spark.createDataFrame([
        ("A1", T(2026, 1, 10, 8), 1, 1200.0, 12.0, 100.0, 1.0, 36.0, "app", "cash", "R1", 3.0, T(2026, 1, 10, 8), True),
        ("A2", T(2026, 1, 10, 8), 0, 1000.0, 10.0, 0.0, None, 46.0, "web", "cash", "R2", None, None, None),
        ("A3", T(2026, 3, 31, 23, 59, 59), 1, 500.0, 5.0, 50.0, 2.0, 36.0, "agent", "sme", "R1", 0.0,
         T(2026, 3, 31, 23, 59, 59), True),
        ("A5", T(2026, 2, 1), 1, 300.0, None, 30.0, None, None, "app", "cash", None, 7.0, T(2026, 2, 1), True),
    ], got.schema)
    assertDataFrameEqual(got, expected)
    assert S.BAD_OUTCOMES == ("fraud_confirmed", "default")


def test_check_spine_counts_applications_without_feature_rows():
    spine = pd.DataFrame({
        "application_id": ["A1", "A2", "A3"],
        "application_ts": pd.to_datetime(["2026-01-02", "2026-01-03", "2026-01-03"]),
        E.HAS_FEATURE_ROW: [True, None, None],
        E.FEATURE_AS_OF: pd.to_datetime(["2026-01-02", None, None]),
    })
    with pytest.raises(E.FeatureStoreIncompleteError, match=r"2 of 3 matured applications have no row in /t \(version 4\); "
                                                            r"application dates \['2026-01-03'\]"):
        E.check_spine(spine, feature_table="/t", feature_version=4)
    shifted = spine.assign(**{E.HAS_FEATURE_ROW: True, E.FEATURE_AS_OF: pd.to_datetime(["2026-01-02"] * 3)})
    with pytest.raises(E.FeatureStoreIncompleteError, match="2 feature row.*as_of_ts different"):
        E.check_spine(shifted, feature_table="/t", feature_version=4)


# --------------------------------------------------------------------------- the job
RUN_DATE = dt.date(2026, 4, 30)  # test config: target 30 days → matured = applied before 2026-04-01
UTC = dt.timezone.utc
MATURITY_EDGE = dt.datetime(2026, 4, 1, tzinfo=UTC)


def _world(n: int = 900, seed: int = 4) -> dict:
    """Applications 2026-01-01..2026-04-20 with planted gangs: gang members are bad more
    often and stand out in the network features; income nudges the baseline."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    # applications arrive on every 4th day only: fewer date partitions keep the test quick
    days = rng.choice(np.arange(0, 110, 4), n)
    ts = [start + dt.timedelta(days=int(d), seconds=int(x)) for d, x in zip(days, rng.uniform(0, 86400, n))]
    # boundary rows: exactly at train_until (→ valid), at the maturity edge (in / out)
    ts[:3] = [dt.datetime(2026, 2, 1, tzinfo=UTC), dt.datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC), MATURITY_EDGE]
    gang = rng.uniform(size=n) < 0.2
    income = rng.lognormal(8, 0.4, n).round(2)
    p_bad = np.where(gang, 0.55, 0.05 + 0.1 * (income < 2500))
    bad = rng.uniform(size=n) < p_bad
    apps, people, outs = [], [], []
    for i in range(n):
        aid, pid = f"A{i:05d}", f"P{i:05d}"
        apps.append(dict(application_id=aid, applicant_id=pid, application_ts=ts[i],
                         product=str(rng.choice(["cash", "consumer", "sme"])), amount=float(rng.integers(5, 200) * 100),
                         term_months=int(rng.choice([6, 12, 24])), channel=str(rng.choice(["app", "web", "agent"])),
                         declared_income=float(income[i]), device_id=f"d{i}", dt=ts[i].strftime("%Y-%m-01")))
        people.append(dict(applicant_id=pid, birth_year=int(rng.integers(1955, 2004)),
                           region=str(rng.choice(["N", "S", "E", "W"])), dt="2026-01-01"))
        if bad[i]:
            late = rng.uniform() < 0.15  # known after the 30-day window → labelled good
            known = ts[i] + dt.timedelta(days=float(rng.uniform(31, 60) if late else rng.uniform(0.5, 29)))
            outs.append(dict(application_id=aid, outcome=str(rng.choice(["default", "fraud_confirmed"])), known_ts=known))
        elif rng.uniform() < 0.3:
            outs.append(dict(application_id=aid, outcome="good", known_ts=ts[i] + dt.timedelta(days=20)))
    for o in outs:
        o["dt"] = o["known_ts"].strftime("%Y-%m-01")
    return dict(apps=apps, people=people, outs=outs, gang=gang, rng_seed=seed)


def _feature_rows(cfg, world: dict, drop: set[str]) -> list[dict]:
    from riskgraph.schemas import feature_specs

    rng = np.random.default_rng(world["rng_seed"] + 1)
    specs = [s for s in feature_specs(cfg) if s.as_of != "key"]
    rows = []
    for a, g in zip(world["apps"], world["gang"]):
        if a["application_ts"] >= MATURITY_EDGE or a["application_id"] in drop:
            continue  # immature applications have no feature row yet: that must be fine
        row = dict(application_id=a["application_id"], applicant_id=a["applicant_id"], as_of_ts=a["application_ts"],
                   run_date=a["application_ts"].strftime("%Y-%m-%d"))
        for j, s in enumerate(specs):
            lam = (2.0 + j % 3) if g else 0.15
            v = rng.poisson(lam)
            row[s.name] = float(v) * 1.5 if s.name == "pit_component_age_days" else int(v)
        rows.append(row)
    return rows


def _write_world(spark, cfg, world: dict, *, drop: set[str] = frozenset(), bronze_from=None) -> None:
    from riskgraph import schemas as S
    from riskgraph import tables as T
    from riskgraph.store import DeltaRsStore

    store = DeltaRsStore()

    def write(table, rows, schema):
        cols = [f.name for f in schema.fields]
        df = spark.createDataFrame([tuple(r.get(c) for c in cols) for r in rows], schema).coalesce(1)
        parts = sorted({r[table.partition_col] for r in rows})
        store.write(df, table.uri(cfg), partition_col=table.partition_col, partitions=parts, run_id="t")

    if bronze_from is None:
        write(T.BRONZE_APPLICATIONS, world["apps"], S.struct(S.BRONZE_APPLICATIONS))
        write(T.BRONZE_APPLICANTS, world["people"], S.struct(S.BRONZE_APPLICANTS))
        write(T.BRONZE_OUTCOMES, world["outs"], S.struct(S.BRONZE_OUTCOMES))
    else:
        shutil.copytree(T.BRONZE_APPLICATIONS.uri(bronze_from).rsplit("/", 1)[0], cfg.paths.table("bronze"))
    write(T.FEATURES, _feature_rows(cfg, world, drop), S.feature_schema(cfg))


def _cfg(tmp):
    from riskgraph.config import load_config

    return load_config("test", overrides={
        "paths.root": str(tmp / "root"), "paths.checkpoint_dir": str(tmp / "ckpt"),
        "mlflow.tracking_uri": f"sqlite:///{tmp}/mlflow.db", "mlflow.artifact_root": str(tmp / "art"),
        "evaluate.seeds": [1],  # one seed: the logged model is then the whole reported KS
        # the ablation's mechanics on two groups; shared neighbours are scored in the pipeline tests
        "features.shared_neighbour_types": [],
    })


@pytest.fixture(scope="module")
def world_cfg(spark, tmp_path_factory):
    from riskgraph import tables as T

    tmp = tmp_path_factory.mktemp("evaluate-world")
    cfg, world = _cfg(tmp), _world()
    _write_world(spark, cfg, world)
    # the simulator's ground truth (every application, gang_id null outside gangs): the oracle step
    truth = Path(T.truth_dir(cfg))
    truth.mkdir(parents=True)
    pd.DataFrame({"application_id": [a["application_id"] for a in world["apps"]],
                  "gang_id": [f"G{i % 7}" if g else None for i, g in enumerate(world["gang"])]}
                 ).to_parquet(truth / "gang_membership.parquet", index=False)
    return world, cfg, tmp


def _expected_frame(world: dict, cfg) -> pd.DataFrame:
    """The labelled, featured spine recomputed in plain Python from the generated rows."""
    feats = {r["application_id"]: r for r in _feature_rows(cfg, world, set())}
    people = {p["applicant_id"]: p for p in world["people"]}
    first_bad: dict = {}
    for o in world["outs"]:
        if o["outcome"] != "good":
            first_bad[o["application_id"]] = min(o["known_ts"], first_bad.get(o["application_id"], o["known_ts"]))
    rows = []
    for a in world["apps"]:
        horizon = a["application_ts"] + dt.timedelta(days=cfg.evaluate.target_days)
        if horizon.date() > RUN_DATE:
            continue
        p, f = people[a["applicant_id"]], feats[a["application_id"]]
        rows.append({**{k: v for k, v in f.items() if k not in ("application_id", "applicant_id", "as_of_ts", "run_date")},
                     "application_ts": a["application_ts"].replace(tzinfo=None),  # naive UTC, like toPandas
                     "is_bad": int(a["application_id"] in first_bad and first_bad[a["application_id"]] <= horizon),
                     "amount": a["amount"], "term_months": a["term_months"], "declared_income": a["declared_income"],
                     "amount_to_income": a["amount"] / (a["declared_income"] * a["term_months"]),
                     "age": a["application_ts"].year - p["birth_year"],
                     "channel": a["channel"], "product": a["product"], "region": p["region"]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def evaluated(spark, world_cfg):
    from riskgraph.jobs import evaluate
    from riskgraph.runtime import JobContext

    world, cfg, tmp = world_cfg
    return evaluate.run(spark, JobContext(cfg, RUN_DATE, RUN_DATE, "eval-test"))


def test_evaluate_job_logs_an_honest_ks_uplift_to_mlflow(world_cfg, evaluated):
    import mlflow
    from deltalake import DeltaTable

    from riskgraph import tables as T

    world, cfg, tmp = world_cfg
    res = evaluated

    # the spine, split and label recomputed without Spark
    exp = _expected_frame(world, cfg)
    t = pd.to_datetime(exp["application_ts"])
    test = exp[t >= pd.Timestamp(cfg.evaluate.valid_until)]
    assert (res["n_train"], res["n_valid"], res["n_test"]) == (
        int((t < pd.Timestamp(cfg.evaluate.train_until)).sum()),
        int(((t >= pd.Timestamp(cfg.evaluate.train_until)) & (t < pd.Timestamp(cfg.evaluate.valid_until))).sum()),
        len(test))
    assert res["feature_table_version"] == DeltaTable(T.FEATURES.uri(cfg)).version()

    # the reported KS is what the logged enriched model gives on the test period
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    booster = mlflow.lightgbm.load_model(res["enriched_model_uri"])
    X = pd.DataFrame({c: test[c] for c in booster.feature_name()})
    for c, levels in zip(["channel", "product", "region"], booster.pandas_categorical):
        X[c] = pd.Categorical(test[c], categories=levels)
    s = booster.predict(X)
    y = test["is_bad"].to_numpy()
    assert res["ks_enriched"] == pytest.approx(ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)
    assert res["auc_enriched"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert res["ks_uplift"] == pytest.approx(res["ks_enriched"] - res["ks_baseline"], abs=1e-12)
    assert res["ks_uplift"] > 0  # the planted gangs are visible only to the network features

    client = mlflow.MlflowClient()
    run = client.get_run(res["mlflow_run_id"])
    for k in ("ks_baseline", "ks_enriched", "ks_uplift", "ks_uplift_sd", "auc_baseline", "auc_enriched", "auc_uplift"):
        assert run.data.metrics[k] == pytest.approx(res[k]), k
    p = run.data.params
    assert p["feature_table_version"] == str(res["feature_table_version"])
    assert p["feature_table"] == T.FEATURES.uri(cfg) and p["run_date"] == "2026-04-30" and p["store_backend"] == "delta-rs"
    assert p["n_test"] == str(len(test)) and float(p["bad_rate_test"]) == pytest.approx(y.mean(), abs=1e-6)
    assert p["cfg.evaluate.target_days"] == "30" and all(len(v) <= 500 for v in p.values())
    assert run.data.tags["riskgraph.run_id"] == "eval-test"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"ks_curve_baseline.png", "ks_curve_enriched.png", "lift_baseline.csv", "lift_enriched.csv",
            "feature_importance_enriched.csv"} <= arts
    exp_obj = client.get_experiment(run.info.experiment_id)
    assert exp_obj.artifact_location == (tmp / "art").as_uri()
    assert (tmp / "art").is_dir() and any((tmp / "art").rglob("ks_curve_enriched.png"))
    imp = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="feature_importance_enriched.csv",
                                                          dst_path=str(tmp / "dl")))
    assert set(imp["feature"]) == set(booster.feature_name())

    # IV and out-of-time PSI per feature: a table artifact and one metric per feature
    assert {"feature_stability.csv", "feature_stability.md", "feature_stability.json"} <= arts
    stab = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="feature_stability.csv",
                                                           dst_path=str(tmp / "dl")))
    assert set(stab["feature"]) == set(booster.feature_name())
    train = exp[t < pd.Timestamp(cfg.evaluate.train_until)]
    for f in ("pit_component_size", "declared_income"):
        row = stab.set_index("feature").loc[f]
        assert run.data.metrics[f"iv_train.{f}"] == pytest.approx(row["iv_train"])
        assert run.data.metrics[f"psi_train_test.{f}"] == pytest.approx(row["psi_train_test"])
        stable = E.bin_edges(train[f], split_point_masses=True)
        assert row["iv_train"] == pytest.approx(E.information_value(train[f], train["is_bad"], edges=stable), rel=1e-9)
        assert row["iv_train_toad"] == pytest.approx(E.information_value(train[f], train["is_bad"]), rel=1e-9)
        assert row["psi_train_test"] == pytest.approx(E.psi(train[f], test[f]), rel=1e-9)
    # the planted gangs show in the network features' IV, not in the income noise
    assert stab.set_index("feature").loc["pit_component_size", "iv_train"] > stab.set_index("feature").loc["amount", "iv_train"]
    assert res["feature_psi_max"] == pytest.approx(stab["psi_train_test"].max())


def test_evaluate_job_logs_the_feature_ablation(world_cfg, evaluated):
    import mlflow

    world, cfg, tmp = world_cfg
    res = evaluated
    # media disabled in conf/test.yaml: baseline → structured, plus the oracle of the simulated world
    assert [r["step"] for r in res["ablation"]] == ["baseline", "structured", "oracle"]
    assert [r["previous"] for r in res["ablation"]] == [None, "baseline", "baseline"]
    assert res["multimodal"] == "not in the feature catalog" and res["ks_uplift_multimodal"] is None
    assert res["enriched_step"] == "structured"
    rows = {r["step"]: r for r in res["ablation"]}
    # the old keys keep their meaning: every feature-store column (here: structured) vs baseline
    assert res["ks_enriched"] == rows["structured"]["ks_mean"] and res["ks_baseline"] == rows["baseline"]["ks_mean"]
    assert res["ks_uplift_structured"] == pytest.approx(res["ks_uplift"], abs=1e-12)
    assert res["ks_uplift_structured"] == pytest.approx(rows["structured"]["ks_uplift_vs_previous"], abs=1e-12)
    # the oracle: baseline + planted gang membership, compared with the same baseline fit
    assert res["ks_oracle"] == rows["oracle"]["ks_mean"]
    assert res["ks_uplift_oracle"] == pytest.approx(res["ks_oracle"] - res["ks_baseline"], abs=1e-12)
    assert res["ks_uplift_share_of_oracle"] == pytest.approx(res["ks_uplift"] / res["ks_uplift_oracle"])
    assert res["ks_uplift_oracle"] > 0  # gang members are bad far more often

    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    run = client.get_run(res["mlflow_run_id"])
    m = run.data.metrics
    for step in ("baseline", "structured", "oracle"):
        assert m[f"ks_{step}"] == pytest.approx(rows[step]["ks_mean"]), step
    assert "ks_uplift_baseline" not in m and "ks_multimodal" not in m
    assert m["ks_uplift_structured"] == pytest.approx(res["ks_uplift_structured"])
    assert m["ks_uplift_oracle"] == pytest.approx(res["ks_uplift_oracle"])
    p = run.data.params
    assert p["ablation_steps"] == "baseline,structured,oracle" and p["ablation_skipped.multimodal"] == "not in the feature catalog"
    assert {"ablation.csv", "ablation.md"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    csv = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="ablation.csv",
                                                          dst_path=str(tmp / "dl-ablation")))
    assert csv["step"].tolist() == ["baseline", "structured", "oracle"]
    np.testing.assert_allclose(csv["ks_uplift_vs_baseline"], [rows[s]["ks_uplift_vs_baseline"] for s in csv["step"]])
    md = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="ablation.md",
                                                  dst_path=str(tmp / "dl-ablation"))).read_text()
    assert "Step `multimodal`: not in the feature catalog." in md and "| oracle | baseline |" in md


def test_evaluate_job_registers_the_enriched_model_with_its_feature_table_version(world_cfg, evaluated):
    import mlflow

    from riskgraph import tables as T
    from riskgraph.jobs import evaluate

    world, cfg, tmp = world_cfg
    res = evaluated
    assert (res["registered_model"], res["registered_model_version"]) == ("riskgraph-credit-enriched", 1)
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    mv = client.get_model_version(evaluate.REGISTERED_MODEL, str(res["registered_model_version"]))
    assert mv.status == "READY" and mv.run_id == res["mlflow_run_id"]
    assert mv.tags["riskgraph.feature_table_version"] == str(res["feature_table_version"])
    assert mv.tags["riskgraph.feature_table"] == T.FEATURES.uri(cfg)
    assert mv.tags["riskgraph.run_id"] == "eval-test" and mv.tags["mlflow_run_id"] == res["mlflow_run_id"]
    assert float(mv.tags["ks_uplift"]) == pytest.approx(res["ks_uplift"], abs=1e-6)
    # the registered version is the logged model: same trees, same scores
    registered = mlflow.lightgbm.load_model(f"models:/{evaluate.REGISTERED_MODEL}/{mv.version}")
    logged = mlflow.lightgbm.load_model(res["enriched_model_uri"])
    assert registered.model_to_string() == logged.model_to_string()


def test_evaluate_job_fails_when_a_matured_application_lacks_features(spark, world_cfg, tmp_path):
    from riskgraph.jobs import evaluate
    from riskgraph.runtime import JobContext

    world, full_cfg, _ = world_cfg
    cfg = _cfg(tmp_path)
    drop = {a["application_id"] for a in world["apps"][3:] if a["application_ts"] < MATURITY_EDGE - dt.timedelta(days=1)}
    drop = set(sorted(drop)[:3])  # three matured applications lose their feature rows
    _write_world(spark, cfg, world, drop=drop, bronze_from=full_cfg)
    with pytest.raises(E.FeatureStoreIncompleteError, match=r"feature store incomplete: 3 of \d+ matured applications"):
        evaluate.run(spark, JobContext(cfg, RUN_DATE, RUN_DATE, "eval-missing"))
    assert not (tmp_path / "mlflow.db").exists()  # failed before anything was logged
