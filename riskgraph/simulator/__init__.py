"""A simulated lending world with planted fraud gangs, written as raw landing CSVs + ground truth.

No Spark: numpy + pyarrow, vectorised. The world is generated as numeric arrays (one row per
application / person / device ...) and only turned into text block by block while the
landing files are written, so 1M applications need a few hundred MB, not gigabytes.

What lands (the contract ``features.validation`` / ingest reads)::

    {root}/raw/{applications,applicants,outcomes}/dt=YYYY-MM-DD/part-00000.csv
    {root}/truth/gang_membership.parquet   application_id, gang_id, is_bad, outcome
    {root}/truth/dirty_rows.parquet        source, dt, key, defect
    {root}/truth/relations.parquet         application_id, applicant_id, household_id, kin, employer_id, referral_group

* Every date from ``start_date`` to ``end_date`` gets a file for every table (header only when
  nothing landed that day), so a nightly run never finds a missing drop.
* Columns are exactly the raw schemas' names, all text, empty for missing; only fields holding
  a comma (e.g. ``"Huaxin Logistics Co., Ltd."``) are quoted. No value contains a double
  quote or a backslash, so Spark's default CSV options read every file as intended.
* Timestamps are ISO-8601 UTC; the whole world runs on UTC (the daily profile is in UTC hours).
* Same ``seed`` -> byte-identical files; nothing depends on the wall clock or on hash order.

The world, layer by layer (one module each)
-------------------------------------------
``reference``   reference lists and behaviour knobs (cities, provinces, names, employers, profiles).
``calendar``    the period, and how busy each day and UTC hour is.
``gangs``       gang sizes, identities, bursts of waves, resource pools, card dealers.
``people``      applicants: places, names, ages, households, incomes, latent risk, personal data.
``attributes``  what each application shows: device, phone, IP, GPS, employer, referrer, product, amount.
``outcomes``    the risk model: outcome and when it is known.
``world``       the ``World`` dataclass and ``generate_world``, which calls the layers in order.
``defects``     which raw rows are planted dirty, and the landing order of every table's rows.
``landing``     writing the raw CSVs and the truth Parquet files.
``layers``      extra layers: ``layer_rng``, ``LayerContext``.

Honest applicants mostly apply once (some 2-3 times). Honest people *do* share things, so a
naive graph glues strangers: households (home IP, home GPS spot, sometimes a device), carrier
NAT IPs (hubs), the default device id (hub), Zipf-sized employers (hubs), friends' referral
codes, dense-city GPS cells. Gangs (``gang_share`` of applications; truncated-Pareto sizes)
apply in a burst of waves and share, each with some probability per member application, an
intermediary's referral code, a few devices, a card dealer's SIM cards, a few IPs, an office
GPS spot and often a fake employer - connected, but imperfectly. Card dealers serve several
gangs (``shared_dealer_share``), so a few SIMs bridge gangs active at the same time into one
connected component: a component is not a gang.

Labels: honest outcomes come from a logistic model of the credit features plus an unobserved
person-level risk, so credit features carry real but partial signal; gang applications are
bad at ``gang_bad_rate`` (varying by gang) with credit features only mildly different, so the
network adds information the credit features lack.

Dirty rows (to exercise quarantine) are taken from honest applications only and recorded in
``truth/dirty_rows.parquet``. An application whose raw row is defective (any kind but
``duplicate_id``, whose original stays clean) was never booked, so no outcome is written for
it - the only orphan outcomes are the planted ``orphan`` rows.

Randomness: one main stream for the core, one stream per extra layer
--------------------------------------------------------------------
The core layers (calendar, gangs, people, attributes, outcomes, then the dirty-row plans)
share the seed's main stream, ``numpy.random.default_rng(seed)``, and draw from it in one
fixed order (``world.generate_world``, then ``defects.plan_landing``); the generator is passed
explicitly, never global. That order is what keeps today's worlds byte-identical - every
benchmark so far was measured on them - so it must not change, and nothing new may draw from
it. (The card-dealer bridging already draws from its own ``default_rng([seed, 1])``.)

Every layer added from now on (media, transfers, ...) MUST draw from its own sub-seeded
generator, ``layer_rng(seed, name)`` (``SeedSequence(seed, spawn_key=(crc32(name),))``), and
run as an extra layer: ``simulate_world(sim, root, layers=[...])`` writes the base world first,
then calls each layer with a read-only ``LayerContext`` (settings, root, the ``World``, its
calendar, each application's landing day and whether its raw row was dirty) and merges the
summary it returns under its name. Adding a layer therefore leaves every existing file
byte-identical (``tests/test_simulator_layers.py`` holds the world's golden hashes).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskgraph.config import Simulation
from riskgraph.simulator.calendar import Calendar, _Calendar
from riskgraph.simulator.defects import DEFECTS, LandingPlan, dirty_records, plan_landing
from riskgraph.simulator.landing import clear_landing, write_raw, write_truth
from riskgraph.simulator.layers import (
    ApplicationLanding,
    Layer,
    LayerContext,
    freeze_world,
    layer_name,
    layer_rng,
)
from riskgraph.simulator.media import simulate_media
from riskgraph.simulator.reference import CHANNELS, DEFAULT_DEVICE, GOOD, PRODUCTS
from riskgraph.simulator.stealth import make_stealth_gangs
from riskgraph.simulator.transfers import simulate_transfers
from riskgraph.simulator.world import World, _generate, _World, generate_world

__all__ = [
    "CHANNELS", "DEFAULT_DEVICE", "DEFECTS", "PRODUCTS",
    "ApplicationLanding", "Calendar", "Layer", "LayerContext", "LandingPlan", "World",
    "SUMMARY_KEYS", "generate_world", "layer_rng", "plan_landing", "simulate_world",
    "_Calendar", "_World", "_generate",
]

log = logging.getLogger(__name__)

# Keys of the base summary; a layer may not take one of these names.
SUMMARY_KEYS = ("root", "seed", "start_date", "end_date", "days", "n_applications", "rows", "n_applicants",
                "n_gangs", "n_gang_apps", "bad_rate_honest", "bad_rate_gang", "outcomes_known", "dirty_rows", "seconds")


def simulate_world(sim: Simulation, root: str | Path, *, layers: Sequence[Layer] = ()) -> dict:
    """Simulate a lending world and write raw landing CSVs + ground truth under ``root``.

    Replaces ``{root}/raw`` and ``{root}/truth``. Returns a summary: rows written per table,
    applicants, gangs, gang applications, planted bad rates (honest / gang), dirty rows per
    table and kind, and the seconds the base world took.

    ``layers``: extra layers (see ``riskgraph.simulator.layers``), run in order once the base
    world is fully written; each returns a dict, stored in the summary under the layer's name.
    They cannot change the base world: it is written before they run, they get read-only
    arrays, and they draw from their own ``layer_rng(sim.seed, name)``.
    """
    names = [layer_name(layer) for layer in layers]
    clash = sorted({x for x in names if names.count(x) > 1} | (set(names) & set(SUMMARY_KEYS)))
    if clash:
        raise ValueError(f"layer names must be unique and not a summary key ({', '.join(SUMMARY_KEYS)}): {clash}")

    if sim.transfers.enabled:
        layers = (simulate_transfers, *layers)
        names = ["transfers", *names]
    if sim.media.enabled:  # the media layer runs first: later layers may read its files
        layers = (simulate_media, *layers)
        names = ["media", *names]
    t0 = time.perf_counter()
    rng = np.random.default_rng(sim.seed)
    w = generate_world(sim, rng)
    w, stealth = make_stealth_gangs(w, sim)  # its own generator; none unless simulation.media asks
    plan = plan_landing(w, sim, rng)
    log.info("world generated in %.1f s", time.perf_counter() - t0)

    base = Path(root)
    clear_landing(base)
    log.info("writing %d days of raw files to %s", w.cal.n_days, base / "raw")
    counts = write_raw(base, w, plan)
    dirty = dirty_records(w, plan)
    write_truth(base, w, dirty)
    if sim.media.enabled:
        ids = [f"G{g + 1:05d}" for g in stealth.tolist()]
        pq.write_table(pa.table({"gang_id": pa.array(ids, pa.string())}), base / "truth" / "stealth_gangs.parquet")

    n = w.n_applications
    is_g = w.is_gang
    bad = w.outcome != GOOD
    dirty_counts = {t: {k: sum(1 for r in dirty if r[0] == t and r[3] == k) for k in kinds} for t, kinds in DEFECTS.items()}
    summary = {
        "root": str(base),
        "seed": sim.seed,
        "start_date": sim.start_date.isoformat(),
        "end_date": sim.end_date.isoformat(),
        "days": w.cal.n_days,
        "n_applications": n,
        "rows": counts,
        "n_applicants": w.n_applicants,
        "n_gangs": w.n_gangs,
        "n_gang_apps": int(is_g.sum()),
        "bad_rate_honest": round(float(bad[~is_g].mean()) if (~is_g).any() else 0.0, 4),
        "bad_rate_gang": round(float(bad[is_g].mean()) if is_g.any() else 0.0, 4),
        "outcomes_known": int((plan.outcomes.src >= 0).sum()),
        "dirty_rows": dirty_counts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if sim.media.enabled:
        summary["n_stealth_gangs"] = int(len(stealth))
    log.info("simulated world written in %.1f s", summary["seconds"])

    if layers:
        frozen = freeze_world(w)
        ctx = LayerContext(sim=sim, root=base, world=frozen, calendar=frozen.cal,
                           applications=ApplicationLanding.from_plan(w, plan))
        for name, layer in zip(names, layers):
            t1 = time.perf_counter()
            out = layer(ctx)
            if not isinstance(out, Mapping):
                raise TypeError(f"layer {name!r} returned {type(out).__name__}, not a summary dict")
            summary[name] = dict(out)
            log.info("layer %s written in %.1f s", name, time.perf_counter() - t1)
    return summary
