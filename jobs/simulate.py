"""Simulate a lending world: raw landing CSVs + ground truth under ``paths.root``.

    python jobs/simulate.py --env local --n-applications 1000000 --hub-noise 3
    python jobs/simulate.py --env test --set simulation.dirty_rate=0

Replaces ``{root}/raw`` and ``{root}/truth``. No Spark: the simulator is numpy + pyarrow.
"""
from __future__ import annotations

import argparse
import logging
import sys

from riskgraph.config import load_config
from riskgraph.runtime import parse_overrides, setup_logging
from riskgraph.simulator import simulate_world

log = logging.getLogger("riskgraph")

# named knob -> simulation setting it overrides
KNOBS = {
    "seed": "seed",
    "n-applications": "n_applications",
    "start-date": "start_date",
    "end-date": "end_date",
    "gang-share": "gang_share",
    "gang-size-min": "gang_size_min",
    "gang-size-max": "gang_size_max",
    "gang-size-alpha": "gang_size_alpha",
    "hub-noise": "hub_noise",
    "shared-dealer-share": "shared_dealer_share",
    "honest-bad-rate": "honest_bad_rate",
    "gang-bad-rate": "gang_bad_rate",
    "dirty-rate": "dirty_rate",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="riskgraph simulate", description=__doc__.split("\n")[0])
    p.add_argument("--env", default=None, help="config environment: conf/<env>.yaml (default $RISKGRAPH_ENV or local)")
    p.add_argument("--conf", default=None, help="extra YAML file merged over the environment's config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set simulation.referral_share=0.1")
    knobs = p.add_argument_group("simulation knobs (shortcuts for --set simulation.<name>=VALUE)")
    for flag, setting in KNOBS.items():
        knobs.add_argument(f"--{flag}", dest=setting, default=None, metavar="VALUE", help=f"simulation.{setting}")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """``--set`` overrides, then the named knobs (a knob wins over a ``--set`` of the same setting)."""
    out = parse_overrides(args.overrides)
    for setting in KNOBS.values():
        value = getattr(args, setting)
        if value is not None:
            out[f"simulation.{setting}"] = value
    return out


def format_summary(s: dict) -> str:
    rows = s["rows"]
    dirty = ", ".join(f"{t}.{k}={n}" for t, kinds in s["dirty_rows"].items() for k, n in kinds.items() if n)
    return "\n".join([
        f"simulated world (seed {s['seed']}, {s['start_date']}..{s['end_date']}, {s['days']} days) in {s['seconds']} s -> {s['root']}",
        f"  applications {s['n_applications']:,} ({rows['applications']:,} raw rows), applicants {rows['applicants']:,}, "
        f"outcomes known {s['outcomes_known']:,} ({rows['outcomes']:,} raw rows)",
        f"  gangs {s['n_gangs']:,} with {s['n_gang_apps']:,} applications",
        f"  bad rate: honest {s['bad_rate_honest']:.2%}, gang {s['bad_rate_gang']:.2%}",
        f"  dirty rows: {dirty or 'none'}",
    ])


def main(argv: list[str] | None = None) -> dict:
    setup_logging()
    args = build_parser().parse_args(argv)
    cfg = load_config(args.env, args.conf, overrides_from_args(args))
    sim = cfg.simulation
    log.info("simulating %s applications, %s..%s, seed %d", f"{sim.n_applications:,}", sim.start_date, sim.end_date, sim.seed)
    summary = simulate_world(sim, cfg.paths.root)
    print(format_summary(summary), file=sys.stdout, flush=True)
    return summary


if __name__ == "__main__":
    main()
