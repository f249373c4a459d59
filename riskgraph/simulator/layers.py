"""Extra layers: how the world grows (media, transfers, ...) without changing the worlds it already made.

An extra layer is a callable ``layer(ctx: LayerContext) -> dict``. ``simulate_world`` calls it
after the base world is fully written (raw CSVs and truth), with a read-only view of that
world; the layer writes its own files under ``ctx.root`` and returns a summary, which lands
in ``simulate_world``'s summary under the layer's name (its ``name`` attribute, else its
``__name__``).

A layer draws only from ``layer_rng(ctx.sim.seed, name)``: its own stream, independent of the
main stream the core layers share and of every other layer's. So adding, removing or changing
a layer leaves every other file byte-identical, and two runs with the same seed write the same
bytes.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from riskgraph.config import Simulation
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.defects import DEFECTS, LandingPlan, _code
from riskgraph.simulator.world import World


def layer_rng(seed: int, layer: str) -> np.random.Generator:
    """The generator layer ``layer`` draws from in the world of ``seed``.

    ``SeedSequence(seed, spawn_key=(crc32(layer),))``: stable across processes and Python
    versions (CRC-32 of the UTF-8 name, never Python's salted ``hash``), distinct from the main
    stream ``default_rng(seed)`` (whose spawn key is empty) and, unless two names' CRC-32
    collide, from every other layer's. The layer name is part of the world's definition: renaming
    a layer changes what it draws.
    """
    if not layer:
        raise ValueError("a layer needs a non-empty name to seed its generator")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(layer.encode("utf-8")),)))


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class ApplicationLanding:
    """How each application's raw row landed (arrays over applications, index = id number - 1).

    ``day``: landing day (index from ``start_date``) of the application's row, i.e. the day it
    was made. ``defect``: 0 if that row is clean, else 1 + index into
    ``DEFECTS["applications"]`` (never ``duplicate_id``: a duplicated application's own row is
    clean). ``duplicated``: a ``duplicate_id`` copy of the row landed too. ``outcome_day``: the
    day its outcome row landed, -1 when none was written (not known by ``end_date``, or never
    booked because its row was defective).
    """

    day: np.ndarray
    defect: np.ndarray
    duplicated: np.ndarray
    outcome_day: np.ndarray

    @property
    def booked(self) -> np.ndarray:
        """The application's row was clean, so the lender booked it (a duplicate copy does not matter)."""
        return self.defect == 0

    def defect_kind(self, i: int) -> str | None:
        """The defect of application ``i``'s row, None when clean."""
        d = int(self.defect[i])
        return DEFECTS["applications"][d - 1] if d else None

    @classmethod
    def from_plan(cls, w: World, plan: LandingPlan) -> "ApplicationLanding":
        n = w.n_applications
        rows = plan.applications
        dup_code = _code("applications", "duplicate_id")
        own = rows.defect != dup_code  # each application's own row (exactly one each)
        day = np.empty(n, dtype=np.int64)
        day[rows.src[own]] = rows.land[own]
        defect = np.zeros(n, dtype=np.int64)
        defect[rows.src[own]] = rows.defect[own]
        duplicated = np.zeros(n, dtype=bool)
        duplicated[rows.src[~own]] = True
        outcome_day = np.full(n, -1, dtype=np.int64)
        out = plan.outcomes
        written = out.src >= 0  # orphans belong to no application
        outcome_day[out.src[written]] = out.land[written]
        return cls(day=_read_only(day), defect=_read_only(defect), duplicated=_read_only(duplicated),
                   outcome_day=_read_only(outcome_day))


@dataclass(frozen=True)
class LayerContext:
    """What an extra layer sees: the settings, where the world lives, the world itself (read-only
    arrays), its calendar, and how each application landed."""

    sim: Simulation
    root: Path
    world: World
    calendar: Calendar
    applications: ApplicationLanding


Layer = Callable[[LayerContext], dict]


def layer_name(layer: Layer) -> str:
    """A layer's name: its ``name`` attribute, else its ``__name__``."""
    name = getattr(layer, "name", None) or getattr(layer, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise ValueError(f"layer {layer!r} needs a name: give it a `name` attribute or define it with `def`")
    return name


def freeze_world(w: World) -> World:
    """``w`` with read-only numpy views (the arrays are shared, not copied): layers can read, not edit."""
    changes = {f: _read_only(getattr(w, f)) for f in w.__dataclass_fields__ if isinstance(getattr(w, f), np.ndarray)}
    cal = w.cal
    cal = Calendar(cal.start, cal.n_days, cal.epoch0, cal.end_s, _read_only(cal.day_p), _read_only(cal.hour_p))
    return World(**{**{f: getattr(w, f) for f in w.__dataclass_fields__}, **changes, "cal": cal})
