"""Fraud gangs: how many and how big, whose identities they use, when they apply, what they share.

A gang (``gang_share`` of applications; truncated-Pareto sizes) applies through identities it
recruited, mostly in its own city, a few of them used twice. It applies in a burst of waves and
shares, with some probability per member application, a pool of resources an intermediary
provides: a few devices, a card dealer's SIM cards, a few IPs, an office GPS spot, a referral
code and often a fake employer. Careful members use each shared resource far less, so a gang is
connected, but imperfectly. Card dealers serve more than one gang (``_share_dealers``).

Every function draws from the generator it is given, in the order ``world.generate_world`` calls it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from riskgraph.config import Simulation
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.reference import (
    _DAY,
    CITIES,
    CITY_LAT,
    CITY_LON,
    CITY_SD_M,
    GANG_CAREFUL_FACTOR,
    GANG_CAREFUL_P,
    GANG_FAKE_EMPLOYER_P,
    GANG_HOME_CITY_P,
    GANG_REPEAT_P,
)
from riskgraph.simulator.sampling import _offset_m, _p, _starts


def _gang_sizes(rng: np.random.Generator, sim: Simulation, total: int) -> np.ndarray:
    """Truncated Pareto(alpha) sizes in [gang_size_min, gang_size_max] summing to ``total``."""
    lo, hi, alpha = sim.gang_size_min, sim.gang_size_max, sim.gang_size_alpha
    if total < 2:
        return np.zeros(0, dtype=np.int64)
    if total < lo:
        return np.array([total])
    u = rng.random(total // lo + 1)
    sizes = np.floor(lo * (1.0 - u * (1.0 - (lo / (hi + 1.0)) ** alpha)) ** (-1.0 / alpha)).astype(np.int64)
    sizes = np.clip(sizes, lo, hi)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, total))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= cs[k] - total
    if sizes[-1] < lo and len(sizes) > 1:  # spread a too-small last gang over gangs with room
        rest, sizes = int(sizes[-1]), sizes[:-1]
        for _ in range(rest):
            room = np.flatnonzero(sizes < hi)
            sizes[room[rng.integers(0, len(room))] if len(room) else rng.integers(0, len(sizes))] += 1
    return sizes


@dataclass(frozen=True)
class GangStructure:
    """Gangs, their applications and their identities (gang applications laid out gang by gang).

    Arrays over gang applications (``n_apps``): ``app_gang``, ``is_rep``, ``ident``. Over gangs:
    ``sizes``, ``first``, ``n_ident``. Over gang identities (``n_people``): ``ident_gang``.
    """

    sizes: np.ndarray  # applications per gang
    first: np.ndarray  # offset of each gang's first application
    app_gang: np.ndarray  # gang of each gang application
    is_rep: np.ndarray  # the application re-uses an identity the gang already applied with
    n_ident: np.ndarray  # identities per gang
    ident: np.ndarray  # identity of each gang application (0-based among all gang identities)
    ident_gang: np.ndarray  # gang of each gang identity

    @property
    def n_gangs(self) -> int:
        return len(self.sizes)

    @property
    def n_apps(self) -> int:
        return int(self.sizes.sum())

    @property
    def n_people(self) -> int:
        return int(self.n_ident.sum())


def draw_gang_structure(rng: np.random.Generator, sim: Simulation, n_applications: int) -> GangStructure:
    """Gang sizes (``round(gang_share * n_applications)`` applications in all) and the identity
    behind each gang application: a few applications (``GANG_REPEAT_P``, at most a third of a
    gang) re-use an identity of their gang."""
    sizes = _gang_sizes(rng, sim, int(round(sim.gang_share * n_applications)))
    n_gangs, n_gang_apps = len(sizes), int(sizes.sum())
    g_app_gang = np.repeat(np.arange(n_gangs), sizes)
    g_first = _starts(sizes)
    g_pos = np.arange(n_gang_apps) - g_first[g_app_gang]  # position of the application in its gang
    n_rep = np.minimum(rng.binomial(sizes, GANG_REPEAT_P), sizes // 3)
    n_ident = sizes - n_rep
    i_first = _starts(n_ident)
    is_rep = g_pos >= n_ident[g_app_gang]
    ident_in_gang = np.where(is_rep, np.floor(rng.random(n_gang_apps) * n_ident[g_app_gang]).astype(np.int64), g_pos)
    g_ident = i_first[g_app_gang] + ident_in_gang  # gang identity index (0-based among gang identities)
    return GangStructure(sizes=sizes, first=g_first, app_gang=g_app_gang, is_rep=is_rep, n_ident=n_ident,
                         ident=g_ident, ident_gang=np.repeat(np.arange(n_gangs), n_ident))


def draw_gang_cities(rng: np.random.Generator, gs: GangStructure, city: np.ndarray, honest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each gang's home city, and the persons' cities with most gang identities (``GANG_HOME_CITY_P``)
    moved to their gang's city. ``city``/``honest`` are over all persons (gang identities last).
    Returns ``(gang_city, city)``; ``city`` is a new array."""
    gang_city = rng.choice(len(CITIES), gs.n_gangs, p=_p([c[4] for c in CITIES]))
    g_local = rng.random(gs.n_people) < GANG_HOME_CITY_P
    city = city.copy()
    city[~honest] = np.where(g_local, gang_city[gs.ident_gang], city[~honest])
    return gang_city, city


@dataclass(frozen=True)
class GangTiming:
    start_day: np.ndarray  # day each gang's burst starts (per gang)
    ts: np.ndarray  # time of each gang application (seconds)


def draw_gang_timing(rng: np.random.Generator, sim: Simulation, cal: Calendar, gs: GangStructure) -> GangTiming:
    """A burst of 1-5 waves within ``gang_burst_days``: each wave starts in office hours on a day
    of the burst, each application follows its wave's start by an exponential delay (at most 5 h)."""
    n_gangs, n_gang_apps = gs.n_gangs, gs.n_apps
    span = min(sim.gang_burst_days, cal.n_days)
    g_start_day = rng.integers(0, cal.n_days - span + 1, n_gangs)
    n_waves = 1 + np.minimum(rng.poisson(1.5, n_gangs), 4)
    w_first = _starts(n_waves)
    w_gang = np.repeat(np.arange(n_gangs), n_waves)
    w_start = (cal.epoch0 + (g_start_day[w_gang] + rng.integers(0, span, len(w_gang))) * _DAY
               + rng.integers(9 * 3600, 21 * 3600, len(w_gang)))
    g_wave = w_first[gs.app_gang] + np.floor(rng.random(n_gang_apps) * n_waves[gs.app_gang]).astype(np.int64)
    g_ts = np.minimum(w_start[g_wave] + np.minimum(rng.exponential(1.2 * 3600, n_gang_apps), 5 * 3600).astype(np.int64), cal.end_s)
    return GangTiming(start_day=g_start_day, ts=g_ts)


@dataclass(frozen=True)
class GangResources:
    """What an intermediary provides each gang, and how eagerly its members use it.

    Pools (per gang, number of items): ``dev_pool`` devices ~size/5, ``sim_pool`` a card
    dealer's SIMs ~size/3, ``ip_pool`` 1-3 IPs. ``use[resource]``: per-gang probability that a
    member application uses the shared resource (times ``careful``, per gang application).
    """

    app_gang: np.ndarray  # gang of each gang application
    dev_pool: np.ndarray
    sim_pool: np.ndarray
    ip_pool: np.ndarray
    use: dict[str, np.ndarray]  # device, phone, ip, gps, employer, referrer
    fake_employer: np.ndarray  # the gang declares a fake small employer
    office_lat: np.ndarray
    office_lon: np.ndarray
    careful: np.ndarray  # per gang application: 1, or GANG_CAREFUL_FACTOR for loosely coached members

    def pick(self, rng: np.random.Generator, pool: np.ndarray) -> np.ndarray:
        """Each gang application's item in its gang's ``pool`` (global index over all gangs' items)."""
        first = _starts(pool)
        return first[self.app_gang] + np.floor(rng.random(len(self.app_gang)) * pool[self.app_gang]).astype(np.int64)

    def uses(self, rng: np.random.Generator, resource: str) -> np.ndarray:
        """Whether each gang application uses its gang's shared ``resource``."""
        return rng.random(len(self.app_gang)) < self.use[resource][self.app_gang] * self.careful


def draw_gang_resources(rng: np.random.Generator, gs: GangStructure, gang_city: np.ndarray) -> GangResources:
    """Resource pools, usage probabilities, fake employers, an office near the gang's city centre
    and which members are careful (``GANG_CAREFUL_P`` of identities)."""
    n_gangs, sizes = gs.n_gangs, gs.sizes
    dev_pool = np.maximum(1, np.rint(sizes / 5)).astype(np.int64)
    sim_pool = np.maximum(1, np.rint(sizes / 3)).astype(np.int64)
    ip_pool = rng.integers(1, 4, n_gangs)
    use = {r: rng.uniform(0.5, 0.9, n_gangs) for r in ("device", "phone", "ip", "gps", "employer")}
    use["referrer"] = rng.uniform(0.7, 0.95, n_gangs)  # the intermediary coaches most members
    fake_employer = rng.random(n_gangs) < GANG_FAKE_EMPLOYER_P
    office_dlat, office_dlon = _offset_m(rng, CITY_LAT[gang_city], CITY_SD_M[gang_city], n_gangs)
    office_lat, office_lon = CITY_LAT[gang_city] + office_dlat, CITY_LON[gang_city] + office_dlon
    careful = np.where(rng.random(gs.n_people) < GANG_CAREFUL_P, GANG_CAREFUL_FACTOR, 1.0)[gs.ident]
    return GangResources(app_gang=gs.app_gang, dev_pool=dev_pool, sim_pool=sim_pool, ip_pool=ip_pool, use=use,
                         fake_employer=fake_employer, office_lat=office_lat, office_lon=office_lon, careful=careful)


def _share_dealers(sim: Simulation, a_phone: np.ndarray, gi: np.ndarray, dealer_sims: np.ndarray, g_first: np.ndarray,
                   sizes: np.ndarray, sim_pool: np.ndarray, g_start_day: np.ndarray) -> None:
    """A card dealer serves more than one gang: each gang, with probability
    ``shared_dealer_share``, gets one or two SIMs from the pool of the gang whose burst starts
    nearest in time, so separate gangs meet in one connected component (community detection
    has to split them again). In place on ``a_phone``. Its own generator, seeded from the
    world's seed: the rest of the world is the same whatever this share is. (It predates
    ``layer_rng`` and keeps its ``[seed, 1]`` seeding so existing worlds stay byte-identical.)"""
    n_gangs = len(sizes)
    if sim.shared_dealer_share <= 0 or n_gangs < 2:
        return
    brng = np.random.default_rng([sim.seed, 1])
    bridging = np.flatnonzero(brng.random(n_gangs) < sim.shared_dealer_share)
    order = np.argsort(g_start_day, kind="stable")
    rank = np.empty(n_gangs, dtype=np.int64)
    rank[order] = np.arange(n_gangs)
    step = np.where(brng.random(len(bridging)) < 0.5, -1, 1)  # the gang just before or just after in time
    partner = order[np.clip(rank[bridging] + step, 0, n_gangs - 1)]
    partner = np.where(partner == bridging, order[np.clip(rank[bridging] - step, 0, n_gangs - 1)], partner)
    sim_first = _starts(sim_pool)
    for g, p in zip(bridging.tolist(), partner.tolist()):
        k = min(int(sizes[g]), 1 + int(brng.integers(0, 2)))
        members = g_first[g] + brng.choice(int(sizes[g]), size=k, replace=False)
        a_phone[gi[members]] = dealer_sims[sim_first[p] + brng.integers(0, sim_pool[p], k)]
