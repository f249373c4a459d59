"""Small I/O helpers shared by jobs (paths on any filesystem, landing folders)."""
from __future__ import annotations

import json
import logging
import os
import urllib.parse

from pyspark.sql import SparkSession

from riskgraph import schemas as S

log = logging.getLogger(__name__)


def fs_path(uri: str):
    """(pyarrow filesystem, path) for a local path, a file: URI or a remote URI."""
    from pyarrow import fs as pafs

    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), urllib.parse.unquote(parsed.path) if parsed.scheme else os.path.abspath(uri)
    return pafs.FileSystem.from_uri(uri)


def write_json_atomic(path, doc: dict) -> None:
    """Write a small local JSON file aside and rename it in: a process killed while writing
    leaves the previous file, never half of one (run records, the published set)."""
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def path_exists(spark: SparkSession, path: str) -> bool:
    """Existence check through Hadoop's FileSystem, so it works on local disk and on a
    cluster's filesystem alike."""
    jvm = spark._jvm  # noqa: SLF001
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark._jsc.hadoopConfiguration()).exists(p)  # noqa: SLF001


def landing_folders(spark: SparkSession, base: str, dates: list[str]) -> tuple[list[str], list[str]]:
    """(the landing folders ``base/dt=<date>`` that exist, the dates without one)."""
    paths, missing = [], []
    for d in dates:  # bounded: one entry per date of the run window
        p = f"{base}/{S.DT}={d}"
        if path_exists(spark, p):
            paths.append(p)
        else:
            missing.append(d)
    return paths, missing
