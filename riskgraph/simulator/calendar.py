"""The simulated period: its days, how busy each day and hour is, and day <-> date arithmetic.

All times are seconds since 1970 in UTC; a "day" is an index from ``start_date`` (0-based).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from riskgraph.config import Simulation
from riskgraph.simulator.reference import _DAY, HOUR_PROFILE, WEEKDAY_PROFILE


@dataclass(frozen=True)
class Calendar:
    """The period ``start_date``..``end_date`` and the share of applications per day and per UTC hour."""

    start: dt.date
    n_days: int
    epoch0: int  # seconds since 1970 of start_date 00:00 UTC
    end_s: int  # last second of end_date
    day_p: np.ndarray  # share of applications per day (weekday profile x a growing book x day-to-day noise)
    hour_p: np.ndarray  # share of applications per UTC hour

    @classmethod
    def build(cls, sim: Simulation, rng: np.random.Generator) -> "Calendar":
        """The calendar of ``sim``'s period; draws the day-to-day noise (``n_days`` lognormals) from ``rng``."""
        n_days = (sim.end_date - sim.start_date).days + 1
        epoch0 = (sim.start_date - dt.date(1970, 1, 1)).days * _DAY
        weekday = np.asarray(WEEKDAY_PROFILE)[(np.arange(n_days) + sim.start_date.weekday()) % 7]
        trend = 1.0 + 0.25 * np.arange(n_days) / max(n_days - 1, 1)  # a growing book
        day_w = weekday * trend * rng.lognormal(0.0, 0.08, n_days)
        hour_w = np.asarray(HOUR_PROFILE)
        return cls(sim.start_date, n_days, epoch0, epoch0 + n_days * _DAY - 1, day_w / day_w.sum(), hour_w / hour_w.sum())

    def sample_ts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` timestamps (seconds) following the day and hour profiles."""
        day = rng.choice(self.n_days, n, p=self.day_p)
        hour = rng.choice(24, n, p=self.hour_p)
        return self.epoch0 + day * _DAY + hour * 3600 + rng.integers(0, 3600, n)

    def day_of(self, ts: np.ndarray) -> np.ndarray:
        """Day index of each timestamp (seconds)."""
        return ((ts - self.epoch0) // _DAY).astype(np.int64)

    def date_str(self, day: int) -> str:
        """``YYYY-MM-DD`` of a day index."""
        return (self.start + dt.timedelta(days=int(day))).isoformat()


_Calendar = Calendar  # the name before the simulator became a package
