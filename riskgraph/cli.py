"""The ``riskgraph`` command: each nightly step, the whole run, the simulator, the catalog."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from riskgraph.runtime import add_common_args, context_from_args, setup_logging

log = logging.getLogger("riskgraph")

# step name → job module; the order is the nightly order
STEPS = {
    "ingest": "riskgraph.jobs.ingest",
    "ingest_media": "riskgraph.jobs.ingest_media",
    "ingest_transfers": "riskgraph.jobs.ingest_transfers",
    "trace_funds": "riskgraph.jobs.trace_funds",
    "embed": "riskgraph.jobs.embed",
    "link_media": "riskgraph.jobs.link_media",
    "build_graph": "riskgraph.jobs.build_graph",
    "shared_neighbours": "riskgraph.jobs.shared_neighbours",
    "detect_gangs": "riskgraph.jobs.detect_gangs",
    "assemble_features": "riskgraph.jobs.assemble_features",
    "write_feature_store": "riskgraph.jobs.write_feature_store",
    "evaluate": "riskgraph.jobs.evaluate",
}


def run_pipeline(cfg, *, run_date: dt.date, from_date: dt.date | None = None, run_id: str | None = None,
                 steps: list[str] | None = None, spark=None, simulate_summary: dict | None = None,
                 extra_seconds: dict | None = None) -> dict:
    """Run ``steps`` (default: all, in nightly order) in one Spark session and return the
    run record (also saved as ``<root>/runs/<run_id>.json``)."""
    from riskgraph import tables as T
    from riskgraph.io import write_json_atomic
    from riskgraph.runtime import JobContext, default_run_id, safe_run_id
    from riskgraph.session import get_spark

    steps = steps or list(STEPS)
    from_date = from_date or run_date
    ctx = JobContext(cfg=cfg, run_date=run_date, from_date=from_date, run_id=safe_run_id(run_id or default_run_id(run_date, from_date)))
    spark = spark or get_spark(cfg)
    results, seconds = {}, dict(extra_seconds or {})
    for i, step in enumerate(steps, 1):
        log.info("[%d/%d] %s: run_date=%s window=%s..%s", i, len(steps), step, ctx.run_date, ctx.from_date, ctx.run_date)
        t0 = time.perf_counter()
        results[step] = importlib.import_module(STEPS[step]).run(spark, ctx) or {}
        seconds[step] = round(time.perf_counter() - t0, 1)
        log.info("[%d/%d] %s done in %.1f s", i, len(steps), step, seconds[step])
    record = _record(ctx, results, seconds, simulate_summary)
    out = Path(T.runs_dir(cfg))
    out.mkdir(parents=True, exist_ok=True)
    record["run_record"] = str(out / f"{ctx.run_id}.json")
    write_json_atomic(out / f"{ctx.run_id}.json", record)
    return record


def parse_steps(text: str) -> list[str]:
    """``--steps``: comma-separated step names, written as the sub-commands are
    (``link-media``) or with underscores (``link_media``); kept in the nightly order."""
    asked = [s.strip().replace("-", "_") for s in text.split(",") if s.strip()]
    unknown = [s for s in asked if s not in STEPS]
    if unknown:
        raise SystemExit(f"unknown step(s) {unknown}; steps, in nightly order: {', '.join(s.replace('_', '-') for s in STEPS)}")
    if not asked:
        raise SystemExit("--steps is empty; steps, in nightly order: " + ", ".join(s.replace("_", "-") for s in STEPS))
    dup = sorted({s for s in asked if asked.count(s) > 1})
    if dup:
        raise SystemExit(f"--steps names {dup} more than once")
    order = list(STEPS)
    if asked != sorted(asked, key=order.index):
        raise SystemExit(f"--steps must follow the nightly order ({', '.join(s.replace('_', '-') for s in STEPS)}); "
                         f"got {', '.join(asked)}")
    return asked


def _run_steps(args: argparse.Namespace, steps: list[str]) -> dict:
    from riskgraph.config import load_config
    from riskgraph.runtime import parse_overrides

    cfg = load_config(args.env, args.conf, parse_overrides(args.overrides))
    sim_summary, extra = None, {}
    if getattr(args, "simulate", False):
        from riskgraph.jobs import simulate

        log.info("[simulate] writing a simulated world to %s", cfg.paths.root)
        t0 = time.perf_counter()
        sim_summary = simulate.main(_passthrough(args))
        extra["simulate"] = round(time.perf_counter() - t0, 1)
        args.run_date = args.run_date or cfg.simulation.end_date
        args.from_date = args.from_date or cfg.simulation.start_date
    if args.run_date is None:
        raise SystemExit("--run-date is required (or --simulate, which runs for the simulated world's end date)")
    ctx = context_from_args(args, cfg)
    return run_pipeline(cfg, run_date=ctx.run_date, from_date=ctx.from_date, run_id=ctx.run_id, steps=steps,
                        simulate_summary=sim_summary, extra_seconds=extra)


def _passthrough(args: argparse.Namespace) -> list[str]:
    argv = []
    if args.env:
        argv += ["--env", args.env]
    if args.conf:
        argv += ["--conf", args.conf]
    for o in args.overrides:
        argv += ["--set", o]
    return argv


def _record(ctx, results: dict, seconds: dict, sim_summary: dict | None) -> dict:
    from riskgraph import tables as T

    ing, gang, wfs, ev = (results.get(k, {}) for k in ("ingest", "detect_gangs", "write_feature_store", "evaluate"))
    med, emb, lm = (results.get(k) or {} for k in ("ingest_media", "embed", "link_media"))
    itr, tf = (results.get(k) or {} for k in ("ingest_transfers", "trace_funds"))
    return {
        "run_date": ctx.run_date_str,
        "from_date": ctx.from_date.isoformat(),
        "run_id": ctx.run_id,
        "env": ctx.cfg.env,
        "feature_table": T.FEATURES.uri(ctx.cfg),
        "feature_table_version": wfs.get("feature_table_version"),
        "gang_table": T.GANGS.uri(ctx.cfg),
        "rows_in": ing.get("rows_in"),
        "rows_quarantined": ing.get("rows_quarantined"),
        "media_in": med.get("items_in"),
        "media_kept": med.get("kept"),
        "media_quarantined": med.get("quarantined"),
        "media_embedded": ({m: (d or {}).get("items_embedded") for m, d in (emb.get("embed") or {}).items()} or None),
        "media_links": ({m: {"threshold": d.get("threshold"), "links": d.get("links_live"), "hub_items": d.get("hub_items"),
                             "blacklist_hits": d.get("blacklist_hits")} for m, d in (lm.get("similarity") or {}).items()
                         if "threshold" in d} or None),
        "transfers_in": itr.get("in"),
        "transfers_quarantined": itr.get("quarantined"),
        "loans_traced": tf.get("loans_traced"),
        "loans_diverted": tf.get("loans_diverted"),
        "money_cycles": tf.get("cycles"),
        "diversion_recall": (tf.get("diversion_quality") or {}).get("recall"),
        "diversion_precision": (tf.get("diversion_quality") or {}).get("precision"),
        "cycle_recall": (tf.get("cycle_quality") or {}).get("recall"),
        "decoy_cycles_reported": (tf.get("cycle_quality") or {}).get("decoy_cycles_reported"),
        "feature_rows": wfs.get("feature_rows"),
        "feature_rows_written": wfs.get("feature_rows_written"),
        "gangs": gang.get("gangs"),
        "gang_members": gang.get("gang_members"),
        "super_nodes": gang.get("super_nodes"),
        "gang_pairwise_precision": gang.get("gang_pairwise_precision"),
        "gang_pairwise_recall": gang.get("gang_pairwise_recall"),
        "gang_ari": gang.get("gang_ari"),
        "gang_modularity": gang.get("gang_modularity"),
        "components_cut": gang.get("components_cut"),
        "media_only_gangs": gang.get("media_only_gangs"),
        "ks_baseline": ev.get("ks_baseline"),
        "ks_enriched": ev.get("ks_enriched"),
        "ks_uplift": ev.get("ks_uplift"),
        "ks_uplift_structured": ev.get("ks_uplift_structured"),
        "ks_uplift_shared_neighbours": ev.get("ks_uplift_shared_neighbours"),
        "ks_uplift_multimodal": ev.get("ks_uplift_multimodal"),
        "ks_ablation": ev.get("ablation"),
        "ks_uplift_oracle": ev.get("ks_uplift_oracle"),
        "ks_uplift_share_of_oracle": ev.get("ks_uplift_share_of_oracle"),
        "auc_baseline": ev.get("auc_baseline"),
        "auc_enriched": ev.get("auc_enriched"),
        "mlflow_run_id": ev.get("mlflow_run_id"),
        "registered_model": ev.get("registered_model"),
        "registered_model_version": ev.get("registered_model_version"),
        "quality_status": wfs.get("quality_status"),
        "published": wfs.get("published"),
        "quality_report": wfs.get("quality_report"),
        "store_backend": wfs.get("store_backend"),
        "graph_backend": gang.get("graph_backend"),
        "step_seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "details": {"simulate": sim_summary, **results},
    }


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:+.4f}" if pct else f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _thresholds(rec: dict) -> str:
    th = (rec["details"].get("detect_gangs") or {}).get("hub_thresholds") or {}
    return " ".join(f"{t}>{v['threshold']}" + ("*" if v["bound"] == "robust" else "") for t, v in sorted(th.items())) + \
        ("  (* robust fence below the cap)" if any(v["bound"] == "robust" for v in th.values()) else "")


def print_summary(rec: dict, stream=sys.stdout) -> None:
    ing = rec["details"].get("ingest", {}) or {}
    med = rec["details"].get("ingest_media", {}) or {}
    lines = [
        "",
        f"riskgraph run {rec['run_id']}  (run date {rec['run_date']}, window {rec['from_date']}..{rec['run_date']}, env {rec['env']})",
        "-" * 78,
        f"  ingest        rows in {_fmt(rec['rows_in'])}, quarantined {_fmt(rec['rows_quarantined'])}"
        + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(ing.get('reasons', {}).items())[:6])})" if ing.get("reasons") else ""),
        (f"  media         items in {_fmt(rec.get('media_in'))}, kept {_fmt(rec.get('media_kept'))}, quarantined "
         f"{_fmt(rec.get('media_quarantined'))}"
         + (f"  ({', '.join(f'{k}: {v}' for k, v in sorted(med.get('quarantined_by_reason', {}).items())[:6])})"
            if med.get("quarantined_by_reason") else "")
         + ("; embedded " + ", ".join(f"{m} {_fmt(n)}" for m, n in sorted((rec.get('media_embedded') or {}).items()))
            if rec.get("media_embedded") else "")),
        *([f"  media links   " + "; ".join(f"{m}: {_fmt(d['links'])} links (threshold {d['threshold']:.3f}), {_fmt(d['hub_items'])} hub items, "
                                           f"{_fmt(d['blacklist_hits'])} blacklist hits" for m, d in sorted(rec['media_links'].items()))]
          if rec.get("media_links") else []),
        *([f"  transfers     in {_fmt(rec['transfers_in'])}, quarantined {_fmt(rec['transfers_quarantined'])}; "
           f"{_fmt(rec.get('loans_traced'))} loans traced, {_fmt(rec.get('loans_diverted'))} diverted to flagged sectors, "
           f"{_fmt(rec.get('money_cycles'))} money cycles"]
          if rec.get("transfers_in") is not None else []),
        *([f"                vs planted truth: diversion recall {_fmt(rec['diversion_recall'])}, precision "
           f"{_fmt(rec.get('diversion_precision'))}; cycle recall {_fmt(rec.get('cycle_recall'))}, decoy cycles reported "
           f"{_fmt(rec.get('decoy_cycles_reported'))}"] if rec.get("diversion_recall") is not None else []),
        f"  gangs         {_fmt(rec['gangs'])} gangs, {_fmt(rec['gang_members'])} member applications, "
        f"{_fmt(rec['super_nodes'])} super-nodes capped  [{rec.get('graph_backend')}]",
        f"                {_fmt(rec.get('components_cut'))} components cut into communities, modularity {_fmt(rec.get('gang_modularity'))}; "
        f"hub thresholds {_thresholds(rec)}",
        (f"                vs planted truth: pairwise precision {_fmt(rec.get('gang_pairwise_precision'))}, "
         f"recall {_fmt(rec.get('gang_pairwise_recall'))}, ARI {_fmt(rec.get('gang_ari'))}"
         if rec.get("gang_ari") is not None else "                (no planted truth: no gang quality)"),
        *([f"                media-only planted gangs: pairwise precision {_fmt(rec['media_only_gangs'].get('precision'))}, "
           f"recall {_fmt(rec['media_only_gangs'].get('recall'))} ({rec['media_only_gangs'].get('true_gangs')} gangs; per gang: "
           f"mean recall {_fmt(rec['media_only_gangs'].get('gang_recall_macro'))}, "
           f"{_fmt(rec['media_only_gangs'].get('gangs_half_found'))} at least half in one found gang)"]
          if (rec.get("media_only_gangs") or {}).get("true_gangs") else []),
        f"                table: {rec['gang_table']}",
        f"  feature store version {_fmt(rec['feature_table_version'])}, {_fmt(rec['feature_rows_written'])} rows written, "
        f"{_fmt(rec['feature_rows'])} for the run date  [{rec.get('store_backend')}]",
        f"                table: {rec['feature_table']}",
        f"                quality gates {rec.get('quality_status') or '-'}: {rec.get('quality_report') or '-'}",
        f"  credit model  KS baseline {_fmt(rec['ks_baseline'])}  enriched {_fmt(rec['ks_enriched'])}  "
        f"uplift {_fmt(rec['ks_uplift'], pct=True)}   (AUC {_fmt(rec['auc_baseline'])} → {_fmt(rec['auc_enriched'])})",
        *([f"                ablation: " + " → ".join(f"{a['step']} {a['ks_mean']:.4f}" for a in rec["ks_ablation"] if a.get("ks_mean") is not None)
           + f"  (structured {_fmt(rec.get('ks_uplift_structured'), pct=True)}, shared neighbours "
             f"{_fmt(rec.get('ks_uplift_shared_neighbours'), pct=True)}, multimodal {_fmt(rec.get('ks_uplift_multimodal'), pct=True)})"]
          if rec.get("ks_ablation") else []),
        (f"                oracle (planted gang membership) uplift {_fmt(rec.get('ks_uplift_oracle'), pct=True)}: "
         f"ours captures {100 * rec['ks_uplift_share_of_oracle']:.0f}%" if rec.get("ks_uplift_share_of_oracle") is not None else
         "                (no planted truth: no oracle comparison)"),
        f"                MLflow run {rec['mlflow_run_id']}; registered {rec.get('registered_model') or '-'} "
        f"version {_fmt(rec.get('registered_model_version'))}",
        "  seconds       " + ", ".join(f"{k} {v}" for k, v in rec["step_seconds"].items()) + f"  (total {rec['total_seconds']})",
        f"  run record    {rec.get('run_record')}",
        "-" * 78,
    ]
    print("\n".join(lines), file=stream)
    summary_keys = ["run_date", "feature_table", "feature_table_version", "gang_table", "rows_in", "rows_quarantined",
                    "feature_rows", "gangs", "ks_baseline", "ks_enriched", "ks_uplift", "mlflow_run_id", "step_seconds"]
    print(json.dumps({k: rec.get(k) for k in summary_keys} | {k: v for k, v in rec.items() if k not in summary_keys and k != "details"},
                     default=str), file=stream)


def _features_cmd(args: argparse.Namespace) -> int:
    from riskgraph.config import load_config
    from riskgraph.schemas import feature_specs

    cfg = load_config(args.env)
    specs = feature_specs(cfg)
    if args.action == "doc":
        from riskgraph.schemas import render_catalog_markdown

        sys.stdout.write(render_catalog_markdown(cfg))
        return 0
    if args.action == "list":
        for s in specs:
            print(f"{s.name:40s} {s.dtype.simpleString():10s} {s.description}")
        return 0
    if not args.name:
        print("usage: riskgraph features describe NAME  (`riskgraph features list` shows the names)", file=sys.stderr)
        return 2
    match = [s for s in specs if s.name == args.name]
    if not match:
        print(f"unknown feature {args.name!r}; `riskgraph features list` shows all {len(specs)}", file=sys.stderr)
        return 2
    s = match[0]
    print(json.dumps({"name": s.name, "type": s.dtype.simpleString(), "description": s.description, "entity": s.entity,
                      "source_job": s.source_job, "as_of": s.as_of, "valid_range": s.valid_range()}, indent=2))
    return 0


def _similar_cmd(args: argparse.Namespace) -> int:
    """``riskgraph similar``: the analyst's report on one application (riskgraph/analyst.py)."""
    from riskgraph.analyst import AnalystError, similar_report
    from riskgraph.config import load_config
    from riskgraph.runtime import parse_overrides
    from riskgraph.session import get_spark

    cfg = load_config(args.env, args.conf, parse_overrides(args.overrides))
    spark = get_spark(cfg)
    try:
        paths = similar_report(spark, cfg, args.application_id, run_date=args.run_date, k=args.k, out_dir=args.out)
    except AnalystError as e:
        raise SystemExit(f"riskgraph similar: {e}") from None
    for path in paths.values():
        print(path)
    return 0


def _vacuum_cmd(args: argparse.Namespace) -> int:
    """``riskgraph vacuum``: Delta VACUUM semantics for every table, plus crash leftovers."""
    from riskgraph.config import load_config
    from riskgraph.maintenance import format_report, vacuum_all
    from riskgraph.runtime import parse_overrides

    cfg = load_config(args.env, args.conf, parse_overrides(args.overrides))
    hours = args.retention_hours if args.retention_hours is not None else cfg.store.vacuum_retention_hours
    rows = vacuum_all(cfg, retention_hours=hours, dry_run=args.dry_run)
    print(format_report(rows, dry_run=args.dry_run, retention_hours=hours))
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="riskgraph", description="Fraud gangs and a point-in-time feature store for credit risk.")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("simulate", help="write a simulated lending world (raw landing files + ground truth)", add_help=False)
    r = sub.add_parser("run", help="run every nightly step for a run date in one process and print a summary")
    add_common_args(r, need_run_date=False)
    r.add_argument("--simulate", action="store_true", help="first simulate the configured world, then run for its whole date range")
    r.add_argument("--steps", default=",".join(STEPS),
                   help="comma-separated subset of steps, in nightly order: " + ", ".join(s.replace("_", "-") for s in STEPS))
    for step in STEPS:
        s = sub.add_parser(step.replace("_", "-"), help=f"run the {step} job")
        add_common_args(s)
    f = sub.add_parser("features", help="the feature catalog")
    f.add_argument("action", choices=["list", "describe", "doc"])
    f.add_argument("name", nargs="?")
    f.add_argument("--env", default=None)
    from riskgraph.runtime import _date

    sm = sub.add_parser("similar", help="an analyst's view of one application: its nearest earlier photos, calls and "
                                        "texts, blacklist hits and gang (pictures + summary under reports/similar/)")
    sm.add_argument("application_id", help="the application to look at")
    sm.add_argument("--run-date", type=_date, default=None, help="graph/media_links snapshot to read (default: the latest)")
    sm.add_argument("--k", type=int, default=12, help="nearest earlier items shown per modality (1..100)")
    sm.add_argument("--out", default=None, help="output folder (default: <paths.root>/reports/similar/<APPLICATION_ID>/)")
    sm.add_argument("--env", default=None, help="config environment: conf/<env>.yaml (default $RISKGRAPH_ENV or local)")
    sm.add_argument("--conf", default=None, help="extra YAML file merged over the environment's config")
    sm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one setting")

    v = sub.add_parser("vacuum", help="free files no table version within the retention needs, and crash leftovers "
                                      "(staging folders, uncommitted files); prints what it freed")
    v.add_argument("--retention-hours", type=int, default=None,
                   help="keep what versions of the last N hours need (default store.vacuum_retention_hours, 168)")
    v.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    v.add_argument("--env", default=None, help="config environment: conf/<env>.yaml (default $RISKGRAPH_ENV or local)")
    v.add_argument("--conf", default=None, help="extra YAML file merged over the environment's config")
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one setting")

    if argv and argv[0] == "simulate":
        from riskgraph.jobs import simulate

        simulate.main(argv[1:])
        return 0
    args = p.parse_args(argv)
    if args.cmd == "features":
        return _features_cmd(args)
    if args.cmd == "similar":
        return _similar_cmd(args)
    if args.cmd == "vacuum":
        return _vacuum_cmd(args)
    if args.cmd == "run":
        steps = parse_steps(args.steps)
    else:
        steps = [args.cmd.replace("-", "_")]
        args.simulate = False
    rec = _run_steps(args, steps)
    if args.cmd == "run":
        print_summary(rec)
    else:
        print(json.dumps(rec["details"].get(steps[0], {}), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
