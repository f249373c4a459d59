"""Reads shared by several jobs: bronze and graph tables as of a run date."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.runtime import JobContext


def run_version(store, uri: str, ctx: JobContext) -> int | None:
    """The version of ``uri`` a step of this run reads: the one this run's own upstream step
    committed (found by run id in the Delta log), else the latest (None). So the steps of
    one run see one consistent set of tables even when another run commits in between, and
    a re-run with the same run id reads exactly what it read before."""
    return store.committed_version(uri, ctx.run_id)


def read_for_run(spark: SparkSession, store, ctx: JobContext, table: T.Table) -> DataFrame:
    return store.read(spark, table.uri(ctx.cfg), version=run_version(store, table.uri(ctx.cfg), ctx))


def bronze_as_of(spark: SparkSession, store, ctx: JobContext, table: T.Table) -> DataFrame:
    """Bronze rows that had landed by the run date (later landings are the future), at the
    version this run's ingest committed (``run_version``)."""
    return read_for_run(spark, store, ctx, table).filter(F.col(S.DT) <= ctx.run_date_str)


def snapshot(spark: SparkSession, store, ctx: JobContext, table: T.Table) -> DataFrame:
    """A derived table's partition for this run date, at the version this run committed."""
    df = read_for_run(spark, store, ctx, table).filter(F.col(S.RUN_DATE) == ctx.run_date_str)
    return df.drop(S.RUN_DATE)


def with_run_date(df: DataFrame, ctx: JobContext, columns: list[S.Column]) -> DataFrame:
    """Add the run_date partition and select/cast exactly the declared columns, with comments."""
    df = df.withColumn(S.RUN_DATE, F.lit(ctx.run_date_str))
    return df.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c in columns])


def feature_dates(spark: SparkSession, store, ctx: JobContext) -> list[str]:
    """The feature-table partitions (application dates) this run writes: its window's dates,
    plus the dates of **late** applications - landed in the window (bronze ``dt``) but dated
    before it. Their whole date is recomputed and replaced, so a late application gets its
    feature row in the nightly run of its landing date, point-in-time rules unchanged.
    assemble_features and write_feature_store both call this (and reconcile against it).
    Bounded collect: one row per distinct application date of the landed rows."""
    window = ctx.dates()
    if store.version(T.BRONZE_APPLICATIONS.uri(ctx.cfg)) is None:
        return window
    landed = read_for_run(spark, store, ctx, T.BRONZE_APPLICATIONS).filter(F.col(S.DT).isin(window))
    late = (landed.select(F.date_format("application_ts", "yyyy-MM-dd").alias("d"))
            .filter(F.col("d") < F.lit(window[0])).distinct().collect())
    return sorted(set(window) | {r["d"] for r in late})


def earlier_rows(store, spark: SparkSession, table: T.Table, cfg, dates: list[str], cols: list[str]) -> DataFrame | None:
    """Rows (their ``cols``) already in bronze outside the partitions this run replaces: what
    an ingest checks its new rows against for duplicates (ingest, ingest_media,
    ingest_transfers). None when the table does not exist yet."""
    if store.version(table.uri(cfg)) is None:
        return None
    return store.read(spark, table.uri(cfg)).filter(~F.col(S.DT).isin(dates)).select(*cols)
