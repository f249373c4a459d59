"""Evaluate: KS uplift of the network features on a credit model, out of time, in MLflow.

Reads the feature table at its current version (pinned and recorded), bronze
applications / applicants / outcomes; builds the labelled spine of applications whose
performance window (evaluate.target_days) has matured by the run date; then runs a feature
ablation on the out-of-time split from config, every step a LightGBM per seed (same splits,
same seeds), early-stopped on the validation period, scored once on the test period:
``baseline`` (ordinary credit features), ``structured`` (+ the feature-store columns of
group 'structured'), ``multimodal`` (+ those of group 'multimodal', when the catalog has
any) and, on a simulated world, ``oracle`` (baseline + the planted gang membership).
"enriched" is the last non-oracle step: every feature-store column. Reports KS and AUC on
the test period exactly as they come out. Fails when a matured application has no feature
row (the feature store is incomplete). Also logs each feature's information value and its
PSI from the training to the test period (out-of-time stability), and registers the
enriched model in the MLflow Model Registry with the feature table version it was trained on.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import lightgbm
import mlflow
import mlflow.lightgbm
import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from riskgraph import tables as T
from riskgraph.features import evaluation as E
from riskgraph.io import path_exists
from riskgraph.runtime import JobContext, job_main
from riskgraph.schemas import feature_specs
from riskgraph.store import StoreError, choose_store

log = logging.getLogger("riskgraph.evaluate")

MAX_PARAM_CHARS = 500
# The Model Registry entry modellers pull the enriched model from; each evaluate run adds a
# version tagged with the feature table, its Delta version and the riskgraph run id.
REGISTERED_MODEL = "riskgraph-credit-enriched"


def _flatten(d: dict, prefix: str) -> dict[str, str]:
    """Nested config → ``{"cfg.a.b": "value"}``, values as JSON text cut to MAX_PARAM_CHARS."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            text = v if isinstance(v, str) else json.dumps(v, default=str)
            out[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 1] + "…"
    return out


def _experiment_id(cfg) -> str:
    """The configured experiment, created with the configured artifact root if missing."""
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    root = cfg.mlflow.artifact_root
    root_uri = root if "://" in root else Path(root).resolve().as_uri()
    if exp is None:
        # explicit artifact location: without it MLflow would write under ./mlruns
        return client.create_experiment(cfg.mlflow.experiment, artifact_location=root_uri)
    if exp.artifact_location.rstrip("/") != root_uri.rstrip("/"):
        log.warning("experiment %s keeps its artifacts at %s, not the configured %s",
                    cfg.mlflow.experiment, exp.artifact_location, root_uri)
    return exp.experiment_id


def _markdown(df: pd.DataFrame) -> str:
    """A small frame as a markdown table (pandas' to_markdown needs tabulate, not a dependency)."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "–"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _metric_key(prefix: str, feature: str) -> str:
    """An MLflow metric name for a feature (names allow letters, digits, _ - . / and space)."""
    return prefix + "." + "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in feature)


ORACLE_STEP, ORACLE_FEATURE = "oracle", "oracle_in_gang"
ABLATION_DOC = (
    "# Feature ablation: test KS per step\n\n"
    "Every step is a LightGBM per seed on the same out-of-time splits with the same seeds, early-stopped on the "
    "validation period and scored once on the test period. Each step is compared with `previous`, the nearest earlier "
    "step whose features it extends (the oracle, baseline + planted gang membership, with baseline); an uplift is the "
    "mean over seeds of the per-seed difference, sd its spread over seeds.\n\n")


def _ablation_text(table: pd.DataFrame, n_seeds: int) -> str:
    """The ablation table as aligned text for the job log."""
    view = pd.DataFrame({
        "step": table["step"], "features": table["n_features"],
        "KS": [f"{m:.4f}±{s:.4f}" for m, s in zip(table["ks_mean"], table["ks_sd"])],
        "AUC": [f"{m:.4f}" for m in table["auc_mean"]],
        "KS uplift vs previous": ["–" if p is None else f"{u:+.4f}±{s:.4f} vs {p}" for u, s, p in
                                  zip(table["ks_uplift_vs_previous"], table["ks_uplift_vs_previous_sd"], table["previous"])],
        "KS uplift vs baseline": [f"{u:+.4f}" for u in table["ks_uplift_vs_baseline"]],
    })
    return f"feature ablation, test KS over {n_seeds} seed(s):\n" + view.to_string(index=False)


def _ablation_records(table: pd.DataFrame) -> list[dict]:
    """The table as JSON-ready dicts for the run record (NaN → None)."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v.item() if isinstance(v, np.generic) else v)
             for k, v in row.items()} for row in table.to_dict("records")]


def _log_to_mlflow(ctx: JobContext, params: dict, metrics: dict, fits: dict[str, dict], enriched: str,
                   table: pd.DataFrame, skipped: dict[str, str], test: pd.DataFrame, stability: pd.DataFrame) -> dict:
    """One MLflow run: params (+ the flattened config), metrics, per-seed spread, the ablation
    table, KS curves, lift / KS tables, feature importance, IV / PSI per feature (table + one
    metric each) and the enriched model (first seed), registered as :data:`REGISTERED_MODEL`."""
    cfg = ctx.cfg
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    b, e, seeds = fits["baseline"], fits[enriched], fits["baseline"]["seeds"]
    with mlflow.start_run(experiment_id=_experiment_id(cfg), run_name=f"evaluate {ctx.run_date_str}") as mrun:
        mlflow.set_tags({"riskgraph.run_id": ctx.run_id, "riskgraph.step": "evaluate"})
        mlflow.log_params({**{k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()},
                           **_flatten(cfg.fingerprint(), "cfg")})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({**{_metric_key("iv_train", r.feature): r.iv_train for r in stability.itertuples()},
                            **{_metric_key("psi_train_test", r.feature): r.psi_train_test for r in stability.itertuples()}})
        for i, seed in enumerate(seeds):  # one step per seed, to see the spread
            mlflow.log_metrics({"ks_baseline_seed": b["ks"][i], "ks_enriched_seed": e["ks"][i],
                                **{f"ks_{name}_seed": f["ks"][i] for name, f in fits.items()}}, step=int(seed))

        y_test = test[E.LABEL].to_numpy()
        per_seed = pd.DataFrame({"seed": seeds, **{f"{k}_{name}": f[k] for name, f in {**fits, "enriched": e}.items()
                                                   for k in ("ks", "auc", "best_iteration")}})
        with tempfile.TemporaryDirectory() as d:
            for m, f in (("baseline", b), ("enriched", e)):
                s = f["test_scores"][0]  # the first seed's model: the one logged below
                fig = E.ks_curve_figure(y_test, s, title=f"{m} model on test (from {cfg.evaluate.valid_until}), seed {seeds[0]}")
                mlflow.log_figure(fig, f"ks_curve_{m}.png")
                E.lift_by_decile(y_test, s).to_csv(Path(d, f"lift_{m}.csv"), index=False)
                E.ks_table(y_test, s).to_csv(Path(d, f"ks_table_{m}.csv"), index=False)
            E.feature_importance(e["models"][0]).to_csv(Path(d, "feature_importance_enriched.csv"), index=False)
            per_seed.to_csv(Path(d, "per_seed.csv"), index=False)
            table.to_csv(Path(d, "ablation.csv"), index=False)
            Path(d, "ablation.md").write_text(
                ABLATION_DOC + f"Test split from {cfg.evaluate.valid_until}; seeds {seeds}; the registered "
                f"(enriched) model is step `{enriched}`."
                + "".join(f" Step `{g}`: {why}." for g, why in skipped.items()) + "\n\n" + _markdown(table))
            stability.to_csv(Path(d, "feature_stability.csv"), index=False)
            Path(d, "feature_stability.md").write_text(
                f"# IV and PSI per feature\n\nIV on the training split (before {cfg.evaluate.train_until}) and the test "
                f"split (from {cfg.evaluate.valid_until}); PSI from the training to the test split. Bins: the training "
                "split's deciles (toad's quantile bins), a value holding a tenth of the rows (the 0 of a count) a bin of "
                "its own, missing values a bin of their own. iv_train_toad: toad.stats.IV(method='quantile') on toad's "
                "own bins, which collapse to one bin (IV 0) for such mostly-zero counts.\n\n"
                + _markdown(stability))
            mlflow.log_artifacts(d)
        mlflow.log_table(stability, artifact_file="feature_stability.json")  # a sortable table in the MLflow UI
        info = mlflow.lightgbm.log_model(
            e["models"][0], name="enriched_model",
            # explicit requirements: inferring them costs ~7 s per run
            pip_requirements=[f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"],
        )
        version = mlflow.register_model(info.model_uri, REGISTERED_MODEL, tags={
            "riskgraph.feature_table": params["feature_table"],
            "riskgraph.feature_table_version": str(params["feature_table_version"]),
            "riskgraph.run_id": ctx.run_id,
            "riskgraph.run_date": ctx.run_date_str,
            "riskgraph.ablation_step": enriched,
            "mlflow_run_id": mrun.info.run_id,
            "ks_enriched": f"{metrics['ks_enriched']:.6f}",
            "ks_uplift": f"{metrics['ks_uplift']:.6f}",
        })
        log.info("mlflow run %s (experiment %s), enriched model (step %s) %s registered as %s version %s",
                 mrun.info.run_id, cfg.mlflow.experiment, enriched, info.model_uri, REGISTERED_MODEL, version.version)
    return {"mlflow_run_id": mrun.info.run_id, "enriched_model_uri": info.model_uri,
            "registered_model": REGISTERED_MODEL, "registered_model_version": int(version.version)}


def _oracle_members(spark: SparkSession, ctx: JobContext) -> set | None:
    """On a simulated world: the applications of the planted gangs (ground truth no real
    lender has); None elsewhere. The oracle step (baseline + this membership) bounds what
    network features could add, so ``ks_uplift / ks_uplift_oracle`` says how much of that
    signal ours capture."""
    truth_path = f"{T.truth_dir(ctx.cfg)}/gang_membership.parquet"
    if not path_exists(spark, truth_path):
        return None
    # bounded: one row per planted gang member (a few percent of applications)
    return set(spark.read.parquet(truth_path).filter("gang_id is not null").select("application_id").toPandas()["application_id"])


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, ev = ctx.cfg, ctx.cfg.evaluate
    store = choose_store(spark, cfg.store.backend)
    feature_uri = T.FEATURES.uri(cfg)
    feature_version = store.version(feature_uri)
    if feature_version is None:
        raise StoreError(f"no feature table at {feature_uri}; run the feature-store jobs first")
    specs = feature_specs(cfg)
    network = [s.name for s in specs if s.as_of != "key"]
    baseline = list(E.BASELINE_FEATURES)
    steps, skipped = E.ablation_steps(baseline, specs)
    versions = {name: store.version(t.uri(cfg)) for name, t in T.BRONZE.items()}
    log.info("feature table %s version %d (%d network features); bronze versions %s",
             feature_uri, feature_version, len(network), versions)

    spine_df = E.build_labelled_spine(  # every read pinned to the versions recorded above
        store.read(spark, T.BRONZE_APPLICATIONS.uri(cfg), version=versions["applications"]),
        store.read(spark, T.BRONZE_APPLICANTS.uri(cfg), version=versions["applicants"]),
        store.read(spark, T.BRONZE_OUTCOMES.uri(cfg), version=versions["outcomes"]),
        store.read(spark, feature_uri, version=feature_version),
        run_date=ctx.run_date, target_days=ev.target_days, network_features=network,
    )
    # Bounded: one row per matured application with ~40 numeric columns (100k applications
    # ≈ 40 MB); the credit model is trained on one machine by design.
    spine = E.canonical_order(spine_df.toPandas())  # the same rows in the same order, whatever the file layout
    E.check_spine(spine, feature_table=feature_uri, feature_version=feature_version)
    train, valid, test = E.oot_split(spine, E.TIME_COL, ev.train_until, ev.valid_until)
    splits = {"train": train, "valid": valid, "test": test}
    for name, part in splits.items():
        log.info("%s: %d applications, bad rate %.4f", name, len(part), part[E.LABEL].mean() if len(part) else float("nan"))

    enriched_step, enriched = steps[-1]  # every feature-store column: the model we register
    members = _oracle_members(spark, ctx)
    if members is not None:
        train, valid, test = (p.assign(**{ORACLE_FEATURE: p["application_id"].isin(members).astype(int)})
                              for p in (train, valid, test))
        steps.append((ORACLE_STEP, baseline + [ORACLE_FEATURE]))
    for group, why in skipped.items():
        log.info("ablation step %s: %s", group, why)
    table, fits = E.ablation(train, valid, test, steps, list(E.BASELINE_CATEGORICAL), ev.lgbm.model_dump(), ev.seeds)
    log.info("%s", _ablation_text(table, len(ev.seeds)))
    b, e = fits["baseline"], fits[enriched_step]
    ks_uplift, ks_uplift_sd = E.paired_uplift(e, b, "ks")
    auc_uplift, auc_uplift_sd = E.paired_uplift(e, b, "auc")
    log.info("test KS baseline %.4f±%.4f enriched (%s) %.4f±%.4f uplift %+.4f; AUC %.4f → %.4f",
             b["ks_mean"], b["ks_sd"], enriched_step, e["ks_mean"], e["ks_sd"], ks_uplift, b["auc_mean"], e["auc_mean"])

    # IV and out-of-time PSI per model feature, on the training split's deciles
    stability = E.feature_stability(train, test, enriched, list(E.BASELINE_CATEGORICAL))
    shifted = stability[stability["psi_train_test"] >= 0.25]
    log.info("IV (train) top 5: %s; PSI train→test >= 0.25 for %d feature(s)%s",
             ", ".join(f"{r.feature} {r.iv_train:.3f}" for r in stability.head(5).itertuples()), len(shifted),
             f": {', '.join(shifted['feature'])}" if len(shifted) else "")

    rows = table.set_index("step")
    metrics = {
        # every step: its KS / AUC, and its KS uplift over the step it extends
        **{f"ks_{s}": r.ks_mean for s, r in rows.iterrows()},
        **{f"ks_{s}_sd": r.ks_sd for s, r in rows.iterrows()},
        **{f"auc_{s}": r.auc_mean for s, r in rows.iterrows()},
        **{f"ks_uplift_{s}": r.ks_uplift_vs_previous for s, r in rows.iterrows() if r.previous is not None},
        **{f"ks_uplift_{s}_sd": r.ks_uplift_vs_previous_sd for s, r in rows.iterrows() if r.previous is not None},
        # "enriched" = every feature-store column vs baseline, as before the ablation existed
        "ks_enriched": e["ks_mean"], "ks_uplift": ks_uplift, "ks_enriched_sd": e["ks_sd"], "ks_uplift_sd": ks_uplift_sd,
        "auc_enriched": e["auc_mean"], "auc_uplift": auc_uplift,
        "auc_baseline_sd": b["auc_sd"], "auc_enriched_sd": e["auc_sd"], "auc_uplift_sd": auc_uplift_sd,
    }
    if ORACLE_STEP in rows.index:
        log.info("oracle (baseline + planted gang membership): test KS %.4f, uplift %+.4f",
                 metrics["ks_oracle"], metrics["ks_uplift_oracle"])
        if metrics["ks_uplift_oracle"]:
            metrics["ks_uplift_share_of_oracle"] = ks_uplift / metrics["ks_uplift_oracle"]
            log.info("our network features capture %.0f%% of the oracle's KS uplift", 100 * metrics["ks_uplift_share_of_oracle"])
    params = {
        "run_date": ctx.run_date_str, "run_id": ctx.run_id, "feature_table": feature_uri,
        "feature_table_version": feature_version, "store_backend": store.name,
        **{f"{name}_version": v for name, v in versions.items()},
        "baseline_features": ",".join(baseline), "n_network_features": len(network),
        "ablation_steps": ",".join(table["step"]), "enriched_step": enriched_step,
        **{f"n_features_{s}": int(r.n_features) for s, r in rows.iterrows()},
        **{f"ablation_skipped.{g}": why for g, why in skipped.items()},
        **{f"n_{k}": len(v) for k, v in splits.items()},
        **{f"bad_rate_{k}": round(float(v[E.LABEL].mean()), 6) for k, v in splits.items()},
        **{f"period_{k}": f"{v[E.TIME_COL].min():%Y-%m-%d %H:%M}..{v[E.TIME_COL].max():%Y-%m-%d %H:%M}"
           for k, v in splits.items()},
    }
    logged = _log_to_mlflow(ctx, params, metrics, fits, enriched_step, table, skipped, test, stability)

    top = stability.sort_values("psi_train_test", ascending=False).head(1)
    return {
        **{k: float(v) for k, v in metrics.items()},
        # present in every record: None when the catalog has no such group
        **{f"ks_uplift_{g}": (float(metrics[f"ks_uplift_{g}"]) if f"ks_uplift_{g}" in metrics else None)
           for g in E.FEATURE_GROUPS},
        **skipped,  # e.g. "multimodal": "not in the feature catalog"
        "ablation": _ablation_records(table), "enriched_step": enriched_step,
        **logged,
        "feature_iv_top": {r.feature: round(r.iv_train, 4) for r in stability.head(5).itertuples()},
        "feature_psi_max": float(top["psi_train_test"].iloc[0]), "feature_psi_max_name": str(top["feature"].iloc[0]),
        "features_psi_major_shift": shifted["feature"].tolist(),
        "feature_table": feature_uri, "feature_table_version": feature_version, "store_backend": store.name,
        "n_train": len(train), "n_valid": len(valid), "n_test": len(test), "seeds": b["seeds"],
    }


if __name__ == "__main__":
    job_main(run, "evaluate")
