"""What each application shows: device, phone, IP, GPS, employer, referral code, product and amount.

Arrays here are over all applications in the order honest-then-gang (before the world sorts them
by time); ``gi`` is the position of the gang applications in that order. Honest applications
share through hubs (carrier NAT IPs, the default device id, home broadband, big employers,
friends' referral codes); gang applications share their gang's pools (``gangs.GangResources``).

Every function draws from the generator it is given, in the order ``world.generate_world`` calls it.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from riskgraph.config import Simulation
from riskgraph.simulator.formatting import _ascii, _base36
from riskgraph.simulator.gangs import GangResources, GangStructure, _share_dealers
from riskgraph.simulator.people import People
from riskgraph.simulator.reference import (
    AT_HOME_P,
    CITIES,
    CITY_LAT,
    CITY_LON,
    CITY_SD_M,
    DEFAULT_DEVICE,
    EMPLOYER_INDUSTRY,
    EMPLOYER_PREFIX,
    EMPLOYER_SUFFIX,
    GANG_DEFAULT_DEVICE_P,
    NO_GPS_P,
    OFFICE_RADIUS_M,
    REPEAT_NEW_DEVICE_P,
    TERMS,
)
from riskgraph.simulator.sampling import _group_sizes, _offset_m, _p, _random_ips, _unique_ints


# ---------------------------------------------------------------- devices
def draw_honest_devices(rng: np.random.Generator, device: np.ndarray, h_person: np.ndarray, h_rank: np.ndarray,
                        n_devices: int) -> tuple[np.ndarray, int]:
    """The device of each honest application: the person's own, or for a repeat application
    (``REPEAT_NEW_DEVICE_P``) a new phone. Returns ``(device per application, devices so far)``."""
    h_dev = device[h_person].copy()
    new_dev = (h_rank > 0) & (rng.random(len(h_person)) < REPEAT_NEW_DEVICE_P)
    h_dev[new_dev] = n_devices + np.arange(int(new_dev.sum()))
    return h_dev, n_devices + int(new_dev.sum())


def draw_gang_devices(rng: np.random.Generator, res: GangResources, device: np.ndarray, g_person: np.ndarray,
                      n_devices: int) -> tuple[np.ndarray, int]:
    """The device of each gang application: one of the gang's pool, else the identity's own; a few
    (``GANG_DEFAULT_DEVICE_P``) report the default id (-1). Returns ``(device, devices so far)``."""
    g_dev = np.where(res.uses(rng, "device"), n_devices + res.pick(rng, res.dev_pool), device[g_person])
    g_dev = np.where(rng.random(len(g_person)) < GANG_DEFAULT_DEVICE_P, -1, g_dev)
    return g_dev, n_devices + int(res.dev_pool.sum())


def draw_honest_default_device(rng: np.random.Generator, sim: Simulation, a_dev: np.ndarray, is_g: np.ndarray) -> np.ndarray:
    """Honest applications reporting the default device id (-1): the default-device hub,
    ``default_device_share * hub_noise`` of them."""
    p_default_device = min(1.0, sim.default_device_share * sim.hub_noise)
    return np.where(~is_g & (rng.random(len(a_dev)) < p_default_device), -1, a_dev)


def draw_device_ids(rng: np.random.Generator, n_devices: int) -> pa.Array:
    """Random UUIDs for the world's devices, then the default device id last (index -1)."""
    return pa.concat_arrays([_uuid_strings(rng, n_devices), pa.array([DEFAULT_DEVICE])])


def _uuid_strings(rng: np.random.Generator, n: int) -> pa.Array:
    hexchars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    hx = np.empty((n, 32), dtype=np.uint8)
    hx[:, 0::2], hx[:, 1::2] = hexchars[b >> 4], hexchars[b & 15]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)), (slice(12, 16), slice(14, 18)),
                     (slice(16, 20), slice(19, 23)), (slice(20, 32), slice(24, 36))):
        out[:, dst] = hx[:, src]
    return _ascii(out)


# ---------------------------------------------------------------- phones
def draw_phones(rng: np.random.Generator, sim: Simulation, gs: GangStructure, res: GangResources, g_start_day: np.ndarray,
                n_people: int, a_person: np.ndarray, gi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phone number of each application: the person's own unique number, or for gang applications
    one of their card dealer's SIMs (also unique numbers); some dealers also serve the gang
    nearest in time (``_share_dealers``, its own generator). Returns ``(per application, each
    person's own number)``."""
    phones = _phones(rng, n_people + int(res.sim_pool.sum()))
    a_phone = phones[a_person]
    a_phone[gi] = np.where(res.uses(rng, "phone"), phones[n_people + res.pick(rng, res.sim_pool)], a_phone[gi])
    _share_dealers(sim, a_phone, gi, phones[n_people:], gs.first, gs.sizes, res.sim_pool, g_start_day)
    return a_phone, phones[:n_people].copy()


def _phones(rng, n: int) -> np.ndarray:
    prefixes = np.array([130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
                         157, 158, 159, 180, 181, 182, 183, 185, 186, 187, 188, 189], dtype=np.int64)
    return _unique_ints(rng, n, lambda k: prefixes[rng.integers(0, len(prefixes), k)] * 10**8 + rng.integers(0, 10**8, k))


# ---------------------------------------------------------------- IPs
def draw_ips(rng: np.random.Generator, sim: Simulation, people: People, res: GangResources, a_person: np.ndarray,
             gi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IP of each application: home broadband (``AT_HOME_P``) or a random mobile IP, behind the
    carrier's NAT hub IP for ``nat_ip_share * hub_noise`` of them; gang applications mostly
    from their gang's few IPs. Returns ``(ip, at_home)``; ``at_home`` also places the GPS fix."""
    n = len(a_person)
    p_nat = min(1.0, sim.nat_ip_share * sim.hub_noise)
    nat_ips = _random_ips(rng, sim.n_nat_ips)
    at_home = rng.random(n) < AT_HOME_P
    a_ip = np.where(at_home, people.home_ip[a_person], _random_ips(rng, n))
    a_ip = np.where(rng.random(n) < p_nat, nat_ips[people.carrier[a_person]], a_ip)
    g_ips = _random_ips(rng, int(res.ip_pool.sum()))
    a_ip[gi] = np.where(res.uses(rng, "ip"), g_ips[res.pick(rng, res.ip_pool)], a_ip[gi])
    return a_ip, at_home


# ---------------------------------------------------------------- products and amounts
def draw_credit(rng: np.random.Generator, is_g: np.ndarray, log_income: np.ndarray,
                a_person: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Product, channel, term (months), declared monthly income and amount of each application;
    gangs favour cash loans through the app and ask for 25% more. Returns
    ``(product, channel, term, income, amount)`` (income and amount rounded to 100)."""
    n = len(is_g)
    a_product = np.where(is_g, rng.choice(3, n, p=[0.7, 0.25, 0.05]), rng.choice(3, n, p=[0.55, 0.35, 0.10]))
    a_channel = np.where(is_g, rng.choice(3, n, p=[0.72, 0.16, 0.12]), rng.choice(3, n, p=[0.55, 0.30, 0.15]))
    a_term = np.zeros(n, dtype=np.int64)
    for prod, (terms, tp) in TERMS.items():
        m = a_product == prod
        a_term[m] = rng.choice(np.array(terms), int(m.sum()), p=_p(tp))
    income = np.exp(log_income[a_person] + rng.normal(0, 0.05, n))
    a_income = np.maximum(1500, np.rint(income / 100) * 100).astype(np.int64)
    mult = np.where(a_product == 0, np.exp(rng.normal(np.log(2.5), 0.7, n)),
                    np.where(a_product == 1, np.exp(rng.normal(np.log(6000), 0.8, n)) * (income / 6000) ** 0.3 / income,
                             np.exp(rng.normal(np.log(8), 0.6, n))))
    amount = income * mult * np.where(is_g, 1.25, 1.0)
    a_amount = np.clip(np.rint(amount / 100) * 100, 500, 500_000).astype(np.int64)
    return a_product, a_channel, a_term, a_income, a_amount


# ---------------------------------------------------------------- GPS
def draw_gps(rng: np.random.Generator, people: People, gs: GangStructure, res: GangResources, a_person: np.ndarray,
             a_city: np.ndarray, a_channel: np.ndarray, at_home: np.ndarray, gi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GPS fix of each application: none (``NO_GPS_P`` by channel, mostly web), the home spot,
    or somewhere in town; gang members mostly within ``OFFICE_RADIUS_M`` of their office.
    Returns ``(lat, lon)``, NaN where no fix was sent."""
    n, n_gang_apps = len(a_person), gs.n_apps
    no_gps = rng.random(n) < np.array([NO_GPS_P[c] for c in range(3)])[a_channel]
    tlat, tlon = _offset_m(rng, CITY_LAT[a_city], CITY_SD_M[a_city], n)
    hlat, hlon = _offset_m(rng, people.home_lat[a_person], 12.0, n)
    a_lat = np.where(at_home, people.home_lat[a_person] + hlat, CITY_LAT[a_city] + tlat)
    a_lon = np.where(at_home, people.home_lon[a_person] + hlon, CITY_LON[a_city] + tlon)
    gg = gs.app_gang
    r = np.sqrt(rng.random(n_gang_apps)) * OFFICE_RADIUS_M
    theta = rng.random(n_gang_apps) * 2 * np.pi
    at_office = res.uses(rng, "gps")
    office_lat, office_lon = res.office_lat, res.office_lon
    a_lat[gi] = np.where(at_office, office_lat[gg] + r * np.sin(theta) / 111_320.0, a_lat[gi])
    a_lon[gi] = np.where(at_office, office_lon[gg] + r * np.cos(theta) / (111_320.0 * np.cos(np.radians(office_lat[gg]))), a_lon[gi])
    a_lat[no_gps] = np.nan
    a_lon[no_gps] = np.nan
    return a_lat, a_lon


# ---------------------------------------------------------------- employers
def draw_employers(rng: np.random.Generator, sim: Simulation, people: People, gs: GangStructure, res: GangResources,
                   a_person: np.ndarray, gi: np.ndarray) -> np.ndarray:
    """Employer of each application (index into the employer names; -1 none): the person's own,
    or the gang's fake small company (numbered after the ``n_employers`` real ones)."""
    gg = gs.app_gang
    a_emp = people.employer[a_person]
    fake_idx = sim.n_employers + np.cumsum(res.fake_employer) - 1
    a_emp[gi] = np.where(res.fake_employer[gg] & res.uses(rng, "employer"), fake_idx[gg], a_emp[gi])
    return a_emp


def draw_employer_names(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` distinct company names, then "" last (index -1: no employer)."""
    return pa.array(_employer_names(rng, n) + [""])


def _employer_names(rng: np.random.Generator, n: int) -> list[str]:
    combos = len(EMPLOYER_PREFIX) * len(EMPLOYER_INDUSTRY) * len(EMPLOYER_SUFFIX) * (len(CITIES) + 1)
    order = rng.permutation(combos)
    names = []
    for k in range(n):
        c = int(order[k % combos])
        c, s = divmod(c, len(EMPLOYER_SUFFIX))
        c, ind = divmod(c, len(EMPLOYER_INDUSTRY))
        city, pre = divmod(c, len(EMPLOYER_PREFIX))
        name = f"{EMPLOYER_PREFIX[pre]} {EMPLOYER_INDUSTRY[ind]} {EMPLOYER_SUFFIX[s]}"
        if city < len(CITIES):
            name = f"{CITIES[city][0]} {name}"
        if k >= combos:  # only for absurd n_employers
            name = f"{name} Branch {k // combos}"
        names.append(name)
    return names


# ---------------------------------------------------------------- referral codes
def draw_referrers(rng: np.random.Generator, sim: Simulation, gs: GangStructure, res: GangResources, is_g: np.ndarray,
                   a_city: np.ndarray, gi: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Referral code of each application (index into the codes; -1 none): honest friends share
    a code in groups of 1-5, mostly of one city (``referral_share`` of honest applications);
    a gang's intermediary has its own code. Returns ``(referrer, codes)``; ``codes`` are
    distinct 7-character base-36 strings, then "" last (index -1)."""
    n = len(is_g)
    a_ref = np.full(n, -1, dtype=np.int64)
    ref_apps = np.flatnonzero(~is_g & (rng.random(n) < sim.referral_share))
    ref_apps = ref_apps[np.lexsort((rng.random(len(ref_apps)), a_city[ref_apps]))]
    ref_sizes = _group_sizes(rng, len(ref_apps), 1, 5)
    a_ref[ref_apps] = np.repeat(np.arange(len(ref_sizes)), ref_sizes)
    a_ref[gi] = np.where(res.uses(rng, "referrer"), len(ref_sizes) + gs.app_gang, -1)
    n_codes = len(ref_sizes) + gs.n_gangs
    referrer_codes = _base36(_unique_ints(rng, n_codes, lambda k: rng.integers(36**6, 36**7, k)), 7)
    return a_ref, pa.concat_arrays([referrer_codes, pa.array([""])])
