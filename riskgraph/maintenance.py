"""Cleanup with Delta's VACUUM semantics for every table riskgraph writes, and for the
leftovers of killed writers (``riskgraph vacuum``).

A table's folder collects files no version needs any more: every nightly overwrite of a
date removes the old files from the log but not from disk (after 22 versions the feature
table held 9,225 Parquet files for a 365-file live table, and a plain Parquet reader of the
folder saw 25x the rows), and a killed writer leaves its ``_staging/<uuid>`` folder and,
killed between rename and commit, data files no commit references. What goes, per table:

* data files the log removed more than ``retention`` ago, and files in the table's data
  folders that no version references and that were last modified more than ``retention``
  ago (delta-rs ``vacuum(full=True)``, the semantics of Delta's VACUUM): every version
  committed within ``retention`` stays readable (time travel), and a running writer's
  files are younger than ``retention``, so they stay too;
* ``_staging/*`` folders whose newest file is older than ``retention`` (a writer stages
  for minutes; delta-rs' vacuum skips ``_`` folders, so riskgraph sweeps its own);
* hand-off folders under ``work/features_staged`` older than ``retention`` (a run that
  assembled features and never wrote them);
* Spark checkpoint folders under ``paths.checkpoint_dir`` older than ``retention``: Spark
  leaves one per application (``<uuid>/rdd-N``) after every run, finished or killed, since
  ``spark.cleaner.referenceTracking.cleanCheckpoints`` is off by default.

The Delta log itself is not touched (delta-rs cleans expired log files on checkpoints).
Tables on object stores (delta-spark) are vacuumed by their own ``VACUUM`` there.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from riskgraph import tables as T

log = logging.getLogger(__name__)


@dataclass
class Freed:
    table: str
    uri: str
    files: int = 0
    bytes: int = 0
    staging_dirs: int = 0
    note: str = ""


def _newest_mtime(p: Path) -> float:
    times = [p.stat().st_mtime] + [f.stat().st_mtime for f in p.rglob("*")]
    return max(times)


def _size(paths: list[Path]) -> int:
    return sum(f.stat().st_size for f in paths if f.is_file())


def vacuum_table(uri: str, *, retention_hours: int, dry_run: bool = False, now: float | None = None) -> Freed:
    from deltalake import DeltaTable

    freed = Freed(table=Path(uri).name, uri=uri)
    root = Path(uri)
    if "://" in uri and not uri.startswith("file://"):
        freed.note = "object store: run Delta's own VACUUM there"
        return freed
    if not DeltaTable.is_deltatable(uri):
        freed.note = "no table yet"
        return freed
    dt = DeltaTable(uri)
    # enforce_retention_duration=False: the retention is riskgraph's setting (store.vacuum_retention_hours),
    # which may be below the table's own 7-day default on purpose; full=True also removes
    # files no version ever referenced (uncommitted renames), by their modification time.
    listed = dt.vacuum(retention_hours=retention_hours, dry_run=True, enforce_retention_duration=False, full=True)
    paths = [root / p for p in listed]
    freed.files, freed.bytes = len(paths), _size(paths)
    if listed and not dry_run:
        dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True)
    _sweep_old(root / "_staging", (now or time.time()) - retention_hours * 3600, freed, dry_run)
    if not dry_run:
        try:  # the emptied folder itself (a writer re-creates it)
            (root / "_staging").rmdir()
        except OSError:
            pass
    return freed


def _sweep_old(parent: Path, cutoff: float, freed: Freed, dry_run: bool) -> None:
    """Remove the entries of ``parent`` whose newest file is older than ``cutoff`` (a killed
    writer's staging folder, an abandoned hand-off), counting them into ``freed``."""
    if not parent.is_dir():
        return
    for d in sorted(parent.iterdir()):
        if _newest_mtime(d) < cutoff:
            files = [f for f in d.rglob("*") if f.is_file()] if d.is_dir() else [d]
            freed.staging_dirs += 1
            freed.files += len(files)
            freed.bytes += _size(files)
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()


def vacuum_all(cfg, *, retention_hours: int | None = None, dry_run: bool = False) -> list[dict]:
    """Vacuum every table of ``tables.ALL``, the stale hand-off folders and Spark checkpoint
    folders. Returns one row per table (and one each for ``work/features_staged`` and
    ``checkpoints``): files and bytes freed (or, with ``dry_run``, that would be)."""
    hours = retention_hours if retention_hours is not None else cfg.store.vacuum_retention_hours
    rows = []
    for i, table in enumerate(T.ALL, 1):
        f = vacuum_table(table.uri(cfg), retention_hours=hours, dry_run=dry_run)
        f.table = table.key
        log.info("[vacuum %d/%d] %s: %s %d file(s), %.1f MB%s", i, len(T.ALL), table.key,
                 "would free" if dry_run else "freed", f.files, f.bytes / 1e6, f" ({f.note})" if f.note else "")
        rows.append(asdict(f))
    work = Path(T.staged_features_dir(cfg, "x")).parent
    hand = Freed(table="work/features_staged", uri=str(work))
    _sweep_old(work, time.time() - hours * 3600, hand, dry_run)
    rows.append(asdict(hand))
    ckpt = Freed(table="checkpoints", uri=cfg.paths.checkpoint_dir)
    if "://" in ckpt.uri and not ckpt.uri.startswith("file://"):
        ckpt.note = "not a local folder: clean it with the file system's own tools"
    else:
        _sweep_old(Path(ckpt.uri.removeprefix("file://")), time.time() - hours * 3600, ckpt, dry_run)
    rows.append(asdict(ckpt))
    return rows


def format_report(rows: list[dict], *, dry_run: bool, retention_hours: int) -> str:
    verb = "would free" if dry_run else "freed"
    lines = [f"riskgraph vacuum (retention {retention_hours} h{', dry run' if dry_run else ''})",
             f"{'table':34s} {'files':>7s} {'MB':>9s}  note"]
    for r in rows:
        lines.append(f"{r['table']:34s} {r['files']:7d} {r['bytes'] / 1e6:9.1f}  {r['note'] or ''}")
    lines.append(f"{'total ' + verb:34s} {sum(r['files'] for r in rows):7d} {sum(r['bytes'] for r in rows) / 1e6:9.1f}")
    return "\n".join(lines)
