"""Evaluate: KS uplift of the network features on a credit model, out of time, in MLflow.

Reads the feature table at its current version (pinned and recorded), bronze
applications / applicants / outcomes; builds the labelled spine of applications whose
performance window (evaluate.target_days) has matured by the run date; trains a baseline
LightGBM (ordinary credit features) and an enriched one (+ every feature-store column)
per seed on the out-of-time split from config, early-stopped on the validation period;
reports KS and AUC on the test period exactly as they come out. Fails when a matured
application has no feature row (the feature store is incomplete).
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


def _log_to_mlflow(ctx: JobContext, params: dict, metrics: dict, result: dict, test: pd.DataFrame) -> tuple[str, str]:
    """One MLflow run: params (+ the flattened config), metrics, per-seed spread, KS curves,
    lift / KS tables, feature importance and the enriched model (first seed)."""
    cfg = ctx.cfg
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    b, e, seeds = result["baseline"], result["enriched"], result["seeds"]
    with mlflow.start_run(experiment_id=_experiment_id(cfg), run_name=f"evaluate {ctx.run_date_str}") as mrun:
        mlflow.set_tags({"riskgraph.run_id": ctx.run_id, "riskgraph.step": "evaluate"})
        mlflow.log_params({**{k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()},
                           **_flatten(cfg.fingerprint(), "cfg")})
        mlflow.log_metrics(metrics)
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
            mlflow.log_artifacts(d)
        info = mlflow.lightgbm.log_model(
            result["models"]["enriched"][0], name="enriched_model",
            # explicit requirements: inferring them costs ~7 s per run
            pip_requirements=[f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"],
        )
        log.info("mlflow run %s (experiment %s), enriched model %s", mrun.info.run_id, cfg.mlflow.experiment, info.model_uri)
    return mrun.info.run_id, info.model_uri


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

    spine_df = E.build_labelled_spine(
        store.read(spark, T.BRONZE_APPLICATIONS.uri(cfg)),
        store.read(spark, T.BRONZE_APPLICANTS.uri(cfg)),
        store.read(spark, T.BRONZE_OUTCOMES.uri(cfg)),
        store.read(spark, feature_uri, version=feature_version),  # pinned: the version we record
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
    mlflow_run_id, model_uri = _log_to_mlflow(ctx, params, metrics, result, test)

    return {
        **{k: float(v) for k, v in metrics.items()},
        "mlflow_run_id": mlflow_run_id, "enriched_model_uri": model_uri,
        "feature_table": feature_uri, "feature_table_version": feature_version, "store_backend": store.name,
        "n_train": len(train), "n_valid": len(valid), "n_test": len(test), "seeds": result["seeds"],
    }


if __name__ == "__main__":
    job_main(run, "evaluate")
