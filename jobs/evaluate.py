"""Evaluate: KS uplift of the network features on a credit model, out of time, in MLflow.

Reads the feature table at its current version (pinned and recorded), bronze
applications / applicants / outcomes; builds the labelled spine of applications whose
performance window (evaluate.target_days) has matured by the run date; trains a baseline
LightGBM (ordinary credit features) and an enriched one (+ every feature-store column)
per seed on the out-of-time split from config, early-stopped on the validation period;
reports KS and AUC on the test period exactly as they come out. Fails when a matured
application has no feature row (the feature store is incomplete). Also logs each feature's
information value and its PSI from the training to the test period (out-of-time
stability), and registers the enriched model in the MLflow Model Registry with the feature
table version it was trained on.
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
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _metric_key(prefix: str, feature: str) -> str:
    """An MLflow metric name for a feature (names allow letters, digits, _ - . / and space)."""
    return prefix + "." + "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in feature)


def _log_to_mlflow(ctx: JobContext, params: dict, metrics: dict, result: dict, test: pd.DataFrame,
                   stability: pd.DataFrame) -> dict:
    """One MLflow run: params (+ the flattened config), metrics, per-seed spread, KS curves,
    lift / KS tables, feature importance, IV / PSI per feature (table + one metric each) and
    the enriched model (first seed), registered as :data:`REGISTERED_MODEL`."""
    cfg = ctx.cfg
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    b, e, seeds = result["baseline"], result["enriched"], result["seeds"]
    with mlflow.start_run(experiment_id=_experiment_id(cfg), run_name=f"evaluate {ctx.run_date_str}") as mrun:
        mlflow.set_tags({"riskgraph.run_id": ctx.run_id, "riskgraph.step": "evaluate"})
        mlflow.log_params({**{k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()},
                           **_flatten(cfg.fingerprint(), "cfg")})
        mlflow.log_metrics(metrics)
        mlflow.log_metrics({**{_metric_key("iv_train", r.feature): r.iv_train for r in stability.itertuples()},
                            **{_metric_key("psi_train_test", r.feature): r.psi_train_test for r in stability.itertuples()}})
        for i, seed in enumerate(seeds):  # one step per seed, to see the spread
            mlflow.log_metrics({"ks_baseline_seed": b["ks"][i], "ks_enriched_seed": e["ks"][i]}, step=int(seed))

        y_test = test[E.LABEL].to_numpy()
        per_seed = pd.DataFrame({"seed": seeds, **{f"{k}_{m}": result[m][k] for m in ("baseline", "enriched")
                                                   for k in ("ks", "auc", "best_iteration")}})
        with tempfile.TemporaryDirectory() as d:
            for m in ("baseline", "enriched"):
                s = result["test_scores"][m][0]  # the first seed's model: the one logged below
                fig = E.ks_curve_figure(y_test, s, title=f"{m} model on test (from {cfg.evaluate.valid_until}), seed {seeds[0]}")
                mlflow.log_figure(fig, f"ks_curve_{m}.png")
                E.lift_by_decile(y_test, s).to_csv(Path(d, f"lift_{m}.csv"), index=False)
                E.ks_table(y_test, s).to_csv(Path(d, f"ks_table_{m}.csv"), index=False)
            E.feature_importance(result["models"]["enriched"][0]).to_csv(Path(d, "feature_importance_enriched.csv"), index=False)
            per_seed.to_csv(Path(d, "per_seed.csv"), index=False)
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
            result["models"]["enriched"][0], name="enriched_model",
            # explicit requirements: inferring them costs ~7 s per run
            pip_requirements=[f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"],
        )
        version = mlflow.register_model(info.model_uri, REGISTERED_MODEL, tags={
            "riskgraph.feature_table": params["feature_table"],
            "riskgraph.feature_table_version": str(params["feature_table_version"]),
            "riskgraph.run_id": ctx.run_id,
            "riskgraph.run_date": ctx.run_date_str,
            "mlflow_run_id": mrun.info.run_id,
            "ks_enriched": f"{metrics['ks_enriched']:.6f}",
            "ks_uplift": f"{metrics['ks_uplift']:.6f}",
        })
        log.info("mlflow run %s (experiment %s), enriched model %s registered as %s version %s", mrun.info.run_id,
                 cfg.mlflow.experiment, info.model_uri, REGISTERED_MODEL, version.version)
    return {"mlflow_run_id": mrun.info.run_id, "enriched_model_uri": info.model_uri,
            "registered_model": REGISTERED_MODEL, "registered_model_version": int(version.version)}


def _oracle(spark: SparkSession, ctx: JobContext, train, valid, test, baseline: list[str]) -> dict:
    """On a simulated world: baseline + the planted gang membership (ground truth no real
    lender has). Its uplift bounds what network features could add, so
    ``ks_uplift / ks_uplift_oracle`` says how much of that signal ours capture."""
    truth_path = f"{T.truth_dir(ctx.cfg)}/gang_membership.parquet"
    if not path_exists(spark, truth_path):
        return {}
    # bounded: one row per planted gang member (a few percent of applications)
    members = set(spark.read.parquet(truth_path).filter("gang_id is not null").select("application_id").toPandas()["application_id"])
    parts = [p.assign(oracle_in_gang=p["application_id"].isin(members).astype(int)) for p in (train, valid, test)]
    res = E.compare_models(*parts, baseline, baseline + ["oracle_in_gang"], list(E.BASELINE_CATEGORICAL),
                           ctx.cfg.evaluate.lgbm.model_dump(), ctx.cfg.evaluate.seeds)
    log.info("oracle (baseline + planted gang membership): test KS %.4f, uplift %+.4f",
             res["enriched"]["ks_mean"], res["ks_uplift"])
    return {"ks_oracle": res["enriched"]["ks_mean"], "ks_uplift_oracle": res["ks_uplift"], "auc_oracle": res["enriched"]["auc_mean"]}


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg, ev = ctx.cfg, ctx.cfg.evaluate
    store = choose_store(spark, cfg.store.backend)
    feature_uri = T.FEATURES.uri(cfg)
    feature_version = store.version(feature_uri)
    if feature_version is None:
        raise StoreError(f"no feature table at {feature_uri}; run the feature-store jobs first")
    network = [s.name for s in feature_specs(cfg) if s.as_of != "key"]
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
    spine = spine_df.toPandas()
    E.check_spine(spine, feature_table=feature_uri, feature_version=feature_version)
    train, valid, test = E.oot_split(spine, E.TIME_COL, ev.train_until, ev.valid_until)
    splits = {"train": train, "valid": valid, "test": test}
    for name, part in splits.items():
        log.info("%s: %d applications, bad rate %.4f", name, len(part), part[E.LABEL].mean() if len(part) else float("nan"))

    baseline = list(E.BASELINE_FEATURES)
    enriched = baseline + network
    result = E.compare_models(train, valid, test, baseline, enriched, list(E.BASELINE_CATEGORICAL),
                              ev.lgbm.model_dump(), ev.seeds)
    b, e = result["baseline"], result["enriched"]
    log.info("test KS baseline %.4f±%.4f enriched %.4f±%.4f uplift %+.4f; AUC %.4f → %.4f",
             b["ks_mean"], b["ks_sd"], e["ks_mean"], e["ks_sd"], result["ks_uplift"], b["auc_mean"], e["auc_mean"])

    # IV and out-of-time PSI per model feature, on the training split's deciles
    stability = E.feature_stability(train, test, enriched, list(E.BASELINE_CATEGORICAL))
    shifted = stability[stability["psi_train_test"] >= 0.25]
    log.info("IV (train) top 5: %s; PSI train→test >= 0.25 for %d feature(s)%s",
             ", ".join(f"{r.feature} {r.iv_train:.3f}" for r in stability.head(5).itertuples()), len(shifted),
             f": {', '.join(shifted['feature'])}" if len(shifted) else "")

    oracle = _oracle(spark, ctx, train, valid, test, baseline)
    metrics = {
        **oracle,
        "ks_baseline": b["ks_mean"], "ks_enriched": e["ks_mean"], "ks_uplift": result["ks_uplift"],
        "ks_baseline_sd": b["ks_sd"], "ks_enriched_sd": e["ks_sd"], "ks_uplift_sd": result["ks_uplift_sd"],
        "auc_baseline": b["auc_mean"], "auc_enriched": e["auc_mean"], "auc_uplift": result["auc_uplift"],
        "auc_baseline_sd": b["auc_sd"], "auc_enriched_sd": e["auc_sd"], "auc_uplift_sd": result["auc_uplift_sd"],
    }
    params = {
        "run_date": ctx.run_date_str, "run_id": ctx.run_id, "feature_table": feature_uri,
        "feature_table_version": feature_version, "store_backend": store.name,
        **{f"{name}_version": v for name, v in versions.items()},
        "baseline_features": ",".join(baseline), "n_network_features": len(network),
        **{f"n_{k}": len(v) for k, v in splits.items()},
        **{f"bad_rate_{k}": round(float(v[E.LABEL].mean()), 6) for k, v in splits.items()},
        **{f"period_{k}": f"{v[E.TIME_COL].min():%Y-%m-%d %H:%M}..{v[E.TIME_COL].max():%Y-%m-%d %H:%M}"
           for k, v in splits.items()},
    }
    if oracle.get("ks_uplift_oracle"):
        metrics["ks_uplift_share_of_oracle"] = result["ks_uplift"] / oracle["ks_uplift_oracle"]
        log.info("our network features capture %.0f%% of the oracle's KS uplift", 100 * metrics["ks_uplift_share_of_oracle"])
    logged = _log_to_mlflow(ctx, params, metrics, result, test, stability)

    top = stability.sort_values("psi_train_test", ascending=False).head(1)
    return {
        **{k: float(v) for k, v in metrics.items()},
        **logged,
        "feature_iv_top": {r.feature: round(r.iv_train, 4) for r in stability.head(5).itertuples()},
        "feature_psi_max": float(top["psi_train_test"].iloc[0]), "feature_psi_max_name": str(top["feature"].iloc[0]),
        "features_psi_major_shift": shifted["feature"].tolist(),
        "feature_table": feature_uri, "feature_table_version": feature_version, "store_backend": store.name,
        "n_train": len(train), "n_valid": len(valid), "n_test": len(test), "seeds": result["seeds"],
    }


if __name__ == "__main__":
    job_main(run, "evaluate")
