"""Write the feature store: commit the staged features into the Delta feature table,
replacing exactly the run's date partitions, once per run id. Fails if the staged rows do
not match the bronze applications of those dates one-to-one, or if they break a quality
gate (null rates, ranges, row count and PSI drift vs. the previous version: see
features/quality_gates.py); the gate's report is kept under ``<paths.root>/quality/``
either way. After its commit it publishes the versions of every table the run committed
as one set (``riskgraph/published.py``): the last step that writes tables ends the run."""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features import quality_gates as Q
from riskgraph.inputs import bronze_as_of, feature_dates
from riskgraph.published import publish
from riskgraph.runtime import JobContext, job_main
from riskgraph.store import choose_store

log = logging.getLogger("riskgraph.write_feature_store")


class FeatureStoreError(RuntimeError):
    pass


class QualityGateError(FeatureStoreError):
    """Staged features broke a quality gate; nothing was committed."""


def _keep(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file on local disk or, for a URI, through Hadoop's FileSystem."""
    if "://" not in path or path.startswith("file://"):
        p = Path(path.removeprefix("file://"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return
    jvm = spark._jvm  # noqa: SLF001
    hp = jvm.org.apache.hadoop.fs.Path(path)
    out = hp.getFileSystem(spark._jsc.hadoopConfiguration()).create(hp, True)  # noqa: SLF001
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def check_quality(spark: SparkSession, ctx: JobContext, staged, store) -> dict:
    """Run the quality gates on ``staged`` against the table's current version, keep the
    report (markdown + JSON) and log it; raise :class:`QualityGateError` on a breach when
    ``quality.fail_on_breach``. Returns the report's summary for the run record."""
    cfg = ctx.cfg
    t0 = time.perf_counter()
    uri = T.FEATURES.uri(cfg)
    prev_version = store.version(uri)
    previous = store.read(spark, uri, version=prev_version) if prev_version is not None else None
    report = Q.run_quality_gates(staged, previous, owned_dates=ctx.dates(), specs=S.feature_specs(cfg),
                                 settings=cfg.quality, date_col=S.RUN_DATE)
    report.context.update({"run_id": ctx.run_id, "table": uri, "previous_version": prev_version})
    base = f"{T.quality_dir(cfg)}/{ctx.run_id}"
    header = f"# Feature-store quality gate, run {ctx.run_id}\n\n"
    _keep(spark, base + ".md", header + report.to_markdown())
    _keep(spark, base + ".json", report.to_json())
    summary = {**report.summary(), "report": base + ".md", "seconds": round(time.perf_counter() - t0, 1)}
    if report.status == Q.PASS:
        log.info("quality gate passed in %.1f s (%s); report %s.md", summary["seconds"],
                 ", ".join(f"{n} {s}" for s, n in report.counts().items() if n), base)
    else:
        level = logging.ERROR if report.status == Q.FAIL else logging.WARNING
        log.log(level, "quality gate %s; report %s.md\n%s", report.status.upper(), base,
                report.to_markdown(only=(Q.FAIL, Q.WARN)))
    if report.status == Q.FAIL and cfg.quality.fail_on_breach:
        broken = "; ".join(f"{r.check} {r.column} = {Q.format_value(r.value)} ({r.threshold}; {r.detail})" for r in report.failures[:5])
        raise QualityGateError(
            f"feature-store quality gate failed for run {ctx.run_id}: {len(report.failures)} check(s) broke their threshold: "
            f"{broken}{' ...' if len(report.failures) > 5 else ''}. Nothing was committed: {uri} stays at version {prev_version}. "
            f"Report: {base}.md. Fix the input and re-run assemble_features and write_feature_store; if the change is expected, "
            "adjust the threshold in conf (quality.*) or re-run with --set quality.fail_on_breach=false "
            "(a new simulated world in the same paths.root: `make clean` first).")
    return summary


def run(spark: SparkSession, ctx: JobContext) -> dict:
    cfg = ctx.cfg
    store = choose_store(spark, cfg.store.backend)
    done = store.committed_version(T.FEATURES.uri(cfg), ctx.run_id)
    if done is not None:  # a retry after a successful commit (the staged hand-off is gone by now): nothing to do
        rows = store.read(spark, T.FEATURES.uri(cfg), version=done).filter(F.col(S.RUN_DATE) == ctx.run_date_str).count()
        log.info("feature store %s: run %s already committed as version %d (%d rows on %s); nothing to do",
                 T.FEATURES.uri(cfg), ctx.run_id, done, rows, ctx.run_date_str)
        report = f"{T.quality_dir(cfg)}/{ctx.run_id}.md"
        pub = publish(cfg, store, ctx)  # a run killed between its commit and its publish publishes now
        return {"feature_table": T.FEATURES.uri(cfg), "feature_table_version": done, "feature_rows_written": 0,
                "feature_rows": rows, "committed": False, "store_backend": store.name,
                "quality_status": "unchanged (already committed)", "quality_report": report, "quality": {"report": report},
                "published": pub["moved"]}
    staged_path = T.find_staged_features(cfg, ctx)
    if staged_path != T.staged_features_dir(cfg, ctx.run_id):
        log.info("write_feature_store: using the features assemble_features staged at %s (its run for %s..%s)",
                 staged_path, ctx.from_date, ctx.run_date)
    staged = spark.read.schema(S.feature_schema(cfg)).parquet(staged_path)
    fdates = feature_dates(spark, store, ctx)  # the window + dates of late-landing applications
    apps = bronze_as_of(spark, store, ctx, T.BRONZE_APPLICATIONS).filter(
        F.date_format("application_ts", "yyyy-MM-dd").isin(fdates))
    # Reconcile: every application of the window has exactly one feature row.
    check = apps.select("application_id").withColumn("_a", F.lit(1)).join(
        staged.groupBy("application_id").agg(F.count(F.lit(1)).alias("_n")), "application_id", "full_outer"
    ).agg(
        F.sum(F.when(F.col("_n").isNull(), 1).otherwise(0)).alias("missing"),
        F.sum(F.when(F.col("_a").isNull(), 1).otherwise(0)).alias("unexpected"),
        F.sum(F.when(F.col("_n") > 1, 1).otherwise(0)).alias("duplicated"),
    ).first()
    if any(check[k] for k in ("missing", "unexpected", "duplicated")):
        raise FeatureStoreError(f"staged features for application dates {fdates[0]}..{fdates[-1]} ({len(fdates)} dates, late "
                                "landings included) do not match bronze applications: "
                                f"{check['missing']} missing, {check['unexpected']} unexpected, {check['duplicated']} duplicated; "
                                "re-run assemble_features for this run id")
    # row counts and drift: the window's own dates (late rows re-write an earlier date with one
    # more row; they are reconciled above, not measured as a new day)
    quality = check_quality(spark, ctx, staged, store)
    res = store.write(staged, T.FEATURES.uri(cfg), partition_col=S.RUN_DATE, partitions=fdates, run_id=ctx.run_id,
                      description=T.FEATURES.description)
    rows_for_run_date = store.read(spark, T.FEATURES.uri(cfg), version=res.version).filter(F.col(S.RUN_DATE) == ctx.run_date_str).count()
    if "://" not in staged_path:  # local hand-off folder: done with it
        shutil.rmtree(staged_path, ignore_errors=True)
    log.info("feature store %s version %d: %d rows for %s..%s (%d on the run date)", T.FEATURES.uri(cfg), res.version,
             res.rows, ctx.from_date, ctx.run_date, rows_for_run_date)
    # the run's tables are all written now: publish their versions as one set (riskgraph/published.py)
    pub = publish(cfg, store, ctx)
    return {"feature_table": T.FEATURES.uri(cfg), "feature_table_version": res.version, "feature_rows_written": res.rows,
            "feature_rows": rows_for_run_date, "committed": res.committed, "store_backend": store.name,
            "quality_status": quality["status"], "quality_report": quality["report"], "quality": quality,
            "published": pub["moved"]}


if __name__ == "__main__":
    job_main(run, "write_feature_store")
