"""vacuum: the nightly cleanup, the last task of the Airflow DAG. Delta VACUUM semantics for
every table riskgraph writes, plus killed writers' leftovers (``riskgraph.maintenance``):
frees only files no table version within ``store.vacuum_retention_hours`` needs, and no
file a running writer needs. Tables are vacuumed with delta-rs from the driver; the Spark
session is not used, but it is built as for every job, because a cluster deploy mode (YARN's
application master) fails a driver that never starts one. ``riskgraph vacuum`` does the
same by hand (with ``--dry-run``)."""
from __future__ import annotations

import logging

from riskgraph.maintenance import format_report, vacuum_all
from riskgraph.runtime import JobContext, job_main

log = logging.getLogger("riskgraph.vacuum")


def run(spark, ctx: JobContext) -> dict:
    hours = ctx.cfg.store.vacuum_retention_hours
    rows = vacuum_all(ctx.cfg, retention_hours=hours)
    log.info("%s", format_report(rows, dry_run=False, retention_hours=hours))
    return {"retention_hours": hours, "tables": len(rows), "files_freed": sum(r["files"] for r in rows),
            "bytes_freed": sum(r["bytes"] for r in rows), "staging_dirs_freed": sum(r["staging_dirs"] for r in rows)}


if __name__ == "__main__":
    job_main(run, "vacuum")
