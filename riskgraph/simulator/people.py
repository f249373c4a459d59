"""Applicants: where they live, who they are, what they earn, how risky they are, when they apply.

Persons are indexed honest applicants first, then gang identities. Honest applicants mostly
apply once (some 2-3 times). Honest people *do* share things, so a naive graph glues strangers:
``household_share`` of them live with 1-3 others (same building, home IP, often a carrier, a
surname, sometimes the family device, and a shared budget in their latent risk), and Zipf-sized
employers gather many. Monthly income follows the province's income tier and an age hump;
the latent risk is the person-level credit risk the credit features cannot see.

Every function draws from the generator it is given, in the order ``world.generate_world`` calls it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from riskgraph.config import Simulation
from riskgraph.simulator.calendar import Calendar
from riskgraph.simulator.formatting import _ascii, _first_occurrence, _fmt_int, _take
from riskgraph.simulator.reference import (
    _DAY,
    CITIES,
    CITY_LAT,
    CITY_LON,
    CITY_SD_M,
    EMAIL_DOMAINS,
    EMPLOYER_OFFSET,
    GIVEN_NAMES,
    HOUSEHOLD_SAME_SURNAME_P,
    HOUSEHOLD_SHARED_DEVICE_P,
    NO_EMPLOYER_P,
    REGION_CITIES,
    REGION_CODES,
    REGION_TIER,
    REGION_WEIGHTS,
    REGIONS,
    REPEAT_APPS_P,
    SURNAMES,
)
from riskgraph.simulator.sampling import _group_sizes, _offset_m, _p, _random_ips, _starts


def draw_repeat_counts(rng: np.random.Generator, n_honest_apps: int) -> np.ndarray:
    """Applications per honest applicant (1-3, ``REPEAT_APPS_P``), summing to ``n_honest_apps``;
    its length is the number of honest applicants."""
    counts = rng.choice(np.arange(1, len(REPEAT_APPS_P) + 1), int(n_honest_apps / 1.2) + 10, p=_p(REPEAT_APPS_P))
    cs = np.cumsum(counts)
    k = int(np.searchsorted(cs, n_honest_apps))
    counts = counts[: k + 1].copy() if n_honest_apps > 0 else counts[:0].copy()
    if n_honest_apps > 0:
        counts[-1] -= cs[k] - n_honest_apps
    return counts


def draw_places(rng: np.random.Generator, n_people: int) -> tuple[np.ndarray, np.ndarray]:
    """Each person's province (index into ``REGIONS``, population-weighted, urban-skewed) and city
    (index into ``CITIES``): one of the province's nearby cities, or for a quarter of people
    (migrants) any city by its attraction. Returns ``(region, city)``."""
    region = rng.choice(len(REGIONS), n_people, p=_p(REGION_WEIGHTS))
    city = REGION_CITIES[region, rng.integers(0, 2, n_people)]
    migrant = rng.random(n_people) < 0.25
    city = np.where(migrant, rng.choice(len(CITIES), n_people, p=_p([c[4] for c in CITIES])), city)
    return region, city


@dataclass(frozen=True)
class People:
    """Numeric attributes of every person (honest applicants first, then gang identities)."""

    honest: np.ndarray  # bool
    region: np.ndarray  # index into REGIONS
    city: np.ndarray  # index into CITIES
    surname: np.ndarray  # index into SURNAMES
    given: np.ndarray  # index into GIVEN_NAMES
    age: np.ndarray  # years at the start of the period (fractional)
    home_lat: np.ndarray
    home_lon: np.ndarray
    home_ip: np.ndarray  # home broadband IP (uint32)
    carrier: np.ndarray  # index of the carrier NAT IP the person's phone goes out through
    latent: np.ndarray  # unobserved credit risk (z-score)
    employer: np.ndarray  # index among n_employers; -1 none
    device: np.ndarray  # the person's own phone (index into the world's devices)
    log_income: np.ndarray  # log monthly income
    kin: np.ndarray  # bool: a household's head and the members of its family (False: a flatmate, or living alone)

    @property
    def n_people(self) -> int:
        return len(self.honest)


def draw_people(rng: np.random.Generator, sim: Simulation, cal: Calendar, region: np.ndarray, city: np.ndarray,
                honest: np.ndarray) -> People:
    """Names, ages, homes, carriers, latent risk, employers and own devices, then households
    (which align members' city, home, IP, often surname, province, carrier and device, and
    share part of the latent risk), then income. ``region``/``city`` are not modified."""
    n_people = len(honest)
    region, city = region.copy(), city.copy()
    surname = rng.choice(len(SURNAMES), n_people, p=_p([w for _, w in SURNAMES]))
    given = rng.integers(0, len(GIVEN_NAMES), n_people)
    age = np.where(honest, 18 + rng.gamma(2.2, 7.0, n_people), 18 + rng.gamma(2.0, 5.5, n_people))
    age = np.clip(age, 18.0, max(19.0, 70.0 - cal.n_days / 365.25))  # 18-70 at every application
    dlat, dlon = _offset_m(rng, CITY_LAT[city], CITY_SD_M[city], n_people)
    home_lat, home_lon = CITY_LAT[city] + dlat, CITY_LON[city] + dlon
    home_ip = _random_ips(rng, n_people)
    carrier_p = _p(1.0 / np.arange(1, sim.n_nat_ips + 1) ** 0.8)
    carrier = rng.choice(sim.n_nat_ips, n_people, p=carrier_p)
    latent = rng.normal(0.0, 1.0, n_people)  # unobserved credit risk (z-score)
    # employers: Zipf-Mandelbrot over n_employers; hub_noise scales the exponent's excess over 1
    s_eff = 1.0 + (sim.employer_zipf - 1.0) * sim.hub_noise
    emp_p = _p((np.arange(1, sim.n_employers + 1) + EMPLOYER_OFFSET) ** -s_eff)
    employer = np.where(rng.random(n_people) < NO_EMPLOYER_P, -1, rng.choice(sim.n_employers, n_people, p=emp_p))
    device = np.arange(n_people, dtype=np.int64)  # each person's own phone

    # households: household_share of honest people live with 1-3 others
    in_hh = np.flatnonzero((rng.random(n_people) < sim.household_share) & honest)
    in_hh = in_hh[rng.permutation(len(in_hh))]
    hh_sizes = _group_sizes(rng, len(in_hh), 2, 4)
    if len(hh_sizes) and hh_sizes[-1] == 1:  # a lone leftover lives alone
        in_hh, hh_sizes = in_hh[:-1], hh_sizes[:-1]
    hh_start = _starts(hh_sizes)
    head = in_hh[np.repeat(hh_start, hh_sizes)]
    mem = in_hh[head != in_hh]
    mhead = head[head != in_hh]
    city[mem] = city[mhead]
    d2lat, d2lon = _offset_m(rng, home_lat[mhead], 5.0, len(mem))  # same building
    home_lat[mem], home_lon[mem] = home_lat[mhead] + d2lat, home_lon[mhead] + d2lon
    home_ip[mem] = home_ip[mhead]
    family = rng.random(len(mem)) < HOUSEHOLD_SAME_SURNAME_P
    surname[mem] = np.where(family, surname[mhead], surname[mem])
    kin = np.zeros(n_people, dtype=bool)  # truth for relationship inference; no draw
    kin[in_hh[hh_start]] = True
    kin[mem] = family
    region[mem] = np.where(rng.random(len(mem)) < 0.8, region[mhead], region[mem])
    carrier[mem] = np.where(rng.random(len(mem)) < 0.6, carrier[mhead], carrier[mem])
    device[mem] = np.where(rng.random(len(mem)) < HOUSEHOLD_SHARED_DEVICE_P, device[mhead], device[mem])
    hh_latent = rng.normal(0.0, 1.0, len(hh_sizes))  # shared household risk (same budget)
    latent[in_hh] = 0.8 * latent[in_hh] + 0.6 * hh_latent[np.repeat(np.arange(len(hh_sizes)), hh_sizes)]
    # monthly income: richer regions, an age hump, wide spread
    tier = REGION_TIER[region]
    log_income = (np.log(5500) + np.where(tier == 1, 0.35, np.where(tier == 2, 0.15, 0.0))
                  + 0.35 * (1 - ((age - 42) / 22) ** 2) + rng.normal(0, 0.55, n_people))
    log_income[~honest] += np.log(0.9)  # identities bought from brokers: somewhat poorer
    return People(honest=honest, region=region, city=city, surname=surname, given=given, age=age,
                  home_lat=home_lat, home_lon=home_lon, home_ip=home_ip, carrier=carrier, latent=latent,
                  employer=employer, device=device, log_income=log_income, kin=kin)


def draw_honest_timing(rng: np.random.Generator, cal: Calendar, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """When honest applicants apply: ``counts[p]`` timestamps for person ``p`` from the calendar's
    profiles. Returns ``(person, ts, rank)`` per honest application, grouped by person and in time
    order within a person (``rank`` 0 = the person's first application)."""
    n_honest_apps = int(counts.sum())
    h_person = np.repeat(np.arange(len(counts)), counts)
    h_ts = cal.sample_ts(rng, n_honest_apps)
    h_ts = h_ts[np.lexsort((h_ts, h_person))]  # h_person is sorted: each person's applications in time order
    h_rank = np.arange(n_honest_apps) - np.repeat(_starts(counts), counts)
    return h_person, h_ts, h_rank


# ---------------------------------------------------------------- personal data (text)
@dataclass(frozen=True)
class PersonText:
    """The applicants table's text columns, per person."""

    full_name: pa.Array
    national_id: pa.Array
    email: pa.Array
    birth_date: pa.Array
    region: pa.Array  # province code


def draw_person_text(rng: np.random.Generator, people: People, first_ts: np.ndarray) -> PersonText:
    """Names, birth dates (from the age at the start and the first application's time), national
    ids and e-mail addresses; ids and addresses are unique per person."""
    birth_day = (first_ts // _DAY - np.rint(people.age * 365.2425)).astype(np.int64)
    birth_str = np.datetime_as_string(birth_day.astype("datetime64[D]"))
    region_code = REGION_CODES[people.region]
    full_name = pa.array(np.strings.add(np.strings.add(np.array([s for s, _ in SURNAMES])[people.surname], " "),
                                        np.array(GIVEN_NAMES)[people.given]))
    national_id = _national_ids(rng, region_code, birth_day)
    email = _emails(rng, people.surname, people.given, birth_str.astype("U4").astype(np.int64))
    return PersonText(full_name=full_name, national_id=national_id, email=email,
                      birth_date=pa.array(birth_str.astype(str)), region=pa.array(region_code.astype(str)))


def _national_ids(rng, region_code: np.ndarray, birth_day: np.ndarray) -> pa.Array:
    """18-char ids: 6-digit area (province + city + district), yyyymmdd, 3-digit sequence, ISO 7064 check."""
    n = len(region_code)
    area = region_code * 10_000 + rng.integers(1, 16, n) * 100 + rng.integers(1, 26, n)
    d = birth_day.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    ymd = ((d.astype("datetime64[Y]").astype(np.int64) + 1970) * 10_000
           + (month_start.astype(np.int64) % 12 + 1) * 100 + (d - month_start).astype(np.int64) + 1)
    base = area * 10**11 + ymd * 1000
    num = base + rng.integers(0, 1000, n)
    while True:  # unique per person: redraw the sequence number of duplicates
        _, first = np.unique(num, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        num[dup] = base[dup] + rng.integers(0, 1000, int(dup.sum()))
    digits = np.empty((n, 17), dtype=np.int64)
    v = num.copy()
    for i in range(16, -1, -1):
        digits[:, i] = v % 10
        v //= 10
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.frombuffer(b"10X98765432", dtype=np.uint8)[(digits @ weights) % 11]
    codes = np.concatenate([(digits + ord("0")).astype(np.uint8), check[:, None]], axis=1)
    return _ascii(codes)


def _emails(rng, surname: np.ndarray, given: np.ndarray, birth_year: np.ndarray) -> pa.Array:
    """name + number @ domain (QQ mail is often the numeric QQ id); unique per person."""
    n = len(surname)
    sur = pa.array([s.lower() for s, _ in SURNAMES])
    giv = pa.array([g.lower() for g in GIVEN_NAMES])
    initial = pa.array([g[0].lower() + "." for g in GIVEN_NAMES])
    domains = [d for d, _ in EMAIL_DOMAINS]
    domain = rng.choice(len(domains), n, p=_p([w for _, w in EMAIL_DOMAINS]))
    # 0 fullname+number, 1 fullname+birth year, 2 initial.surname+number, 3 numeric QQ id (qq.com only)
    style = rng.choice(4, n, p=[0.45, 0.2, 0.15, 0.2])
    style[(style == 3) & (domain != domains.index("qq.com"))] = 0

    def draw(idx: np.ndarray, extra_digits: bool) -> pa.Array:
        k, st = len(idx), style[idx]
        full = pc.binary_join_element_wise(_take(sur, surname[idx]), _take(giv, given[idx]), "")
        short = pc.binary_join_element_wise(_take(initial, given[idx]), _take(sur, surname[idx]), "")
        number = rng.integers(1, 1000, k)
        if extra_digits:  # a taken address: people add digits
            number = number * 100 + rng.integers(0, 100, k)
        qq = _fmt_int(rng.integers(10**5, 10**10, k))
        name = pc.if_else(pa.array(st == 2), short, full)
        suffix = _fmt_int(np.where(st == 1, birth_year[idx] * (100 if extra_digits else 1) + number % 100 * extra_digits, number))
        local = pc.if_else(pa.array(st == 3), qq, pc.binary_join_element_wise(name, suffix, ""))
        return pc.binary_join_element_wise(local, _take(pa.array(domains), domain[idx]), "@")

    email = draw(np.arange(n), extra_digits=False)
    while True:
        dup = ~_first_occurrence(email)
        if not dup.any():
            return email
        email = pc.replace_with_mask(email, pa.array(dup), draw(np.flatnonzero(dup), extra_digits=True))
