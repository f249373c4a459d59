"""Stealth gangs: gangs that share no device, phone, IP, e-mail or referrer code (issue 10).

The first source article's point is that some gangs are careful with everything a structured
graph sees, and only the multimodal network (the same rooms behind their selfies, one
intermediary's voice on their calls, one template of wording) finds them. This step turns
``simulation.media.stealth_gang_share`` of the gangs into such gangs after the base world is
generated: each member application gets its own fresh device, the applicant's own phone (no
card-dealer SIM), a fresh IP, no referral code, the applicant's real employer, and a GPS point
away from the gang's office. Their outcomes are unchanged (they are still gangs).

It draws only from ``layer_rng(seed, "stealth")``; with a share of 0 (the default) it changes
nothing, so worlds generated before it existed stay byte-identical. Only gangs whose
applications all fall in the media window are eligible (a stealth gang outside it would be
invisible to every signal), and only gangs without a re-used identity (a repeat borrower's
e-mail would link the gang).
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa

from riskgraph.config import Simulation
from riskgraph.simulator.layers import layer_rng
from riskgraph.simulator.reference import IP_FIRST_OCTETS
from riskgraph.simulator.world import World

STEALTH_GPS_OFFSET_M = (800.0, 4000.0)  # stealth members apply from elsewhere in the city


def make_stealth_gangs(w: World, sim: Simulation) -> tuple[World, np.ndarray]:
    """Return (the world with stealth gangs, sorted indices of the stealth gangs)."""
    m = sim.media
    if not m.enabled or m.stealth_gang_share <= 0 or w.n_gangs == 0:
        return w, np.zeros(0, dtype=np.int64)
    rng = layer_rng(sim.seed, "stealth")
    from_s = 0 if m.from_date is None else (m.from_date - dt.date(1970, 1, 1)).days * 86_400
    g_apps = np.flatnonzero(w.gang >= 0)
    g = w.gang[g_apps]
    n_g = int(w.n_gangs)
    first_ts = np.full(n_g, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, g, w.ts[g_apps])
    size = np.bincount(g, minlength=n_g)
    people = np.zeros(n_g, dtype=np.int64)
    pairs = np.unique(np.stack([g, w.person[g_apps]]), axis=1)
    np.add.at(people, pairs[0], 1)
    eligible = np.flatnonzero((first_ts >= from_s) & (people == size) & (size > 0))
    k = int(round(m.stealth_gang_share * len(eligible)))
    chosen = np.sort(rng.choice(eligible, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    apps = g_apps[np.isin(g, chosen)]
    if len(apps) == 0:
        return w, chosen
    n = len(apps)
    device = w.device.copy()
    phone = w.phone.copy()
    ip = w.ip.copy()
    referrer = w.referrer.copy()
    employer = w.employer.copy()
    lat, lon = w.lat.copy(), w.lon.copy()
    # fresh devices, inserted before the default device id (which must stay last)
    n_dev = len(w.device_ids) - 1
    b = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    new_ids = []
    for row in b:
        h = bytes(row).hex()
        new_ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}")
    device_ids = pa.concat_arrays([w.device_ids.slice(0, n_dev), pa.array(new_ids, pa.string()), w.device_ids.slice(n_dev)])
    device[apps] = n_dev + np.arange(n)
    phone[apps] = w.person_phone[w.person[apps]]
    first = np.asarray(IP_FIRST_OCTETS, dtype=np.uint32)
    ip[apps] = (first[rng.integers(0, len(first), n)] << np.uint32(24)) | rng.integers(0, 1 << 24, n, dtype=np.uint32)
    referrer[apps] = -1
    employer[apps] = w.person_employer[w.person[apps]]
    has = ~np.isnan(lat[apps])
    r = rng.uniform(*STEALTH_GPS_OFFSET_M, n)
    theta = rng.random(n) * 2 * np.pi
    la = lat[apps] + r * np.sin(theta) / 111_320.0
    lo = lon[apps] + r * np.cos(theta) / (111_320.0 * np.cos(np.radians(np.nan_to_num(lat[apps]))))
    lat[apps] = np.where(has, la, np.nan)
    lon[apps] = np.where(has, lo, np.nan)
    w2 = dataclasses.replace(w, device=device, phone=phone, ip=ip, referrer=referrer, employer=employer,
                             lat=lat, lon=lon, device_ids=device_ids)
    return w2, chosen
