"""Write the feature store: commit the staged features into the Delta feature table,
replacing exactly the run's date partitions, once per run id. Fails if the staged rows do
not match the bronze applications of those dates one-to-one."""
from __future__ import annotations

import logging
import shutil

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.inputs import bronze_as_of
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.write_feature_store")


class FeatureStoreError(RuntimeError):
    pass


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    staged_path = T.staged_features_dir(cfg, ctx.run_id)
    staged = spark.read.schema(S.feature_schema(cfg)).parquet(staged_path)
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS).filter(
        F.to_date("application_ts").between(F.lit(ctx.from_date), F.lit(ctx.run_date)))
    # Reconcile: every application of the window has exactly one feature row.
    check = apps.select("application_id").withColumn("_a", F.lit(1)).join(
        staged.groupBy("application_id").agg(F.count(F.lit(1)).alias("_n")), "application_id", "full_outer"
    ).agg(
        F.sum(F.when(F.col("_n").isNull(), 1).otherwise(0)).alias("missing"),
        F.sum(F.when(F.col("_a").isNull(), 1).otherwise(0)).alias("unexpected"),
        F.sum(F.when(F.col("_n") > 1, 1).otherwise(0)).alias("duplicated"),
    ).first()
    if any(check[k] for k in ("missing", "unexpected", "duplicated")):
        raise FeatureStoreError(f"staged features for {ctx.from_date}..{ctx.run_date} do not match bronze applications: "
                                f"{check['missing']} missing, {check['unexpected']} unexpected, {check['duplicated']} duplicated; "
                                "re-run assemble_features for this run id")
    res = store.write(staged, T.FEATURES.uri(cfg), partition_col=S.RUN_DATE, partitions=ctx.dates(), run_id=ctx.run_id,
                      description=T.FEATURES.description)
    rows_for_run_date = store.read(spark, T.FEATURES.uri(cfg), version=res.version).filter(F.col(S.RUN_DATE) == ctx.run_date_str).count()
    if "://" not in staged_path:  # local hand-off folder: done with it
        shutil.rmtree(staged_path, ignore_errors=True)
    log.info("feature store %s version %d: %d rows for %s..%s (%d on the run date)", T.FEATURES.uri(cfg), res.version,
             res.rows, ctx.from_date, ctx.run_date, rows_for_run_date)
    return {"feature_table": T.FEATURES.uri(cfg), "feature_table_version": res.version, "feature_rows_written": res.rows,
            "feature_rows": rows_for_run_date, "committed": res.committed, "store_backend": store.name}


if __name__ == "__main__":
    job_main(run, "write_feature_store")
