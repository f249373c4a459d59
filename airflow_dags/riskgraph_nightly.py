"""riskgraph nightly: one Spark job per step, one UTC application day per run.

See ``DAG_DOC`` below (rendered in the Airflow UI) for the schedule, the run-date contract,
backfills, the environment the jobs need, and how to point the DAG at a cluster.
"""
from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

DAG_ID = "riskgraph_nightly"

# The repository holding jobs/ (the parent of airflow_dags/). resolve() follows a symlink
# from $AIRFLOW_HOME/dags into the checkout; RISKGRAPH_HOME overrides it when the DAG file
# is copied elsewhere, or when the driver sees the checkout under another path.
RISKGRAPH_HOME = Path(os.environ.get("RISKGRAPH_HOME") or Path(__file__).resolve().parent.parent)

# Forwarded from the worker's environment at run time (never at parse time: the DAG
# processor's environment may differ from the worker's, and the serialized DAG, which
# lands in the metadata DB and the UI, must not hold the pseudonymisation secret).
FORWARDED_ENV = (
    "RISKGRAPH_ENV",            # conf/<env>.yaml (default local)
    "RISKGRAPH_CONF",           # extra YAML merged over it
    "RISKGRAPH_PSEUDONYM_KEY",  # secret for pseudonymising identity keys (ingest needs it)
    "SPARK_LOCAL_IP",           # keeps local-mode Spark on loopback
    "PYSPARK_PYTHON",           # the interpreter (venv) that has riskgraph installed
    "PYSPARK_DRIVER_PYTHON",
)
SECRET_ENV = ("RISKGRAPH_PSEUDONYM_KEY",)

# Extra spark-submit settings for a cluster, read where the DAG file is parsed (on the
# worker, that is where the task runs): Maven coordinates for --packages, and a JSON
# object of --conf settings (e.g. {"spark.driver.memory": "6g"}: spark.* settings that
# must be known before the driver JVM starts cannot come from conf/*.yaml).
SPARK_PACKAGES = os.environ.get("RISKGRAPH_SPARK_PACKAGES") or None
SPARK_CONF: dict[str, str] = json.loads(os.environ.get("RISKGRAPH_SPARK_CONF") or "{}")
if not isinstance(SPARK_CONF, dict):
    raise ValueError(f"RISKGRAPH_SPARK_CONF must be a JSON object of spark settings, got {SPARK_CONF!r}")

STEPS: dict[str, str] = {
    "ingest": """\
**ingest**: raw landing files for the run date → validated, pseudonymised bronze Delta
tables (applications, applicants, outcomes); every rejected row goes to the quarantine table
with a reason. Fails when no raw applications landed for the date (check the upstream file
drop, then clear this task) or when counts do not reconcile. Needs `RISKGRAPH_PSEUDONYM_KEY`.""",
    "ingest_media": """\
**ingest_media**: the media items referenced by the run date's landing (`raw/media_refs`:
selfies, ID photos, business premises, verification calls, loan purposes) and the blacklist
entries (`raw/blacklists`) → `bronze/media` (size, SHA-256, media key, dimensions or
duration) and `bronze/blacklists` (phones pseudonymised); every bad item (missing, empty,
truncated, wrong kind, too small/large, silent, too short, duplicate content) goes to
`bronze/media_quarantine` with its reason. Files are read on the executors.""",
    "ingest_transfers": """\
**ingest_transfers**: the run date's transfers (`raw/transfers`: disbursements, salaries,
card payments, direct debits, transfers) → `bronze/transfers` with account numbers replaced
by keyed pseudonyms; every bad row (missing id, bad amount or time, the same account on both
sides, unknown sector or channel, duplicate) goes to `bronze/transfer_quarantine` with its
reason. Fails when counts do not reconcile. Logs and writes nothing when no transfers landed.""",
    "trace_funds": """\
**trace_funds**: post-loan monitoring. For every loan disbursed in the last
`money.monitor_days`: time-respecting, amount-preserving paths of its money (≤ `money.max_hops`
hops, FinBench truncation at busy accounts) → share reaching real-estate developers and
securities brokers (`money/loans`, with the top paths as evidence in `money/paths`); short
time-ordered cycles of money → `money/cycles`. Every reported hop is audited against
`bronze/transfers`; a violation fails the task.""",
    "embed": """\
**embed**: vectors for the media not yet embedded by the configured model versions
(backgrounds, voiceprints, texts) → `embeddings/{background,voice,text}`, batched inside
Spark (`mapInPandas`, the model loaded once per Python worker; GPU executors through a stage
ResourceProfile when `embed.gpu.enabled`). A re-run with nothing new writes nothing.""",
    "link_media": """\
**link_media**: per modality, a faiss index of the current model's embeddings (built and
searched by executor tasks) → "same room / voice / wording" links from each application's
items to *earlier* items above a threshold calibrated on the training period (hub items — a
chain store's decor, a stock phrase — flagged and linking nobody) and blacklist hits (media
by similarity, devices and phones exactly, each only after the entry was added) →
`graph/media_links`. Does nothing when `graph.sources` names no media source.""",
    "build_graph": """\
**build_graph**: the links of every source in `graph.sources` (bronze columns, media links)
→ the application graph snapshot for the run date
(vertices `id`/`type`/`degree`/`applicants`/`first_seen_ts`/`last_seen_ts`, edges `src`/`dst`/`relationship`/`ts`,
GraphFrames layout).""",
    "shared_neighbours": """\
**shared_neighbours**: for every application of the run date, its earlier partners: other
applicants' applications sharing attribute values that were not hubs at its time, with the
count of shared values, their types, an Adamic-Adar score and whether the partner's bad outcome
was known → `graph/shared_neighbours` (the `sn_*` features are aggregated from it).""",
    "detect_gangs": """\
**detect_gangs**: super-node control (attribute values above their type's degree cap —
shared NAT IPs, default device ids — are reported and link nobody), then connected
components over time-windowed links → gang members, one summary row per gang with its
evidence, and the super-node report. Uses GraphFrames when its JVM package is on the
classpath, the pure-DataFrame algorithm otherwise (the choice is logged).""",
    "assemble_features": """\
**assemble_features**: point-in-time-correct network features per application (sharing
counts per attribute type, point-in-time components with their size, known-bad count, age
and burst; only links and labels known before the application time), staged as Parquet
for this run.""",
    "write_feature_store": """\
**write_feature_store**: commits the staged features to the Delta feature store
`<paths.root>/features/application_network`, replacing exactly the run date's partition.
The commit is idempotent per `--run-id`, so a retry after a successful commit is a no-op.""",
    "evaluate": """\
**evaluate**: credit-model KS uplift (baseline vs. baseline + network features,
out-of-time split), logged to MLflow with the feature-table version used.""",
    "vacuum": """\
**vacuum**: cleanup with Delta VACUUM semantics for every table (files no version within
`store.vacuum_retention_hours` needs, killed writers' staging folders and stale hand-offs);
time travel within the retention and running writers are never touched. Logs what it freed
per table. It does not wait for the previous night's vacuum (`depends_on_past=False`): a
failed cleanup never holds up the data, and the next night's run retries it. The same by
hand: `riskgraph vacuum [--dry-run]`.""",
}
# Per-task exceptions to default_args (below).
TASK_ARGS: dict[str, dict] = {"vacuum": {"depends_on_past": False}}

DAG_DOC = f"""\
# riskgraph nightly

Turns one day of lending applications into fraud-gang tables and point-in-time network
features in the Delta feature store, then measures KS uplift. One `spark-submit` per step,
run in order: {" → ".join(f"`{s}`" for s in STEPS)}. Each step is
`spark-submit jobs/<step>.py --run-date D --run-id R` (jobs under `{RISKGRAPH_HOME}`).

## Schedule and run date

* Timetable `CronDataIntervalTimetable("0 2 * * *", UTC)`: the run for the data interval
  [D 02:00, D+1 02:00) UTC starts at D+1 02:00 and processes application **date D**
  (the UTC calendar day D, complete two hours before the run starts).
* The jobs get `--run-date {{{{ ds }}}}`, the run's logical date. For scheduled runs and
  backfills the logical date is the start of the data interval, so this is D. For a
  manual run (UI trigger, `airflow dags test riskgraph_nightly D`) Airflow 3 infers the
  *previous complete* interval as the data interval, but the logical date stays D, so
  `ds` still means "the date you asked for" (`data_interval_start` would not).
* `--run-id` is Airflow's run id made path-safe (`:` and `+` replaced): retries of a task
  reuse it, which makes the Delta commits exactly-once.
* `max_active_runs=1` and `depends_on_past=True`: every date reads the state the previous
  date left, so dates run one after another and a failed date stops the line until it is
  fixed and cleared (later dates then run in order).
* `catchup=False`. Catch up or reprocess a range with a backfill, oldest date first:
  `airflow backfill create --dag-id riskgraph_nightly --from-date 2026-03-01 --to-date 2026-03-07 --max-active-runs 1`.
  Pass `--max-active-runs 1`: a backfill does not use the DAG's `max_active_runs` (its
  own default is 10 concurrent runs), and `depends_on_past` alone orders each task, not
  whole dates. `--run-backwards` is refused because of `depends_on_past`.
  An initial load of a long history is faster in one process:
  `riskgraph run --from-date S --run-date E`, then let the nightly take over at E+1.
* Retries: 2, with exponential backoff from 5 minutes. A step is idempotent for its date,
  so a retry or a clear re-runs it safely.
* The last task, `vacuum`, cleans up after a successful night; it is the only task that
  does not depend on its own previous run.

## Environment (worker)

* `spark-submit` on `PATH` (it ships with pyspark in the project's venv) and Java 17/21.
* Forwarded to every job from the worker's environment at run time, when set:
  {", ".join(f"`{v}`" for v in FORWARDED_ENV)}. `RISKGRAPH_PSEUDONYM_KEY` is
  required by `ingest`; it is registered with Airflow's secret masker (task logs; the
  console of `airflow dags test` is not masked) and never stored in the DAG. In local and client mode spark-submit inherits the worker's whole environment
  (the hook adds these to it, so `PATH` and `JAVA_HOME` survive); on YARN/Kubernetes the
  provider turns them into `spark.yarn.appMasterEnv.*` / `spark.kubernetes.driverEnv.*`
  settings, which appear on the spark-submit command line: on those clusters prefer the
  cluster's own secret mechanism for the key and leave it unset on the worker.
* `RISKGRAPH_HOME`: the checkout holding `jobs/` (default: the parent of `airflow_dags/`).

## Local vs. cluster

* Connection `spark_default` carries the master. Locally:
  `AIRFLOW_CONN_SPARK_DEFAULT='{{"conn_type": "spark", "host": "local[2]"}}'`. Without a
  connection the provider falls back to `--master yarn`. On a cluster set the host to
  `yarn`, `spark://host:7077` or `k8s://…`, and `deploy-mode`/`queue`/`namespace` in the
  connection's extras.
* GraphFrames and delta-spark come from the cluster's packages: set
  `RISKGRAPH_SPARK_PACKAGES` to the Maven coordinates (comma-separated, e.g.
  `io.graphframes:graphframes-spark4_2.13:<v>,io.delta:delta-spark_2.13:<v>`) and, for
  delta-spark, `RISKGRAPH_SPARK_CONF` to a JSON object with its `spark.sql.extensions` and
  `spark.sql.catalog.spark_catalog` settings, plus driver settings such as
  `spark.driver.memory` that must be known before the driver starts. Use
  `RISKGRAPH_ENV=cluster`. Without the packages the jobs use the pure-DataFrame graph
  algorithms and delta-rs (air-gapped default).
"""


def path_safe(value: str) -> str:
    """Airflow run ids (``scheduled__2026-03-31T02:00:00+00:00``) as a folder-name-safe id:
    Hadoop paths reject ``:``, and ``+`` is URL-decoded as a space by some readers."""
    return re.sub(r"[^0-9A-Za-z._-]+", "-", value).strip("-")


class RiskgraphSparkSubmitOperator(SparkSubmitOperator):
    """A SparkSubmitOperator that forwards riskgraph's settings from the worker's environment.

    The values are read when the task runs (not when the DAG is parsed) and added to the
    operator's own ``env_vars``; the hook adds them to a copy of the worker's environment.
    """

    def execute(self, context):
        from airflow.sdk.log import mask_secret

        forwarded = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        for k in SECRET_ENV:
            if k in forwarded:
                # No name argument: with a name, Airflow masks only names it deems
                # sensitive ("password", "secret", ...), and "..._KEY" is not one of them.
                mask_secret(forwarded[k])
        self.env_vars = {**forwarded, **(self.env_vars or {})}
        return super().execute(context)


default_args = {
    "owner": "riskgraph",
    "depends_on_past": True,
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    # A multiplier in Airflow 3.3 (True would mean 1.0 = constant delay): 5, 10 min.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=1),
    "execution_timeout": timedelta(hours=6),
}

with DAG(
    dag_id=DAG_ID,
    description="Nightly riskgraph: bronze → graph → gangs → features → Delta feature store → KS uplift",
    doc_md=DAG_DOC,
    # "@daily" would give an empty data interval in Airflow 3; this is [D 02:00, D+1 02:00).
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    user_defined_filters={"path_safe": path_safe},
    tags=["riskgraph", "spark"],
) as dag:
    tasks = [
        RiskgraphSparkSubmitOperator(
            task_id=step,
            doc_md=doc,
            application=str(RISKGRAPH_HOME / "jobs" / f"{step}.py"),
            application_args=["--run-date", "{{ ds }}", "--run-id", "{{ run_id | path_safe }}"],
            conn_id="spark_default",
            name=f"riskgraph-{step}",
            packages=SPARK_PACKAGES,
            conf=dict(SPARK_CONF) or None,
            **TASK_ARGS.get(step, {}),
        )
        for step, doc in STEPS.items()
    ]
    chain(*tasks)
