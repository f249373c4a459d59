"""Small I/O helpers shared by jobs (reading raw landing folders)."""
from __future__ import annotations

import logging
import os
import urllib.parse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from riskgraph import schemas as S

log = logging.getLogger(__name__)


def fs_path(uri: str):
    """(pyarrow filesystem, path) for a local path, a file: URI or a remote URI."""
    from pyarrow import fs as pafs

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), urllib.parse.unquote(parsed.path) if parsed.scheme else os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def path_exists(spark: SparkSession, path: str) -> bool:
    """Existence check through Hadoop's FileSystem, so it works on local disk and on a
    cluster's filesystem alike."""
    jvm = spark._jvm  # noqa: SLF001
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark._jsc.hadoopConfiguration()).exists(p)  # noqa: SLF001


def read_raw_csv(spark: SparkSession, base: str, columns: list[S.Column], dates: list[str]) -> tuple[DataFrame | None, list[str]]:
    """Read the landing folders ``base/dt=<date>`` that exist, every column as text plus
    ``dt`` and ``_corrupt_record`` (a line that does not parse as CSV lands there instead of
    vanishing). Returns (frame or None, dates that had no folder)."""
    paths, missing = [], []
    for d in dates:  # bounded: one entry per date of the run window
        p = f"{base}/{S.DT}={d}"
        if path_exists(spark, p):
            paths.append(p)
        else:
            missing.append(d)
    if not paths:
        return None, missing
    schema = StructType([StructField(c.name, StringType(), True) for c in columns] + [StructField("_corrupt_record", StringType(), True)])
    df = (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .option("multiLine", False)
        .option("basePath", base)
        .csv(paths)
    )
    return df, missing
