"""One session-scoped Spark for the whole suite (local[2], UI off, few partitions, temp
warehouse and checkpoint dir). Tests never start or stop Spark themselves."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

TEST_KEY = "riskgraph-test-pseudonym-key-0123456789"
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers must import riskgraph
os.environ["RISKGRAPH_PSEUDONYM_KEY"] = TEST_KEY
os.environ["RISKGRAPH_ENV"] = "test"
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pandas-on-Spark (used by assertDataFrameEqual) asks for it


@pytest.fixture(scope="session")
def spark_tmp():
    d = tempfile.mkdtemp(prefix="riskgraph-spark-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def spark(spark_tmp):
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("riskgraph-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .config("spark.sql.warehouse.dir", os.path.join(spark_tmp, "warehouse"))
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    s.sparkContext.setCheckpointDir(os.path.join(spark_tmp, "checkpoints"))
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean_spark_state(request):
    """Between tests: drop cached data and temp views so tests cannot leak into each other."""
    yield
    if "spark" in request.fixturenames:
        s = request.getfixturevalue("spark")
        s.catalog.clearCache()
        for t in s.catalog.listTables():
            if t.isTemporary:
                s.catalog.dropTempView(t.name)


@pytest.fixture()
def cfg_factory(tmp_path):
    """A test config rooted in a temp dir; keyword overrides use dotted keys."""
    from riskgraph.config import load_config

    def make(**overrides):
        base = {
            "paths.root": str(tmp_path / "root"),
            "paths.checkpoint_dir": str(tmp_path / "ckpt"),
            "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
            "mlflow.artifact_root": str(tmp_path / "mlflow-art"),
        }
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config("test", overrides=base)

    return make
