"""Labels: whether each application turns out good, a default or confirmed fraud, and when that is known.

Honest outcomes come from a logistic model of the credit features (debt-to-income, income,
term, age band, channel, product, province, a repeat-borrower discount) plus an unobserved
person-level risk (``LATENT_RISK_SD``), so credit features carry real but partial signal; the
intercept is solved so the mean honest bad probability is ``honest_bad_rate``. Gang
applications are bad at a per-gang rate drawn around ``gang_bad_rate``, so the network adds
information the credit features lack. A bad outcome is known 10-60 days (fraud) or 30 days to
``performance_days`` (default) after the application, a good one after ``performance_days``.
"""
from __future__ import annotations

import numpy as np

from riskgraph.config import Simulation
from riskgraph.simulator.reference import (
    _DAY,
    CREDIT_SIGNAL,
    DEFAULT,
    FRAUD,
    GANG_BAD_CONCENTRATION,
    GOOD,
    HONEST_FRAUD_SHARE,
    LATENT_RISK_SD,
    REGIONS,
)


def draw_outcomes(rng: np.random.Generator, sim: Simulation, *, is_g: np.ndarray, gi: np.ndarray, app_gang: np.ndarray,
                  n_gangs: int, ts: np.ndarray, amount: np.ndarray, term: np.ndarray, income: np.ndarray,
                  channel: np.ndarray, product: np.ndarray, rank: np.ndarray, age: np.ndarray, region: np.ndarray,
                  latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcome (index into ``OUTCOMES``) and known time (seconds) of each application.

    Per application: ``is_g``, ``ts``, ``amount``, ``term``, ``income``, ``channel``, ``product``,
    ``rank`` (0: the person's first application), ``age``, ``region`` (index into ``REGIONS``),
    ``latent``. ``gi``: positions of the gang applications, ``app_gang``: their gangs.
    """
    n = len(ts)
    gg = app_gang
    a_outcome = np.full(n, GOOD, dtype=np.int64)
    feats = {
        "dti": np.log(amount / term / income),
        "income": np.log(income),
        "term": term.astype(float),
    }
    std = {k: (v - v[~is_g].mean()) / (v[~is_g].std() + 1e-9) for k, v in feats.items()}
    region_effect = rng.normal(0, 0.25, len(REGIONS))
    z = CREDIT_SIGNAL * (0.55 * std["dti"] - 0.45 * std["income"] + 0.2 * std["term"]
         + np.where(age < 25, 0.45, np.where(age < 30, 0.2, np.where(age > 60, 0.25, 0.0)))
         + np.array([0.0, 0.15, 0.4])[channel] + np.array([0.3, 0.0, 0.2])[product]
         + region_effect[region] - 0.3 * (rank > 0)) + LATENT_RISK_SD * latent
    hz = z[~is_g]
    b0 = np.log(sim.honest_bad_rate / (1 - sim.honest_bad_rate)) - np.median(hz)
    for _ in range(50):  # Newton: the intercept making the mean honest bad probability honest_bad_rate
        ph = 1 / (1 + np.exp(-(hz + b0)))
        step = (ph.mean() - sim.honest_bad_rate) / max(float((ph * (1 - ph)).mean()), 1e-12)
        b0 -= step
        if abs(step) < 1e-10:
            break
    p_bad = 1 / (1 + np.exp(-(z + b0)))
    g_rate = rng.beta(sim.gang_bad_rate * GANG_BAD_CONCENTRATION, (1 - sim.gang_bad_rate) * GANG_BAD_CONCENTRATION, max(n_gangs, 1))
    p_bad[gi] = g_rate[gg]
    bad = rng.random(n) < p_bad
    fraud_share = np.where(is_g, sim.gang_fraud_share, HONEST_FRAUD_SHARE)
    a_outcome[bad] = np.where(rng.random(n)[bad] < fraud_share[bad], FRAUD, DEFAULT)
    perf = sim.performance_days
    lo_d = np.array([min(10, perf), min(30, perf), perf], dtype=float)[a_outcome]
    hi_d = np.array([min(60, perf), perf, perf], dtype=float)[a_outcome]
    delay = np.rint((lo_d + rng.random(n) * (hi_d - lo_d)) * _DAY).astype(np.int64)
    a_known = ts + np.maximum(delay, 1)
    return a_outcome, a_known
