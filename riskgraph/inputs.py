"""Reads shared by several jobs: bronze and graph tables as of a run date."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.runtime import JobContext


def bronze_as_of(spark: SparkSession, store, ctx: JobContext, table: T.Table) -> DataFrame:
    """Bronze rows that had landed by the run date (later landings are the future)."""
    return store.read(spark, table.uri(ctx.cfg)).filter(F.col(S.DT) <= ctx.run_date_str)


def snapshot(spark: SparkSession, store, ctx: JobContext, table: T.Table) -> DataFrame:
    """A derived table's partition for this run date."""
    df = store.read(spark, table.uri(ctx.cfg)).filter(F.col(S.RUN_DATE) == ctx.run_date_str)
    return df.drop(S.RUN_DATE)


def with_run_date(df: DataFrame, ctx: JobContext, columns: list[S.Column]) -> DataFrame:
    """Add the run_date partition and select/cast exactly the declared columns, with comments."""
    df = df.withColumn(S.RUN_DATE, F.lit(ctx.run_date_str))
    return df.select(*[F.col(c.name).cast(c.dtype).alias(c.name, metadata={"comment": c.description}) for c in columns])
