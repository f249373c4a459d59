"""Run-level publishing: the one set of table versions a complete nightly run committed.

Each table commit is atomic, but a run commits some twenty tables one after another, so a
reader during a run (or after a run was killed half-way) that reads every table at its
latest version may see tonight's bronze beside last night's gangs and features. A run that
gets to the end of write_feature_store (the last step that writes tables) publishes the
versions it committed, and readers that want one run's picture read those:

* ``<paths.root>/runs/published/<run_id>.json``: the run's own manifest (kept for audit);
* ``<paths.root>/runs/PUBLISHED``: what is published now (JSON; no ``.json`` suffix, so no
  run id's record ``runs/<run_id>.json`` can collide with it), replaced atomically (a
  rename). It moves only forward: a run whose versions are all at or below the published
  ones (a stale rerun, or the slower of two concurrent runs) leaves it alone, since a Delta
  version contains every earlier commit of its table.

A table the run did not write is listed at its latest version when the run published (as
the run's own steps read it, ``inputs.run_version``). Published versions stay readable for
``store.vacuum_retention_hours`` (168) after the next publish replaces them.

    from riskgraph.published import published, read_published
    gangs = read_published(spark, cfg, T.GANGS)          # the gangs of the last complete run
    published(cfg)["run_id"], published(cfg)["tables"]   # what belongs together
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
from pathlib import Path

from riskgraph import tables as T
from riskgraph.io import write_json_atomic

log = logging.getLogger(__name__)

POINTER = "PUBLISHED"


class NotPublishedError(RuntimeError):
    """No run has published its tables yet (or the table was not part of the set)."""


def _runs(cfg) -> Path:
    return Path(T.runs_dir(cfg).removeprefix("file://"))


def publish(cfg, store, ctx) -> dict:
    """Publish the versions of every table this run committed (the latest for the tables it
    did not write). Returns the manifest, with ``moved`` saying whether it is now the one
    readers get."""
    tables = {}
    for t in T.ALL:
        uri = t.uri(cfg)
        mine = store.committed_version(uri, ctx.run_id)
        v = mine if mine is not None else store.version(uri)
        if v is not None:
            tables[t.key] = {"uri": uri, "version": int(v), "written_by_this_run": mine is not None}
    manifest = {"run_id": ctx.run_id, "run_date": ctx.run_date.isoformat(), "from_date": ctx.from_date.isoformat(),
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "tables": tables}
    runs = _runs(cfg)
    if "://" in str(T.runs_dir(cfg)).replace("file://", ""):
        # run records and the published set are small local files; an object-store root has
        # neither (delta-spark readers there time-travel by the versions in the run's log)
        log.warning("published: paths.root %s is not a POSIX path; the run's set is not published", cfg.paths.root)
        return {**manifest, "moved": False}
    (runs / "published").mkdir(parents=True, exist_ok=True)
    write_json_atomic(runs / "published" / f"{ctx.run_id}.json", manifest)
    with open(runs / ".published.lock", "a+") as lock:  # two runs publishing at once: one after the other
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = published(cfg, missing_ok=True)
        stale = current is not None and current["run_id"] != ctx.run_id and all(
            k in current["tables"] and v["version"] <= current["tables"][k]["version"] for k, v in tables.items())
        if not stale:
            write_json_atomic(runs / POINTER, manifest)
    if stale:
        log.warning("published: run %s's versions are all at or below those of run %s, published already; "
                    "it stays published", ctx.run_id, current["run_id"])
    else:
        log.info("published run %s: %d tables (%s)", ctx.run_id, len(tables),
                 ", ".join(f"{k} v{v['version']}" for k, v in tables.items() if v["written_by_this_run"]))
    return {**manifest, "moved": not stale}


def published(cfg, *, missing_ok: bool = False) -> dict | None:
    """The manifest published now (run id, dates, ``tables``: key → uri, version)."""
    p = _runs(cfg) / POINTER
    if not p.exists():
        if missing_ok:
            return None
        raise NotPublishedError(f"no run has published its tables under {_runs(cfg)} yet: a run publishes when "
                                "write-feature-store commits (`riskgraph run`, or the nightly DAG)")
    return json.loads(p.read_text())


def published_version(cfg, table: T.Table) -> int:
    m = published(cfg)
    if table.key not in m["tables"]:
        raise NotPublishedError(f"{table.key} is not in run {m['run_id']}'s published set (it had no table yet)")
    return m["tables"][table.key]["version"]


def read_published(spark, cfg, table: T.Table, store=None):
    """``table`` at the version the last complete run published."""
    from riskgraph.store import choose_store

    store = store or choose_store(spark, cfg.store.backend)
    return store.read(spark, table.uri(cfg), version=published_version(cfg, table))
