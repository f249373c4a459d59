"""Dirty rows: which raw rows are planted defective, and in which landing order rows arrive.

Defects exercise quarantine. They are taken from honest applications only (so the planted
gangs stay intact) and recorded in ``truth/dirty_rows.parquet``; ``dirty_rate`` of a table's
rows get each kind. An application whose raw row is defective (any kind but ``duplicate_id``,
whose original stays clean and whose copy lands 0-3 days later) was never booked, so no
outcome is written for it: the only orphan outcomes are the planted ``orphan`` rows.

The plans draw from the seed's main stream after the world (applications, outcomes,
applicants, in that order), like the rest of the core.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from riskgraph.config import Simulation
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.reference import _DAY
from riskgraph.simulator.world import World

# Defect kinds per raw table, in the order they are planted.
DEFECTS = {
    "applications": ("null_key", "bad_gps", "future_ts", "duplicate_id", "bad_type", "bad_value", "bad_timestamp"),
    "applicants": ("null_key",),
    "outcomes": ("bad_value", "orphan"),
}


def _n_dirty(rate: float, rows: int) -> int:
    """Rows of each defect kind: ``rate`` of ``rows``, at least one in a table of 100+ rows."""
    n = int(round(rate * rows))
    return max(n, 1) if rate > 0 and rows >= 100 else n


@dataclass
class _Rows:
    """Raw rows of one table in landing order: what each row shows and on which day it lands."""
    src: np.ndarray  # application / person index the row is made from (-1: orphan)
    land: np.ndarray  # landing day (index from start_date)
    defect: np.ndarray  # 0 clean, else 1 + index into DEFECTS[table]
    variant: np.ndarray  # random int choosing how a defect looks
    ts: np.ndarray | None = None  # outcomes only: known_ts (orphans have no application to read it from)


def _take_kinds(rng: np.random.Generator, pool: np.ndarray, wants: dict[str, tuple[int, np.ndarray | None]]) -> dict[str, np.ndarray]:
    """Disjoint random picks from ``pool`` per kind: {kind: (count, eligible mask over pool or None)}."""
    order = rng.permutation(len(pool))
    taken = np.zeros(len(pool), dtype=bool)
    out = {}
    for kind, (k, eligible) in wants.items():
        ok = ~taken[order] if eligible is None else (~taken[order] & eligible[order])
        chosen = order[np.flatnonzero(ok)[:k]]
        taken[chosen] = True
        out[kind] = pool[chosen]
    return out


def _code(table: str, kind: str) -> int:
    """The ``_Rows.defect`` code of a defect kind."""
    return 1 + DEFECTS[table].index(kind)


def _plan_applications(w: World, sim: Simulation, rng: np.random.Generator) -> _Rows:
    """Raw application rows: one per application on its day, plus a copy of each ``duplicate_id``
    pick landing 0-3 days later (half of them with another amount); ``dirty_rate`` of honest
    applications per kind, disjoint (``bad_gps`` only where a fix was sent)."""
    n = len(w.ts)
    k = _n_dirty(sim.dirty_rate, n)
    honest = np.flatnonzero(w.gang < 0)
    wants = {kind: (k, None) for kind in DEFECTS["applications"]}
    wants["bad_gps"] = (k, ~np.isnan(w.lat[honest]))  # a bad fix needs a fix
    picks = _take_kinds(rng, honest, wants)
    defect = np.zeros(n, dtype=np.int64)
    for kind, rows in picks.items():
        if kind != "duplicate_id":
            defect[rows] = _code("applications", kind)
    dup = picks["duplicate_id"]
    dup_variant = rng.integers(0, 1 << 30, len(dup))
    src = np.concatenate([np.arange(n), dup])
    land = np.concatenate([w.cal.day_of(w.ts), np.minimum(w.cal.day_of(w.ts[dup]) + (dup_variant >> 1) % 4, w.cal.n_days - 1)])
    defect = np.concatenate([defect, np.full(len(dup), _code("applications", "duplicate_id"))])
    variant = rng.integers(0, 1 << 30, len(src))
    variant[n:] = dup_variant
    # within a day: by application time; a copy landing later arrives at a random time that day
    key = w.ts[src].copy()
    later = land[n:] > w.cal.day_of(w.ts[dup])
    key[n:][later] = w.cal.epoch0 + land[n:][later] * _DAY + rng.integers(0, _DAY, int(later.sum()))
    order = np.lexsort((np.arange(len(src)), key, land))
    return _Rows(src[order], land[order], defect[order], variant[order])


def _plan_outcomes(w: World, sim: Simulation, rng: np.random.Generator, app_rows: _Rows) -> _Rows:
    """Raw outcome rows: every booked application's outcome known by ``end_date``, on the day it is
    known, ``bad_value`` labels on honest ones, plus ``orphan`` outcomes of no application."""
    booked = np.ones(len(w.ts), dtype=bool)  # a defective application row was never booked
    base = app_rows.defect != _code("applications", "duplicate_id")
    booked[app_rows.src[base & (app_rows.defect > 0)]] = False
    written = np.flatnonzero((w.known_ts <= w.cal.end_s) & booked)
    k = _n_dirty(sim.dirty_rate, len(written))
    picks = _take_kinds(rng, written, {"bad_value": (k, w.gang[written] < 0)})
    defect = np.zeros(len(w.ts), dtype=np.int64)
    defect[picks["bad_value"]] = _code("outcomes", "bad_value")
    n_orphan = k
    orphan_ts = np.maximum(w.cal.sample_ts(rng, n_orphan), w.cal.epoch0 + 10 * _DAY)
    orphan_ts = np.minimum(orphan_ts, w.cal.end_s)
    src = np.concatenate([written, np.full(n_orphan, -1)])
    ts = np.concatenate([w.known_ts[written], orphan_ts])
    land = w.cal.day_of(ts)
    codes = np.concatenate([defect[written], np.full(n_orphan, _code("outcomes", "orphan"))])
    variant = rng.integers(0, 1 << 30, len(src))
    variant[len(written):] = np.arange(n_orphan)  # orphan number
    order = np.lexsort((np.arange(len(src)), ts, land))
    return _Rows(src[order], land[order], codes[order], variant[order], ts[order])


def _plan_applicants(w: World, sim: Simulation, rng: np.random.Generator) -> _Rows:
    """Raw applicant rows: one per person, in applicant-id order, landing with their first
    application; ``null_key`` ids on honest ones."""
    n = len(w.person_rank)
    order = np.argsort(w.person_rank)  # applicant ids follow the first application
    k = _n_dirty(sim.dirty_rate, n)
    picks = _take_kinds(rng, np.flatnonzero(w.person_honest), {"null_key": (k, None)})
    defect = np.zeros(n, dtype=np.int64)
    defect[picks["null_key"]] = _code("applicants", "null_key")
    return _Rows(order, w.person_first_day[order], defect[order], np.zeros(n, dtype=np.int64))


def _dirty_records(table: str, rows: _Rows, keys: Callable[[np.ndarray], list], cal: Calendar) -> list[tuple]:
    """(source, dt, key, defect) for every defective row of a table."""
    idx = np.flatnonzero(rows.defect > 0)
    out = []
    for i, key in zip(idx, keys(idx)):
        kind = DEFECTS[table][rows.defect[i] - 1]
        out.append((table, cal.date_str(rows.land[i]), None if kind == "null_key" else key, kind))
    return out


@dataclass(frozen=True)
class LandingPlan:
    """The raw rows of every table, in landing order."""

    applications: _Rows
    outcomes: _Rows
    applicants: _Rows


def plan_landing(w: World, sim: Simulation, rng: np.random.Generator) -> LandingPlan:
    """Plan every table's raw rows and defects, drawing from ``rng`` (the main stream, after the
    world) in the fixed order applications, outcomes, applicants."""
    app_rows = _plan_applications(w, sim, rng)
    out_rows = _plan_outcomes(w, sim, rng, app_rows)
    person_rows = _plan_applicants(w, sim, rng)
    return LandingPlan(applications=app_rows, outcomes=out_rows, applicants=person_rows)


def dirty_records(w: World, plan: LandingPlan) -> list[tuple]:
    """(source, dt, key, defect) of every planted defect, sorted by source, dt, defect, key.

    ``key`` is the application id the row shows (orphans: the id no application has), None for
    ``null_key`` rows and for applicants."""
    app_rows, person_rows, out_rows = plan.applications, plan.applicants, plan.outcomes
    app_key = lambda idx: [f"A{s + 1:08d}" for s in app_rows.src[idx]]  # noqa: E731
    out_key = lambda idx: [f"A{(s + 1) if s >= 0 else len(w.ts) + 1 + v:08d}" for s, v in zip(out_rows.src[idx], out_rows.variant[idx])]  # noqa: E731
    dirty = (_dirty_records("applications", app_rows, app_key, w.cal)
             + _dirty_records("applicants", person_rows, lambda idx: [None] * len(idx), w.cal)
             + _dirty_records("outcomes", out_rows, out_key, w.cal))
    dirty.sort(key=lambda r: (r[0], r[1], r[3], r[2] or ""))
    return dirty
