"""The numeric world, and the one place that calls the core layers in their fixed draw order.

``generate_world`` draws the whole world from one generator (the seed's main stream). The
layers (calendar, gangs, people, attributes, outcomes) each draw from it in turn, and they
interleave: gangs are sized before people are placed, a gang's home city is drawn between
people's places and their names, gang resources between honest and gang devices. That
order *is* the world: moving a single draw changes every byte written after it, so new
randomness never goes into this stream (see ``riskgraph.simulator.layers.layer_rng``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskgraph.config import Simulation
from riskgraph.simulator.attributes import (
    draw_credit,
    draw_device_ids,
    draw_employer_names,
    draw_employers,
    draw_gang_devices,
    draw_gps,
    draw_honest_default_device,
    draw_honest_devices,
    draw_ips,
    draw_phones,
    draw_referrers,
)
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.formatting import _fmt_id
from riskgraph.simulator.gangs import draw_gang_cities, draw_gang_resources, draw_gang_structure, draw_gang_timing
from riskgraph.simulator.outcomes import draw_outcomes
from riskgraph.simulator.people import draw_honest_timing, draw_people, draw_person_text, draw_places, draw_repeat_counts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """The generated world, numeric, before any of it is written.

    Applications are in time order; application ``i`` has id ``A{i+1:08d}``. Persons are indexed
    honest applicants first, then gang identities; applicant ids follow ``person_rank``.
    Indices into the lookup tables use -1 for "none", which is also the tables' last entry
    (``""`` / the default device id), so ``table[index]`` works for every row.
    """

    cal: Calendar
    # applications, in time order (application i has id A{i+1:08d})
    person: np.ndarray
    gang: np.ndarray  # -1 honest
    ts: np.ndarray
    product: np.ndarray
    amount: np.ndarray
    term: np.ndarray
    channel: np.ndarray
    income: np.ndarray
    employer: np.ndarray  # index into employer_names; -1 none
    phone: np.ndarray
    device: np.ndarray  # index into device_ids; -1 the default device
    ip: np.ndarray
    lat: np.ndarray  # NaN: no GPS
    lon: np.ndarray
    referrer: np.ndarray  # index into referrer_codes; -1 none
    outcome: np.ndarray  # index into OUTCOMES
    known_ts: np.ndarray
    # persons (applicants), indexed by person
    person_rank: np.ndarray  # applicant id number - 1 (order of first application)
    person_first_day: np.ndarray
    person_first_ts: np.ndarray
    person_honest: np.ndarray
    full_name: pa.Array
    national_id: pa.Array
    email: pa.Array
    birth_date: pa.Array
    region: pa.Array
    # lookup tables
    employer_names: pa.Array
    device_ids: pa.Array
    referrer_codes: pa.Array
    n_gangs: int
    # persons, derived without draws (for layers: the media layer's homes and workplaces, the
    # stealth gangs' own phones and employers)
    person_phone: np.ndarray  # the person's own phone number (the one an honest application carries)
    person_employer: np.ndarray  # the person's real employer (index into employer_names; -1 none)
    person_household: np.ndarray  # the household's head person (itself when living alone): shares the home
    person_kin: np.ndarray  # bool: the head or family of the head (two members are family when both are); else a flatmate

    # ---- cheap derived views (no draws)
    @property
    def n_applications(self) -> int:
        return len(self.ts)

    @property
    def n_applicants(self) -> int:
        return len(self.person_rank)

    @property
    def is_gang(self) -> np.ndarray:
        """Per application: it belongs to a planted gang."""
        return self.gang >= 0

    def application_ids(self, idx: np.ndarray | None = None) -> pa.Array:
        """``A{i+1:08d}`` of applications ``idx`` (all when None), as written in the landing files."""
        i = np.arange(self.n_applications) if idx is None else np.asarray(idx, dtype=np.int64)
        return _fmt_id("A", i + 1)

    def applicant_ids(self, idx: np.ndarray | None = None) -> pa.Array:
        """``C{rank+1:08d}`` of the applicant behind applications ``idx`` (all when None)."""
        i = np.arange(self.n_applications) if idx is None else np.asarray(idx, dtype=np.int64)
        return _fmt_id("C", self.person_rank[self.person[i]] + 1)

    def gang_ids(self, idx: np.ndarray | None = None) -> pa.Array:
        """``G{gang+1:05d}`` of applications ``idx`` (all when None); null for honest ones."""
        g = self.gang if idx is None else self.gang[np.asarray(idx, dtype=np.int64)]
        return pc.if_else(pa.array(g >= 0), _fmt_id("G", g + 1, 5), pa.nulls(len(g), pa.string()))


_World = World  # the name before the simulator became a package


def generate_world(sim: Simulation, rng: np.random.Generator) -> World:
    """Draw the whole numeric world from ``rng`` (the seed's main stream), layer by layer.

    The calls below are in the order the draws were always made; do not reorder them, and do
    not add draws to this stream (a new layer gets its own ``layer_rng``).
    """
    cal = Calendar.build(sim, rng)
    n = sim.n_applications

    # ---- gangs: sizes and identities; honest applicants: 1-3 applications each
    gs = draw_gang_structure(rng, sim, n)
    n_gangs, n_gang_apps = gs.n_gangs, gs.n_apps
    n_honest_apps = n - n_gang_apps
    counts = draw_repeat_counts(rng, n_honest_apps)
    n_honest_people = len(counts)
    n_people = n_honest_people + gs.n_people
    log.info("simulating %s applications: %s honest applicants, %s gangs with %s applications",
             f"{n:,}", f"{n_honest_people:,}", f"{n_gangs:,}", f"{n_gang_apps:,}")

    # ---- persons (honest first, then gang identities)
    honest = np.arange(n_people) < n_honest_people
    region, city = draw_places(rng, n_people)
    gang_city, city = draw_gang_cities(rng, gs, city, honest)
    people = draw_people(rng, sim, cal, region, city, honest)

    # ---- applications: honest, then gangs (ids of gang people = n_honest_people + identity)
    h_person, h_ts, h_rank = draw_honest_timing(rng, cal, counts)
    h_dev, n_devices = draw_honest_devices(rng, people.device, h_person, h_rank, n_devices=n_people)
    g_person = n_honest_people + gs.ident
    timing = draw_gang_timing(rng, sim, cal, gs)
    res = draw_gang_resources(rng, gs, gang_city)
    g_dev, n_devices = draw_gang_devices(rng, res, people.device, g_person, n_devices)

    # ---- concatenate honest + gang applications (put in time order at the end)
    a_person = np.concatenate([h_person, g_person])
    a_gang = np.concatenate([np.full(n_honest_apps, -1), gs.app_gang])
    a_ts = np.concatenate([h_ts, timing.ts])
    a_dev = np.concatenate([h_dev, g_dev])
    a_rank = np.concatenate([h_rank, np.where(gs.is_rep, 1, 0)])
    is_g = a_gang >= 0
    gi = np.flatnonzero(is_g)  # position of gang applications in the concatenation
    a_city = people.city[a_person]

    # ---- what each application shows
    a_phone, own_phone = draw_phones(rng, sim, gs, res, timing.start_day, n_people, a_person, gi)
    a_ip, at_home = draw_ips(rng, sim, people, res, a_person, gi)
    a_dev = draw_honest_default_device(rng, sim, a_dev, is_g)
    a_product, a_channel, a_term, a_income, a_amount = draw_credit(rng, is_g, people.log_income, a_person)
    a_lat, a_lon = draw_gps(rng, people, gs, res, a_person, a_city, a_channel, at_home, gi)
    a_emp = draw_employers(rng, sim, people, gs, res, a_person, gi)
    a_ref, referrer_codes = draw_referrers(rng, sim, gs, res, is_g, a_city, gi)

    # ---- outcomes
    a_outcome, a_known = draw_outcomes(
        rng, sim, is_g=is_g, gi=gi, app_gang=gs.app_gang, n_gangs=n_gangs, ts=a_ts, amount=a_amount, term=a_term,
        income=a_income, channel=a_channel, product=a_product, rank=a_rank, age=people.age[a_person],
        region=people.region[a_person], latent=people.latent[a_person])

    # ---- time order and ids (no draws)
    order = np.argsort(a_ts, kind="stable")
    a_person, a_gang, a_ts = a_person[order], a_gang[order], a_ts[order]
    cols = [a_product, a_amount, a_term, a_channel, a_income, a_emp, a_phone, a_dev, a_ip, a_lat, a_lon, a_ref, a_outcome, a_known]
    (a_product, a_amount, a_term, a_channel, a_income, a_emp, a_phone, a_dev, a_ip, a_lat, a_lon, a_ref,
     a_outcome, a_known) = (c[order] for c in cols)
    people_seen, first_app = np.unique(a_person, return_index=True)
    assert len(people_seen) == n_people
    person_rank = np.empty(n_people, dtype=np.int64)
    person_rank[np.argsort(first_app, kind="stable")] = np.arange(n_people)
    first_ts = a_ts[first_app]
    first_day = cal.day_of(first_ts)

    # ---- text of persons, employers and devices (drawn last)
    text = draw_person_text(rng, people, first_ts)
    employer_names = draw_employer_names(rng, sim.n_employers + int(res.fake_employer.sum()))
    device_ids = draw_device_ids(rng, n_devices)
    return World(
        cal=cal, person=a_person, gang=a_gang, ts=a_ts, product=a_product, amount=a_amount, term=a_term,
        channel=a_channel, income=a_income, employer=a_emp, phone=a_phone, device=a_dev, ip=a_ip,
        lat=a_lat, lon=a_lon, referrer=a_ref, outcome=a_outcome, known_ts=a_known,
        person_rank=person_rank, person_first_day=first_day, person_first_ts=first_ts, person_honest=honest,
        full_name=text.full_name, national_id=text.national_id, email=text.email, birth_date=text.birth_date,
        region=text.region, employer_names=employer_names, device_ids=device_ids,
        referrer_codes=referrer_codes, n_gangs=n_gangs,
        person_phone=own_phone, person_employer=people.employer.copy(), person_household=_households(people.home_ip),
        person_kin=people.kin.copy(),
    )


def _households(home_ip: np.ndarray) -> np.ndarray:
    """Head person of each person's household: household members share their head's home IP
    (``draw_people``), so the head is the smallest person index with that home IP."""
    _, inv = np.unique(home_ip, return_inverse=True)
    head = np.full(inv.max() + 1 if len(inv) else 0, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(head, inv, np.arange(len(home_ip)))
    return head[inv]


_generate = generate_world  # the name before the simulator became a package
