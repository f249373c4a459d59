"""What every job shares: its arguments, its context and its entry point.

A job module defines ``run(spark, ctx) -> dict`` (metrics for the run record) and ends with
``if __name__ == "__main__": job_main(run, "<step>")`` so the same file runs under
``spark-submit jobs/<step>.py --run-date D`` (Airflow) and ``riskgraph <step> --run-date D``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from riskgraph.config import Config, load_config

log = logging.getLogger("riskgraph")


@dataclass(frozen=True)
class JobContext:
    """One run of one or more steps for ``run_date``.

    ``from_date``..``run_date`` is the window of application dates this run owns: a nightly
    run owns one day (``from_date == run_date``); an initial load or a backfill owns a range
    and replaces every date partition in it.
    """

    cfg: Config
    run_date: dt.date
    from_date: dt.date
    run_id: str
    backends: dict = field(default_factory=dict)
    # False when the id was made up for this invocation (no --run-id): a step run on its own
    # then finds its upstream step's hand-off by the run's dates (tables.find_staged_features).
    run_id_given: bool = True

    @property
    def run_date_str(self) -> str:
        return self.run_date.isoformat()

    def dates(self) -> list[str]:
        n = (self.run_date - self.from_date).days
        return [(self.from_date + dt.timedelta(days=i)).isoformat() for i in range(n + 1)]

    def table(self, *parts: str) -> str:
        return self.cfg.paths.table(*parts)


def _date(s: str) -> dt.date:
    try:
        return dt.date.fromisoformat(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a date yyyy-mm-dd, got {s!r}") from e


def add_common_args(p: argparse.ArgumentParser, *, need_run_date: bool = True) -> None:
    p.add_argument("--run-date", type=_date, required=need_run_date, help="nightly run date, yyyy-mm-dd (Airflow: {{ ds }})")
    p.add_argument("--from-date", type=_date, default=None, help="first application date this run owns (default: the run date; earlier for an initial load or backfill)")
    p.add_argument("--run-id", default=None, help="id of this run (default: dates + a timestamp, unique per invocation); re-using an id makes its commits no-ops. "
                   "Steps run one at a time without it hand over by run dates (write-feature-store takes the newest "
                   "assemble-features output for the same --from-date/--run-date)")
    p.add_argument("--env", default=None, help="config environment: conf/<env>.yaml (default $RISKGRAPH_ENV or local)")
    p.add_argument("--conf", default=None, help="extra YAML file merged over the environment's config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one setting, e.g. --set simulation.seed=7")


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v
    return out


def safe_run_id(run_id: str) -> str:
    """Run ids become folder names (staging) and Delta transaction ids: keep them to
    [0-9A-Za-z._-] (an Airflow id such as 'scheduled__2026-03-31T02:00:00+00:00' holds ':'
    and '+', which Hadoop paths reject)."""
    safe = re.sub(r"[^0-9A-Za-z._-]+", "-", run_id).strip("-")
    if not safe:
        raise SystemExit(f"--run-id {run_id!r} has no usable characters")
    return safe


def default_run_id(run_date: dt.date, from_date: dt.date) -> str:
    """Unique per invocation, so re-running a date (e.g. after a config change) replaces it.
    Schedulers pass their own stable id (Airflow: {{ run_id }}), so a retried task whose
    commit already landed is a no-op instead."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{from_date.isoformat()}_{run_date.isoformat()}_{stamp}"


def context_from_args(args: argparse.Namespace, cfg: Config | None = None) -> JobContext:
    cfg = cfg or load_config(args.env, args.conf, parse_overrides(args.overrides))
    from_date = args.from_date or args.run_date
    if from_date > args.run_date:
        raise SystemExit(f"--from-date {from_date} is after --run-date {args.run_date}")
    run_id = safe_run_id(args.run_id or default_run_id(args.run_date, from_date))
    return JobContext(cfg=cfg, run_date=args.run_date, from_date=from_date, run_id=run_id, run_id_given=args.run_id is not None)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "alembic", "mlflow", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def job_main(run: Callable, step: str, argv: list[str] | None = None) -> dict:
    """Entry point of a job file under spark-submit: parse, build the session, run, report."""
    from riskgraph.session import get_spark

    setup_logging()
    p = argparse.ArgumentParser(prog=f"riskgraph {step}")
    add_common_args(p)
    args = p.parse_args(argv)
    ctx = context_from_args(args)
    spark = get_spark(ctx.cfg)
    t0 = time.perf_counter()
    log.info("step %s: run_date=%s from=%s run_id=%s", step, ctx.run_date, ctx.from_date, ctx.run_id)
    metrics = run(spark, ctx) or {}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"step": step, "run_date": ctx.run_date_str, **metrics}, default=str))
    return metrics


def stable_int(*parts: str) -> int:
    """A deterministic 63-bit integer from strings (for ids and Delta transaction versions)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big") >> 1


class SparkProgress:
    """Logs the progress of the Spark jobs a long step runs, every ``every_s`` seconds, from a
    daemon thread polling the driver's status tracker (no listener, no UI needed):
    ``embed background: 12/32 tasks done (38%), 2 running, 95 s``. Use as a context manager
    around the action; a step shorter than ``every_s`` logs nothing. It counts the tasks of
    every active stage of the SparkContext: riskgraph runs its steps one at a time, so those
    are the step's own (the total grows as later stages start)."""

    def __init__(self, spark, label: str, *, every_s: float = 30.0, logger: logging.Logger | None = None) -> None:
        self._sc = spark.sparkContext
        self.label = label
        self.every_s = every_s
        self._log = logger or log
        self._stop = None
        self._thread = None
        self._t0 = 0.0

    def snapshot(self) -> tuple[int, int, int]:
        """(tasks done, tasks in total, tasks running) over the active stages."""
        tracker = self._sc.statusTracker()
        done = total = running = 0
        for sid in tracker.getActiveStageIds():
            info = tracker.getStageInfo(sid)
            if info is not None:
                done += info.numCompletedTasks
                total += info.numTasks
                running += info.numActiveTasks
        return done, total, running

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                done, total, running = self.snapshot()
            except Exception:  # e.g. the context is stopping: progress is a courtesy, never a failure
                self._log.debug("%s: progress reporting stopped", self.label, exc_info=True)
                return
            if total:
                self._log.info("%s: %d/%d tasks done (%.0f%%), %d running, %.0f s", self.label, done, total,
                               100.0 * done / total, running, time.perf_counter() - self._t0)

    def __enter__(self) -> "SparkProgress":
        import threading

        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress:{self.label}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
