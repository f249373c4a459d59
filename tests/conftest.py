"""One session-scoped Spark for the whole suite (local[2], UI off, few partitions, temp
warehouse and checkpoint dir). Tests never start or stop Spark themselves. Also the
session's one loaded `test` world (`loaded_world`), which tests copy before changing."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

TEST_KEY = "riskgraph-test-pseudonym-key-0123456789"
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers must import riskgraph
os.environ["RISKGRAPH_PSEUDONYM_KEY"] = TEST_KEY
os.environ["RISKGRAPH_ENV"] = "test"
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")  # pandas-on-Spark (used by assertDataFrameEqual) asks for it


def pytest_configure(config):
    config.addinivalue_line("markers", "late: run at the end of the session (it waits for a background job "
                                       "while the other tests run)")


def pytest_collection_modifyitems(items):
    """Tests marked ``late`` move to the end of the session, in their collected order."""
    items.sort(key=lambda item: item.get_closest_marker("late") is not None)


# ------------------------------------------------------------- background jobs
#
# A few set-ups are minutes of subprocesses (the Airflow night's spark-submits, the media
# world's pipeline) during which this process would only wait. A test module that defines
# ``start_in_background(request, tmp_path_factory)`` gets it called at the session's first
# test when any of its tests is selected; it returns a job (a ``BackgroundJob``, or anything
# with ``wait(timeout)`` and ``stop()``), or None when the selected tests need none; they wait with
# ``background[<module name>].wait()``, meanwhile the rest of the suite runs.

class BackgroundJob:
    """Commands run one after another in a thread, each in its own process group, output in
    ``log``; ``wait`` re-raises a failure (with the log's tail) in the test that needs it.
    A subclass with other work overrides ``_work`` (and keeps its processes in ``procs``)."""

    def __init__(self, name: str, commands: list[list[str]], log: Path, *, env: dict | None = None,
                 cwd: Path | None = None):
        self.name, self.commands, self.log, self.env, self.cwd = name, commands, Path(log), env, cwd
        self.procs: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as e:  # noqa: BLE001 - pytest.fail raises a BaseException; wait() re-raises it
            self.error = e

    def _work(self) -> None:
        with open(self.log, "w") as out:
            for cmd in self.commands:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                        start_new_session=True)
                self.procs.append(proc)
                if proc.wait() != 0:
                    raise RuntimeError(f"{' '.join(map(str, cmd[:6]))} ... exited {proc.returncode}")

    def wait(self, timeout: float = 1800) -> "BackgroundJob":
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop()
            pytest.fail(f"{self.name} did not end within {timeout:.0f} s (log: {self.log})")
        if self.error is not None:
            if isinstance(self.error, RuntimeError):
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-80:])
                pytest.fail(f"{self.name}: {self.error} (log: {self.log})\n--- last lines ---\n{tail}")
            raise self.error
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """The selected modules' background jobs, by module name (see above)."""
    jobs, seen = {}, set()
    for item in request.session.items:
        mod = getattr(item, "module", None)
        if mod is None or mod.__name__ in seen:
            continue
        seen.add(mod.__name__)
        start = getattr(mod, "start_in_background", None)
        job = start(request, tmp_path_factory) if start is not None else None
        if job is not None:
            jobs[mod.__name__] = job
    yield jobs
    for job in jobs.values():
        job.stop()


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


# ------------------------------------------------------------- the loaded test world
#
# Two suites need the `test` world (conf/test.yaml) simulated and loaded up to the day before
# its last: tests/test_pipeline.py runs the nightly for the last day in this session, and
# tests/test_airflow_dag.py lets `airflow dags test` run it as spark-submits. The load is
# the suite's most expensive set-up, so it is built once per session, here, and each user
# works on its own copy (`copy_loaded_world`); the original is never written after the load.

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # riskgraph.runtime.setup_logging's


@contextlib.contextmanager
def capture_pipeline_log(path):
    """Everything the pipeline logs inside the block, as the CLI would print it (riskgraph
    at INFO, libraries at their own levels), kept in ``path`` to scan."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    ours = logging.getLogger("riskgraph")
    level = ours.level
    ours.setLevel(logging.INFO)
    # root catches what propagates; mlflow's own logger may not propagate
    targets = [logging.getLogger(), logging.getLogger("mlflow")]
    for lg in targets:
        lg.addHandler(handler)
    try:
        yield path
    finally:
        for lg in targets:
            lg.removeHandler(handler)
        ours.setLevel(level)
        handler.close()


def world_config(folder):
    """A `test` config whose data, checkpoints and MLflow store all live under ``folder``
    (written to ``folder/conf.yaml``, which the CLI and the Airflow jobs read too)."""
    import yaml

    from riskgraph.config import load_config

    folder = Path(folder)
    doc = {
        "paths": {"root": str(folder / "data"), "checkpoint_dir": str(folder / "ckpt")},
        "mlflow": {"tracking_uri": f"sqlite:///{folder}/mlflow.db", "artifact_root": str(folder / "mlflow-art")},
    }
    conf = folder / "conf.yaml"
    conf.write_text(yaml.safe_dump(doc))
    return load_config("test", conf), conf


@dataclasses.dataclass(frozen=True)
class LoadedWorld:
    folder: Path
    cfg: object              # riskgraph.config.Config of the original
    sim: dict                # simulate_world's summary
    load: dict               # the load's run record
    log: Path                # what the pipeline logged while simulating and loading
    end: dt.date             # the world's last day: not loaded yet


@pytest.fixture(scope="session")
def loaded_world(spark, tmp_path_factory) -> LoadedWorld:
    """The `test` world simulated and loaded from its first day through the day before its
    last (`riskgraph run --from-date START --run-date END-1`), in this session's Spark."""
    from riskgraph.cli import run_pipeline
    from riskgraph.simulator import simulate_world

    folder = tmp_path_factory.mktemp("loaded_world")
    cfg, _ = world_config(folder)
    end = cfg.simulation.end_date
    with capture_pipeline_log(folder / "pipeline.log") as log:
        sim = simulate_world(cfg.simulation, cfg.paths.root)
        load = run_pipeline(cfg, run_date=end - dt.timedelta(days=1), from_date=cfg.simulation.start_date,
                            run_id="load", spark=spark)
    return LoadedWorld(folder=folder, cfg=cfg, sim=sim, load=load, log=log, end=end)


def copy_loaded_world(world: LoadedWorld, folder):
    """A private copy of the loaded world's data under ``folder``, with its own config (and
    fresh checkpoints and MLflow store: MLflow keeps absolute artifact paths, so its
    database is not copied). Delta tables keep relative paths: the copy reads as the
    original. Returns (config, config file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(world.cfg.paths.root, folder / "data")
    return world_config(folder)
