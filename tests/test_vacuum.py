"""riskgraph vacuum: Delta VACUUM semantics for riskgraph's tables and its crash leftovers
(issue 13): what no version within the retention needs goes, what a live version or a
running writer needs stays, and the report says what was freed."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.dataset as pads
from deltalake import DeltaTable

from riskgraph import tables as T
from riskgraph.cli import main
from riskgraph.maintenance import vacuum_all
from riskgraph.store import DeltaRsStore

HOUR = 3600


def _age(path: Path, hours: float) -> None:
    t = time.time() - hours * HOUR
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t))


def _write(spark, cfg, day_rows: dict[str, int], run_id: str):
    rows = [(f"{d}-{i}", d) for d, n in day_rows.items() for i in range(n)]
    df = spark.createDataFrame(rows, "application_id string, run_date string")
    return DeltaRsStore().write(df, T.FEATURES.uri(cfg), partition_col="run_date", partitions=sorted(day_rows), run_id=run_id)


def _data_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if not any(part.startswith("_") for part in p.relative_to(root).parts)}


def test_vacuum_frees_what_no_version_needs_and_keeps_the_rest(spark, cfg_factory, capsys):
    cfg = cfg_factory()
    root = Path(T.FEATURES.uri(cfg))
    for v in range(4):  # four nightly re-writes of the same two dates: old files pile up
        _write(spark, cfg, {"2026-01-01": 3 + v, "2026-01-02": 2}, f"r{v}")
    live = {Path(u).relative_to(root).as_posix() for u in DeltaTable(str(root)).file_uris()}
    # crash leftovers: a killed writer's staging folder and an uncommitted renamed file, both
    # old; and the same from a writer running right now
    old_stage, new_stage = root / "_staging" / "deadbeef", root / "_staging" / "running"
    for d in (old_stage, new_stage):
        (d / "run_date=2026-01-01").mkdir(parents=True)
        (d / "run_date=2026-01-01" / "part-0.parquet").write_bytes(b"x" * 100)
    old_stray = root / "run_date=2026-01-01" / "part-99999-killed.snappy.parquet"
    new_stray = root / "run_date=2026-01-01" / "part-99998-running.snappy.parquet"
    old_stray.write_bytes(b"y" * 50)
    new_stray.write_bytes(b"y" * 50)
    _age(old_stage, 3)
    _age(old_stray, 3)
    handoff = Path(T.staged_features_dir(cfg, "abandoned"))
    handoff.mkdir(parents=True)
    (handoff / "part-0.parquet").write_bytes(b"z" * 10)
    _age(handoff, 3)
    # Spark leaves a checkpoint folder per application, finished or killed
    old_ckpt, new_ckpt = Path(cfg.paths.checkpoint_dir) / "0a1b-old", Path(cfg.paths.checkpoint_dir) / "0a1c-running"
    for d in (old_ckpt, new_ckpt):
        (d / "rdd-7").mkdir(parents=True)
        (d / "rdd-7" / "part-00000").write_bytes(b"c" * 40)
    _age(old_ckpt, 3)
    before = _data_files(root)
    assert len(before) == 2 * 4 + 2  # 4 versions x 2 dates + the two strays

    # retention 1 h: the old leftovers go; files the last versions need (removed just now) stay
    dry = vacuum_all(cfg, retention_hours=1, dry_run=True)
    assert _data_files(root) == before and old_stage.exists()  # a dry run deletes nothing
    rows = {r["table"]: r for r in vacuum_all(cfg, retention_hours=1)}
    assert rows == {r["table"]: r for r in dry}
    feats = rows[T.FEATURES.key]
    assert (feats["files"], feats["staging_dirs"], feats["bytes"]) == (2, 1, 150)
    assert rows["work/features_staged"]["staging_dirs"] == 1 and not handoff.exists()
    assert (rows["checkpoints"]["files"], rows["checkpoints"]["bytes"]) == (1, 40)
    assert not old_ckpt.exists() and new_ckpt.exists()
    assert not old_stray.exists() and not old_stage.exists() and new_stray.exists() and new_stage.exists()
    assert _data_files(root) == before - {old_stray.relative_to(root).as_posix()}
    for v in range(4):  # every version within the retention still reads
        assert DeltaRsStore().read(spark, str(root), version=v).count() == 5 + v

    # retention 0: only what the current version needs is left; a plain Parquet reader of the
    # folder now sees exactly the table's rows
    current = DeltaRsStore().read(spark, str(root)).collect()
    vacuum_all(cfg, retention_hours=0)
    assert _data_files(root) == live
    assert sorted(DeltaRsStore().read(spark, str(root)).collect()) == sorted(current)
    plain = pads.dataset(str(root), format="parquet", partitioning="hive",
                         exclude_invalid_files=True, ignore_prefixes=["_", "."]).count_rows()
    assert plain == len(current) == 8
    assert (root / "_riskgraph_commit.lock").exists() and (root / "_delta_log").is_dir()

    # the command prints a table of what it freed, per table
    assert main(["vacuum", "--env", "test", "--set", f"paths.root={cfg.paths.root}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "riskgraph vacuum (retention 168 h, dry run)" in out and T.FEATURES.key in out and "total would free" in out


def test_nightly_vacuum_job_uses_the_configured_retention_and_reports_totals(spark, cfg_factory):
    """jobs/vacuum.py, the Airflow DAG's last task: vacuum_all with store.vacuum_retention_hours."""
    import datetime as dt

    from riskgraph.jobs import vacuum as job
    from riskgraph.runtime import JobContext

    cfg = cfg_factory(store__vacuum_retention_hours=2)
    root = Path(T.FEATURES.uri(cfg))
    _write(spark, cfg, {"2026-01-01": 3}, "r0")
    old_stray, new_stray = root / "run_date=2026-01-01" / "part-killed.parquet", root / "run_date=2026-01-01" / "part-1h.parquet"
    old_stray.write_bytes(b"y" * 70)
    new_stray.write_bytes(b"y" * 30)
    _age(old_stray, 3)  # older than the 2 h retention: freed
    _age(new_stray, 1)  # younger: a writer may still need it
    day = dt.date(2026, 1, 2)
    out = job.run(spark, JobContext(cfg=cfg, run_date=day, from_date=day, run_id="nightly"))
    assert out == {"retention_hours": 2, "tables": len(T.ALL) + 2, "files_freed": 1, "bytes_freed": 70,
                   "staging_dirs_freed": 0}
    assert not old_stray.exists() and new_stray.exists()
