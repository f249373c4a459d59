"""Kill campaign (issue 13): SIGKILL every table-writing step of a nightly run at random
moments, rerun it, clean up, and check what a crash may leave behind.

The world: the `test` world (conf/test.yaml) with its transfers, simulated and loaded
through the day before its last (run id ``load``). The night under test is its last day
(run id ``night``), one step at a time, as Airflow runs it: each step is its own process
(``riskgraph <step> --run-id night ...``), so a SIGKILL to its process group takes the
driver, the JVM and the Python workers down at once, as a lost node would.

For each writing step S, from the state the night's earlier steps left (``before``):

1. reference: S runs to the end on a copy; its tables are ``after``;
2. campaign, on another copy: S is started, and killed at a random moment between its
   session coming up and its reference duration; then started again (a rerun with the same
   run id) and killed again, ``--kills`` times. After every kill:
   * every table opens and reads;
   * every table holds either its ``before`` or its ``after`` rows (sorted-row digests):
     never a mix, never a partial date;
   * every table still reads at the version it had before the night (time travel), with
     the ``before`` rows;
   * a features hand-off marked complete (``_SUCCESS``) holds the reference's rows;
   * the run-level published set (``runs/PUBLISHED``) reads, and is the ``before`` or
     the ``after`` one.
   A start that finishes before its kill is a completed rerun: its tables must equal
   ``after``; the copy is then reset to ``before`` so the next kills hit real work.
3. a last rerun to the end: every table, the hand-off and the published set equal ``after``;
4. ``riskgraph vacuum --retention-hours 0`` (nothing runs now): no stray files are left
   (a table folder holds exactly its current version's data files, its log and its lock;
   no ``_staging``, no hand-off, no Spark checkpoint folder), and every table still equals
   ``after``.

    .venv/bin/python bench/kill_campaign.py --kills 20 [--steps ingest,build-graph] [--out docs/benchmarks.md]
    .venv/bin/python bench/kill_campaign.py --world media --kills 20   # ingest_media, embed, link_media

``--world media`` campaigns the media steps instead, on a small world with media on every
application (conf/media_tiny.yaml: 400 applications in 2026-01, as tests/test_media_pipeline.py; voices
embedded by the shipped ``models/voice-cnn``, the text model fitted by the load), loaded
through the media steps up to 01-30; the night under test is 01-31.

Prints a table per step (kills, completed reruns, checks, failures) and exits 1 on any
failure. Not a test: it runs ~20 processes per step (minutes each step on 2 cores).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# The nightly steps that write tables (or the features hand-off), in nightly order, per
# world. The media steps need the media world (below); evaluate writes MLflow, not tables.
WORLD_STEPS = {
    "test": ["ingest", "ingest_transfers", "trace_funds", "build_graph", "shared_neighbours", "detect_gangs",
             "assemble_features", "write_feature_store"],
    "media": ["ingest", "ingest_media", "embed", "link_media"],
}
WORLD = "test"     # set by main (--world)
RIGGING = {"_delta_log", "_riskgraph_commit.lock"}
KEY = "riskgraph-kill-campaign-pseudonym-key-01234"


# ------------------------------------------------------------------ the worlds

def write_conf(folder: Path) -> Path:
    """Every path of the world under ``folder`` (copies get their own conf)."""
    import yaml

    doc = {
        "paths": {"root": str(folder / "data"), "checkpoint_dir": str(folder / "ckpt")},
        "mlflow": {"tracking_uri": f"sqlite:///{folder}/mlflow.db", "artifact_root": str(folder / "mlflow-art")},
        # money from March (everyday traffic from February), as tests/test_ingest_transfers.py
        "simulation": {"transfers": {"enabled": True, "from_date": "2026-03-01", "background_days": 28,
                                     "patterns_per_kind": 3, "cycles": 20, "decoy_cycles": 10}},
    }
    if WORLD == "media":   # conf/media_tiny.yaml, the world of tests/test_media_pipeline.py
        doc = {**yaml.safe_load((ROOT / "conf" / "media_tiny.yaml").read_text()),
               "paths": doc["paths"], "mlflow": doc["mlflow"]}
    conf = folder / "conf.yaml"
    conf.write_text(yaml.safe_dump(doc))
    return conf


def load_cfg(folder: Path):
    from riskgraph.config import load_config

    return load_config("test", str(folder / "conf.yaml"))


def copy_world(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    shutil.copytree(src / "data", dst / "data", symlinks=True)
    if (src / "ckpt").exists():
        shutil.copytree(src / "ckpt", dst / "ckpt", symlinks=True)
    if (src / "mlflow.db").exists():
        shutil.copy2(src / "mlflow.db", dst / "mlflow.db")
    write_conf(dst)


def env() -> dict:
    e = dict(os.environ)
    e.update({"SPARK_LOCAL_IP": "127.0.0.1", "RISKGRAPH_PSEUDONYM_KEY": KEY, "RISKGRAPH_ENV": "test",
              "PYSPARK_PYTHON": sys.executable})
    return e


def cli(folder: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "riskgraph.cli", *args, "--env", "test", "--conf", str(folder / "conf.yaml")]


def step_cmd(folder: Path, step: str, night: dt.date) -> list[str]:
    return cli(folder, step.replace("_", "-"), "--run-date", night.isoformat(), "--from-date", night.isoformat(),
               "--run-id", "night")


def run_to_end(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env(), cwd=ROOT).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


# ------------------------------------------------------------------ what a world holds

def table_state(cfg) -> dict:
    """Per Delta table: version, sorted-row digest, rows; an unreadable table is an error string."""
    from deltalake import DeltaTable

    from riskgraph import tables as T

    out = {}
    for t in T.ALL:
        uri = t.uri(cfg)
        if not Path(uri, "_delta_log").exists():
            continue
        try:
            d = DeltaTable(uri)
            out[t.key] = {"version": d.version(), **digest(d.to_pyarrow_table(), world_of(cfg))}
        except Exception as e:  # noqa: BLE001 - an unreadable table is the finding
            out[t.key] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def world_of(cfg) -> str:
    return str(Path(cfg.paths.root).parent)


# a landing file's URI in a value (bronze/quarantine's ``file``), up to the world's data root
_LANDING_URI = re.compile(r'(?:file:)?/[^"]*?/data/raw/')


def digest(tbl, world: str) -> dict:
    """Order-free digest of a table's rows (columns by name, so column order does not matter).
    Landing-file URIs are cut to their path under the data root (``world``'s folder too), so
    a copy of a world digests as the original, whichever folder each of its rows was
    ingested in."""
    cols = sorted(tbl.column_names)
    rows = sorted(_LANDING_URI.sub("<root>/raw/", json.dumps([r[c] for c in cols], default=str, sort_keys=True))
                  .replace(world, "<world>") for r in tbl.to_pylist())
    h = hashlib.sha256("\x1f".join(cols).encode())
    for r in rows:
        h.update(r.encode())
        h.update(b"\n")
    return {"rows": len(rows), "sha": h.hexdigest()[:16]}


def read_at(cfg, key: str, version: int) -> dict:
    from deltalake import DeltaTable

    from riskgraph import tables as T

    t = next(t for t in T.ALL if t.key == key)
    try:
        return digest(DeltaTable(t.uri(cfg), version=version).to_pyarrow_table(), world_of(cfg))
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"[:300]}


def handoff(cfg) -> dict | None:
    """The night's features hand-off when it is marked complete; None when it is not."""
    import pyarrow.dataset as ds

    from riskgraph import tables as T

    d = Path(T.staged_features_dir(cfg, "night"))
    if not (d / "_SUCCESS").exists():
        return None
    return digest(ds.dataset(str(d), format="parquet").to_table(), world_of(cfg))


def published_set(cfg) -> dict | None:
    """The run-level published set (runs/PUBLISHED) without its paths and time: run id and
    table versions; an unreadable pointer is an error string."""
    from riskgraph.published import published

    try:
        m = published(cfg, missing_ok=True)
    except Exception as e:  # noqa: BLE001 - a half-written pointer is the finding
        return {"error": f"{type(e).__name__}: {e}"[:300]}
    return None if m is None else {"run_id": m["run_id"], "tables": {k: v["version"] for k, v in m["tables"].items()}}


def strays(cfg) -> list[str]:
    """Files a clean world must not hold once vacuumed with retention 0: data files outside
    the current version, staging folders, hand-offs, Spark checkpoint folders."""
    from deltalake import DeltaTable

    from riskgraph import tables as T

    found = []
    for t in T.ALL:
        root = Path(t.uri(cfg))
        if not root.exists():
            continue
        live = ({Path(u.removeprefix("file://")).relative_to(root).as_posix() for u in DeltaTable(str(root)).file_uris()}
                if (root / "_delta_log").exists() else set())
        for f in root.rglob("*"):
            rel = f.relative_to(root)
            if rel.parts[0] in RIGGING or f.is_dir():
                continue
            if str(rel) not in live:
                found.append(f"{t.key}/{rel}")
        found += [f"{t.key}/{p.name}/" for p in root.glob("_staging")]
    staged = Path(T.staged_features_dir(cfg, "x")).parent
    if staged.exists():
        found += [f"work/features_staged/{p.name}/" for p in staged.iterdir()]
    ckpt = Path(cfg.paths.checkpoint_dir)
    if ckpt.exists():
        found += [f"checkpoints/{p.name}/" for p in ckpt.iterdir()]
    return found


def compare(now: dict, want: dict, label: str) -> list[str]:
    bad = []
    for key in sorted(set(now) | set(want)):
        a, b = now.get(key), want.get(key)
        if a is None or b is None or "error" in a or a.get("sha") != b.get("sha"):
            bad.append(f"{label}: {key} is {a} not {b}")
    return bad


# ------------------------------------------------------------------ one step's campaign

def start(cmd: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env(), cwd=ROOT, start_new_session=True)


def wait_for_marker(p: subprocess.Popen, log: Path, marker: str, timeout: float = 300) -> bool:
    """True once the step logged ``marker`` (its Spark session is up); False if it ended first."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if marker in log.read_text(errors="replace"):
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.05)
    raise SystemExit(f"no {marker!r} in {log} after {timeout:.0f} s")


def campaign(step: str, before_dir: Path, work: Path, night: dt.date, kills: int, rng: random.Random) -> dict:
    ref_dir, camp_dir = work / f"ref-{step}", work / f"camp-{step}"
    copy_world(before_dir, ref_dir)
    cfg_before = load_cfg(before_dir)
    before, before_handoff, before_pub = table_state(cfg_before), handoff(cfg_before), published_set(cfg_before)
    # reference: the step to its end, timed from its session coming up to its exit
    marker = f"[1/1] {step}:"
    p = start(step_cmd(ref_dir, step, night), work / f"{step}-ref.log")
    wait_for_marker(p, work / f"{step}-ref.log", marker)
    t0 = time.perf_counter()
    if p.wait() != 0:
        raise SystemExit(f"reference {step} failed; see {work / f'{step}-ref.log'}")
    ref_s = time.perf_counter() - t0
    cfg_ref = load_cfg(ref_dir)
    after, after_handoff, after_pub = table_state(cfg_ref), handoff(cfg_ref), published_set(cfg_ref)
    changed = sorted(k for k in after if before.get(k, {}).get("sha") != after[k].get("sha"))

    copy_world(before_dir, camp_dir)
    cfg = load_cfg(camp_dir)
    failures, done, completed, checks, starts = [], 0, 0, 0, 0
    while done < kills and starts < 3 * kills:
        starts += 1
        log = work / f"{step}-start{starts:02d}.log"
        p = start(step_cmd(camp_dir, step, night), log)
        if wait_for_marker(p, log, marker):
            time.sleep(rng.uniform(0, ref_s))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            done += 1
            now = table_state(cfg)
            for key, st in now.items():
                checks += 1
                if "error" in st:
                    failures.append(f"kill {done}: {key} unreadable: {st['error']}")
                elif st["sha"] not in {before.get(key, {}).get("sha"), after.get(key, {}).get("sha")}:
                    failures.append(f"kill {done}: {key} holds neither its before nor its after rows ({st['rows']} rows)")
            for key, st in before.items():
                checks += 1
                got = read_at(cfg, key, st["version"])
                if got.get("sha") != st["sha"]:
                    failures.append(f"kill {done}: {key} at version {st['version']} reads {got}, not its before rows")
            h = handoff(cfg)
            checks += 1
            if h is not None and h not in (before_handoff, after_handoff):
                failures.append(f"kill {done}: a complete-marked hand-off holds {h}, neither {before_handoff} nor {after_handoff}")
            pub = published_set(cfg)
            checks += 1
            if pub not in (before_pub, after_pub):
                failures.append(f"kill {done}: the published set is {pub}, neither {before_pub} nor {after_pub}")
        else:
            if p.returncode != 0:
                failures.append(f"start {starts}: rerun after a kill failed (exit {p.returncode}); see {log}")
                break
            completed += 1
            checks += 1
            failures += compare(table_state(cfg), after, f"completed rerun {completed}")
            copy_world(before_dir, camp_dir)   # the next kills hit real work again
    # the last rerun, to the end, then the cleanup
    run_to_end(step_cmd(camp_dir, step, night), work / f"{step}-final.log")
    checks += 3
    failures += compare(table_state(cfg), after, "final rerun")
    if published_set(cfg) != after_pub:
        failures.append(f"final rerun: published set {published_set(cfg)} not {after_pub}")
    if handoff(cfg) != after_handoff:
        failures.append(f"final rerun: hand-off {handoff(cfg)} not {after_handoff}")
    run_to_end(cli(camp_dir, "vacuum", "--retention-hours", "0"), work / f"{step}-vacuum.log")
    left = strays(cfg)
    checks += 2
    if left:
        failures.append(f"after vacuum: {len(left)} stray file(s): {left[:5]}")
    failures += compare(table_state(cfg), after, "after vacuum")
    shutil.rmtree(camp_dir)
    return {"step": step, "tables_written": changed, "ref_s": round(ref_s, 1), "starts": starts, "kills": done,
            "completed_reruns": completed, "checks": checks, "failures": failures, "ref_dir": ref_dir}


# ------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="kills per step (default 20)")
    ap.add_argument("--world", choices=sorted(WORLD_STEPS), default="test",
                    help="test: the structured and money steps; media: ingest_media, embed, link_media")
    ap.add_argument("--steps", default=None, help="writing steps to kill, in nightly order (default: all of the world's)")
    ap.add_argument("--seed", type=int, default=13, help="seed of the kill moments")
    ap.add_argument("--work", default=None, help="work folder (default: a new temp folder, removed at the end)")
    ap.add_argument("--out", default=None, help="append the result table to this Markdown file")
    args = ap.parse_args()
    global WORLD
    WORLD = args.world
    writing = WORLD_STEPS[WORLD]
    steps = ([s.strip().replace("-", "_") for s in args.steps.split(",") if s.strip()] if args.steps
             else [s for s in writing if WORLD == "test" or s != "ingest"])
    bad = [s for s in steps if s not in writing]
    if bad:
        raise SystemExit(f"not writing steps of the {WORLD} world: {bad}; choose from {writing}")
    steps = sorted(set(steps), key=writing.index)
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="riskgraph-kills-"))
    work.mkdir(parents=True, exist_ok=True)

    base = work / ("base" if WORLD == "test" else f"base-{WORLD}")
    base.mkdir(exist_ok=True)
    write_conf(base)
    cfg = load_cfg(base)
    night = cfg.simulation.end_date
    if not (base / ".loaded").exists():  # a --work folder from an earlier campaign keeps its loaded world
        print(f"[setup] simulating and loading the {WORLD} world through {night - dt.timedelta(days=1)} in {base}",
              flush=True)
        t0 = time.perf_counter()
        run_to_end(cli(base, "simulate"), work / "simulate.log")
        run_to_end(cli(base, "run", "--steps", ",".join(writing), "--run-date", (night - dt.timedelta(days=1)).isoformat(),
                       "--from-date", cfg.simulation.start_date.isoformat(), "--run-id", "load"), work / "load.log")
        (base / ".loaded").touch()
        print(f"[setup] done in {time.perf_counter() - t0:.0f} s", flush=True)

    # ``state`` walks the night step by step: the world as the night's earlier steps left it
    state = work / "state"
    copy_world(base, state)
    results = []
    for step in writing[: writing.index(steps[-1]) + 1]:   # the steps after the last one asked for need not run
        if step in steps:
            t0 = time.perf_counter()
            print(f"[{step}] {args.kills} kills ...", flush=True)
            r = campaign(step, state, work, night, args.kills, rng)
            r["wall_s"] = round(time.perf_counter() - t0)
            results.append(r)
            print(f"[{step}] kills {r['kills']}, completed reruns {r['completed_reruns']}, checks {r['checks']}, "
                  f"failures {len(r['failures'])} ({r['wall_s']} s)", flush=True)
            for f in r["failures"][:10]:
                print(f"    {f}", flush=True)
            shutil.rmtree(state)
            r.pop("ref_dir").rename(state)   # the step's reference result is the next step's before
            write_conf(state)
        else:
            run_to_end(step_cmd(state, step, night), work / f"{step}-plain.log")

    lines = ["| step | tables the step changes | reference s | starts | kills | completed reruns | checks | failures |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['step']} | {', '.join(r['tables_written']) or '(hand-off only)'} | {r['ref_s']} | {r['starts']} | "
                     f"{r['kills']} | {r['completed_reruns']} | {r['checks']} | {len(r['failures'])} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        from _report import append_markdown

        append_markdown(args.out, "kill_campaign.py", table)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
