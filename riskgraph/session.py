"""The one SparkSession factory. Settings live in conf/*.yaml, each with a comment."""
from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from riskgraph.config import Config

log = logging.getLogger(__name__)


def get_spark(cfg: Config) -> SparkSession:
    """Build (or reuse) the session for ``cfg``: master, app name and every ``spark.conf``.

    On a cluster ``spark.master`` is null and spark-submit's ``--master`` wins.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers must import riskgraph: use this interpreter unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    for key, value in cfg.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate hands back an existing session whose static conf we cannot change;
    # runtime SQL settings we can, so apply them again.
    for key, value in cfg.spark.conf.items():
        if key.startswith("spark.sql.") and key != "spark.sql.extensions":
            spark.conf.set(key, value)
    spark.sparkContext.setCheckpointDir(cfg.paths.checkpoint_dir)
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark
