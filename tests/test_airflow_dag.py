"""The nightly Airflow DAG: it loads, chains the nightly jobs, hands them the right run date and
environment, and runs them end to end with ``airflow dags test``.

Airflow reads its configuration (AIRFLOW_HOME, the metadata DB) when it is first imported,
so every Airflow call here runs in a subprocess with its own temporary AIRFLOW_HOME; the
test process never imports airflow.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import BackgroundJob, copy_loaded_world

REPO = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO / "airflow_dags"
VENV_BIN = Path(sys.executable).parent  # the venv running pytest (not resolved: a venv's python is a symlink)
DAG_ID = "riskgraph_nightly"
STEPS = ["ingest", "ingest_media", "ingest_transfers", "trace_funds", "embed", "link_media", "build_graph", "shared_neighbours", "detect_gangs", "assemble_features", "write_feature_store", "evaluate", "vacuum"]
TEST_KEY = "airflow-test-pseudonym-key-0123456789"
LOCAL_CONN = '{"conn_type": "spark", "host": "local[2]"}'


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow subprocess: a fresh AIRFLOW_HOME, this repo's DAGs
    folder, no examples, the venv's bin (airflow, spark-submit) first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RISKGRAPH_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        SPARK_LOCAL_IP="127.0.0.1",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_py(script: str, env: dict[str, str], timeout: float = 120) -> dict:
    """Run a Python snippet in a subprocess; it prints one JSON object on its last stdout line."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=env["AIRFLOW_HOME"])
    assert p.returncode == 0, f"subprocess failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    last = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert last, f"no JSON on stdout:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(last[-1])


# --------------------------------------------------------------------------- DagBag

DAGBAG_SCRIPT = """
import json, pendulum
from airflow.dag_processing.dagbag import DagBag
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.serialization.serialized_objects import DagSerialization
from airflow.serialization.encoders import coerce_to_core_timetable
from airflow.timetables.base import DataInterval, TimeRestriction

bag = DagBag(dag_folder=%(folder)r)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get(%(dag_id)r)
if dag is not None:
    out["dag"] = {
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs, "has_doc": bool(dag.doc_md),
        "timetable": type(dag.timetable).__name__, "cron": dag.timetable.expression,
        "tz": str(dag.timetable.timezone), "topological": [t.task_id for t in dag.topological_sort()],
    }
    out["tasks"] = {t.task_id: {
        "is_spark_submit": isinstance(t, SparkSubmitOperator), "upstream": sorted(t.upstream_task_ids),
        "downstream": sorted(t.downstream_task_ids), "retries": t.retries,
        "retry_delay_s": t.retry_delay.total_seconds(), "backoff": t.retry_exponential_backoff,
        "depends_on_past": t.depends_on_past, "application": t.application, "application_args": t.application_args,
        "conn_id": t._conn_id, "name": t.name, "has_doc": bool(t.doc_md), "env_vars": t.env_vars,
    } for t in dag.tasks}
    # What the scheduler stores (and the UI shows): must serialize, must not hold the secret.
    out["serialized"] = json.dumps(DagSerialization.to_dict(dag), default=str)
    # The scheduled run after interval [D-1 02:00, D 02:00) covers [D 02:00, D+1 02:00);
    # render the first task's arguments with that run's logical date and run id.
    tt = coerce_to_core_timetable(dag.timetable)
    d = pendulum.datetime(*%(date)r, tz="UTC")
    info = tt.next_dagrun_info(
        last_automated_data_interval=DataInterval(d.subtract(days=1).add(hours=2), d.add(hours=2)),
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=True))
    task = dag.task_dict["ingest"]
    ctx = {"ds": info.logical_date.strftime("%%Y-%%m-%%d"), "run_id": "scheduled__" + info.logical_date.isoformat()}
    task.render_template_fields(ctx, jinja_env=dag.get_template_env())
    out["scheduled"] = {"interval": [info.data_interval.start.isoformat(), info.data_interval.end.isoformat()],
                        "run_after": info.run_after.isoformat(), "args": task.application_args}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow-dagbag")
    env = airflow_env(home, RISKGRAPH_PSEUDONYM_KEY=TEST_KEY)  # set at parse time: must not leak into the DAG
    return run_py(DAGBAG_SCRIPT % {"folder": str(DAGS_FOLDER), "dag_id": DAG_ID, "date": (2026, 3, 31)}, env)


def test_dag_loads_without_import_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert DAG_ID in dagbag["dag_ids"]


def test_dag_schedule_one_run_at_a_time(dagbag):
    d = dagbag["dag"]
    assert (d["timetable"], d["cron"], d["tz"]) == ("CronDataIntervalTimetable", "0 2 * * *", "UTC")
    assert d["catchup"] is False
    assert d["max_active_runs"] == 1
    assert d["has_doc"]


def test_dag_is_a_linear_chain_of_the_nightly_jobs(dagbag):
    tasks = dagbag["tasks"]
    assert dagbag["dag"]["topological"] == STEPS
    assert set(tasks) == set(STEPS)
    for i, step in enumerate(STEPS):
        assert tasks[step]["upstream"] == STEPS[i - 1:i], step
        assert tasks[step]["downstream"] == STEPS[i + 1:i + 2], step


@pytest.mark.parametrize("step", STEPS)
def test_each_task_submits_its_job(dagbag, step):
    t = dagbag["tasks"][step]
    assert t["is_spark_submit"]
    assert t["application"] == str(REPO / "jobs" / f"{step}.py")
    assert Path(t["application"]).is_file()
    assert t["application_args"] == ["--run-date", "{{ ds }}", "--run-id", "{{ run_id | path_safe }}"]
    assert (t["conn_id"], t["name"]) == ("spark_default", f"riskgraph-{step}")
    assert t["retries"] == 2 and t["retry_delay_s"] > 0 and t["backoff"] > 1  # backoff is a multiplier in Airflow 3.3
    # every step waits for its own previous night, except the cleanup (a failed vacuum must
    # not hold up tomorrow's data; tomorrow's vacuum retries it)
    assert t["depends_on_past"] is (step != "vacuum")
    assert t["has_doc"]
    assert not t["env_vars"]  # forwarded at run time, never baked in at parse time


def test_serialized_dag_does_not_hold_the_secret(dagbag):
    assert "riskgraph_nightly" in dagbag["serialized"]
    assert TEST_KEY not in dagbag["serialized"]


def test_scheduled_run_for_a_day_gets_that_day_as_run_date(dagbag):
    s = dagbag["scheduled"]
    assert s["interval"] == ["2026-03-31T02:00:00+00:00", "2026-04-01T02:00:00+00:00"]
    assert s["run_after"] == "2026-04-01T02:00:00+00:00"
    # run ids carry ':' and '+', which Hadoop paths reject: the DAG passes a path-safe form
    assert s["args"] == ["--run-date", "2026-03-31", "--run-id", "scheduled__2026-03-31T02-00-00-00-00"]


def test_riskgraph_home_overrides_the_jobs_location(tmp_path):
    other = tmp_path / "checkout"
    env = airflow_env(tmp_path / "home", RISKGRAPH_HOME=str(other))
    (tmp_path / "home").mkdir()
    out = run_py(DAGBAG_SCRIPT % {"folder": str(DAGS_FOLDER), "dag_id": DAG_ID, "date": (2026, 3, 31)}, env)
    assert {t["application"] for t in out["tasks"].values()} == {str(other / "jobs" / f"{s}.py") for s in STEPS}


# ------------------------------------------------------- what spark-submit receives

FAKE_SPARK_SUBMIT = """#!/bin/sh
# Records its arguments and the environment riskgraph's jobs depend on, then succeeds.
exec "{python}" -c 'import json, os, sys; json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in ("PATH", "JAVA_HOME", "RISKGRAPH_ENV", "RISKGRAPH_CONF", "RISKGRAPH_PSEUDONYM_KEY", "SPARK_LOCAL_IP", "PYSPARK_PYTHON")}}}}, open(os.environ["FAKE_SUBMIT_OUT"], "w"))' "$@"
"""

EXECUTE_SCRIPT = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=%(folder)r).dags[%(dag_id)r]
task = dag.task_dict["ingest"]
ctx = {"ds": "2026-03-31", "run_id": "scheduled__2026-03-31T02:00:00+00:00"}
task.render_template_fields(ctx, jinja_env=dag.get_template_env())
task.execute(ctx)
print(json.dumps({"ok": True}))
"""


@pytest.mark.parametrize(
    "master, packages, spark_conf",
    [
        ("local[2]", None, None),
        ("yarn", "io.graphframes:graphframes-spark4_2.13:0.0.0", {"spark.driver.memory": "3g"}),
    ],
    ids=["local-mode", "yarn-with-packages"],
)
def test_spark_submit_gets_run_args_and_environment(tmp_path, master, packages, spark_conf):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "spark-submit"
    fake.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable))
    fake.chmod(0o755)
    (tmp_path / "home").mkdir()
    out_file = tmp_path / "submitted.json"
    extra = dict(
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark", "host": master}),
        RISKGRAPH_ENV="test", RISKGRAPH_CONF=str(tmp_path / "extra.yaml"), RISKGRAPH_PSEUDONYM_KEY=TEST_KEY,
        JAVA_HOME="/opt/some-jdk", FAKE_SUBMIT_OUT=str(out_file),
    )
    if packages:
        extra["RISKGRAPH_SPARK_PACKAGES"] = packages
    if spark_conf:
        extra["RISKGRAPH_SPARK_CONF"] = json.dumps(spark_conf)
    env = airflow_env(tmp_path / "home", **extra)
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    run_py(EXECUTE_SCRIPT % {"folder": str(DAGS_FOLDER), "dag_id": DAG_ID}, env)

    got = json.loads(out_file.read_text())
    argv, penv = got["argv"], got["env"]
    assert argv[argv.index("--master") + 1] == master
    assert argv[-5:] == [str(REPO / "jobs" / "ingest.py"), "--run-date", "2026-03-31",
                         "--run-id", "scheduled__2026-03-31T02-00-00-00-00"]
    assert argv[argv.index("--name") + 1] == "riskgraph-ingest"
    # the hook adds the forwarded variables to the worker's environment instead of replacing it
    assert penv["PATH"] == env["PATH"] and penv["JAVA_HOME"] == "/opt/some-jdk"
    for k in ("RISKGRAPH_ENV", "RISKGRAPH_CONF", "RISKGRAPH_PSEUDONYM_KEY", "SPARK_LOCAL_IP", "PYSPARK_PYTHON"):
        assert penv[k] == env[k], k
    if master == "yarn":  # on YARN the driver (application master) gets them as settings
        confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
        assert "spark.yarn.appMasterEnv.RISKGRAPH_ENV=test" in confs
        assert f"spark.yarn.appMasterEnv.RISKGRAPH_CONF={env['RISKGRAPH_CONF']}" in confs
        assert "spark.driver.memory=3g" in confs
        assert argv[argv.index("--packages") + 1] == packages
    else:
        assert "--packages" not in argv and "--conf" not in argv


# --------------------------------------------------------------------------- end to end

FAILED_TASK = re.compile(r"new_state=(up_for_retry|failed)\b|Marking run .* failed")
SUBMIT_CMD = re.compile(r"Spark-Submit cmd: .*--name riskgraph-(\w+) .*--run-date (\S+)")

RUNS_SCRIPT = """
import json
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
from airflow.models.taskinstance import TaskInstance
from airflow.utils.session import create_session

runs = []
with create_session() as s:
    for r in s.scalars(select(DagRun).where(DagRun.dag_id == %(dag_id)r)):
        tasks = {}
        for ti in s.scalars(select(TaskInstance).where(TaskInstance.dag_id == r.dag_id, TaskInstance.run_id == r.run_id)):
            rt = s.scalar(select(RTIF).where(RTIF.dag_id == ti.dag_id, RTIF.run_id == ti.run_id, RTIF.task_id == ti.task_id))
            tasks[ti.task_id] = {"state": str(ti.state), "try_number": ti.try_number,
                                 "application_args": (rt.rendered_fields or {}).get("application_args") if rt else None}
        runs.append({"run_id": r.run_id, "state": str(r.state), "logical_date": r.logical_date.isoformat(), "tasks": tasks})
print(json.dumps({"runs": runs}))
"""


def run_streaming(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, log_file: Path,
                  procs: list | None = None) -> list[str]:
    """Run ``cmd``, keeping its output in ``log_file``. Stop at the first failed task:
    ``airflow dags test`` would otherwise sit out the retry delays (5 + 10 minutes) and
    can exit 0 after a failure anyway. Its process group is killed with SIGKILL (it
    ignores SIGTERM), which also ends any spark-submit it started. The process is appended
    to ``procs`` (for whoever must be able to stop it)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    if procs is not None:
        procs.append(proc)
    lines: list[str] = []
    failure: list[str] = []

    def pump():
        with open(log_file, "w") as f:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                f.write(line)
                if FAILED_TASK.search(line) and not failure:
                    failure.append(line)
                    return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive() or failure:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        tail = "\n".join(lines[-150:])
        why = f"a task failed: {failure[0].strip()}" if failure else f"timed out after {timeout:.0f} s"
        pytest.fail(f"{' '.join(cmd[:4])}: {why}\n(full log: {log_file})\n--- last lines ---\n{tail}")
    rc = proc.wait()
    assert rc == 0, f"{' '.join(cmd[:4])} exited {rc} (log: {log_file})\n" + "\n".join(lines[-150:])
    return lines


def run_checked(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, log_file: Path) -> None:
    with open(log_file, "w") as f:
        p = subprocess.run(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
    if p.returncode != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-120:])
        pytest.fail(f"{' '.join(cmd)} exited {p.returncode} (log: {log_file})\n--- last lines ---\n{tail}")


class NightInBackground(BackgroundJob):
    """`airflow db migrate` and `airflow dags test` for the loaded world's last day, on a copy
    of it: the run is ~13 spark-submits (minutes) during which this process would only
    wait, so the session starts it early and the suite's other tests run meanwhile
    (conftest's ``background``); the end-to-end test, run last, waits for it."""

    def __init__(self, loaded_world, folder: Path):
        self.cfg, extra_conf = copy_loaded_world(loaded_world, folder / "world")
        self.end = loaded_world.end
        home, logs = folder / "airflow", folder / "logs"
        home.mkdir()
        logs.mkdir()
        # the loaded world's pseudonym key (conftest's), so tonight's keys join yesterday's
        env = airflow_env(home, AIRFLOW_CONN_SPARK_DEFAULT=LOCAL_CONN, RISKGRAPH_ENV="test",
                          RISKGRAPH_CONF=str(extra_conf), RISKGRAPH_PSEUDONYM_KEY=os.environ["RISKGRAPH_PSEUDONYM_KEY"])
        self.lines: list[str] | None = None    # the `airflow dags test` output, once it ended
        self.timings: dict[str, float] = {}
        super().__init__("the Airflow night", [], logs / "dags_test.log", env=env, cwd=home)

    def _work(self) -> None:
        airflow = str(VENV_BIN / "airflow")
        t0 = time.perf_counter()
        run_checked([airflow, "db", "migrate"], self.env, self.cwd, 300, self.log.parent / "db_migrate.log")
        t1 = time.perf_counter()
        self.lines = run_streaming([airflow, "dags", "test", DAG_ID, self.end.isoformat()], self.env, self.cwd, 1500,
                                   self.log, self.procs)
        self.timings = {"db migrate": t1 - t0, "dags test": time.perf_counter() - t1}


def start_in_background(request, tmp_path_factory) -> NightInBackground | None:
    """The night, started at the session's first test (conftest's ``background``) when the
    end-to-end test is selected."""
    if not any(item.name == "test_nightly_dag_runs_end_to_end" for item in request.session.items):
        return None
    return NightInBackground(request.getfixturevalue("loaded_world"), tmp_path_factory.mktemp("airflow-night"))


@pytest.mark.late  # waits for the night started at the session's start; meanwhile the suite runs (conftest)
def test_nightly_dag_runs_end_to_end(background):
    """On a copy of the session's loaded `test` world (conftest: simulated and loaded up to
    the day before its last), `airflow dags test` runs the spark-submits for the last day."""
    from riskgraph import tables as T

    night = background[__name__].wait()
    lines, cfg, end, env = night.lines, night.cfg, night.end, night.env

    # `airflow dags test` can exit 0 after a failure: check the run's recorded state.
    runs = run_py(RUNS_SCRIPT % {"dag_id": DAG_ID}, env)["runs"]
    assert len(runs) == 1, runs
    run = runs[0]
    assert run["logical_date"].startswith(end.isoformat())
    assert run["state"] == "success", run
    assert {k: v["state"] for k, v in run["tasks"].items()} == {s: "success" for s in STEPS}
    safe_run_id = re.sub(r"[^0-9A-Za-z._-]+", "-", run["run_id"]).strip("-")
    for step in STEPS:  # every job got the asked-for date (not the inferred manual data interval's start)
        assert run["tasks"][step]["application_args"] == ["--run-date", end.isoformat(), "--run-id", safe_run_id], step
    submitted = dict(m.groups() for m in map(SUBMIT_CMD.search, lines) if m)
    assert submitted == {s: end.isoformat() for s in STEPS}
    assert any("riskgraph vacuum (retention 168 h)" in ln for ln in lines)  # the cleanup ran and said what it freed

    # The feature store holds rows for the end date, committed by this Airflow run.
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    uri = T.FEATURES.uri(cfg)
    table = DeltaTable(uri)
    # Read the snapshot's files with pyarrow: to_pyarrow_table() can abort the process at exit (stack notes).
    data = ds.dataset(table.file_uris(), format="parquet", partitioning="hive", partition_base_dir=uri).to_table(
        columns=["run_date"], use_threads=False)
    counts = {r["values"]: r["counts"] for r in pc.value_counts(data.column("run_date")).to_pylist()}
    assert counts.get(end.isoformat(), 0) > 0, f"no feature rows for {end}; rows per run_date: {counts}"
    assert counts.get((end - dt.timedelta(days=1)).isoformat(), 0) > 0, counts  # the initial load's last day
    last_commit = table.history(1)[0]
    assert (last_commit.get("riskgraph.run_id"), last_commit.get("riskgraph.partitions")) == \
        (safe_run_id, json.dumps([end.isoformat()])), last_commit

    print("\nairflow e2e: " + ", ".join(f"{k} {v:.0f} s" for k, v in night.timings.items()))
