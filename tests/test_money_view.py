"""Pictures of money (riskgraph/money_view.py): they render from hop rows, the same rows give
the same picture, and malformed hops are refused."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from riskgraph.money_view import render_cycle, render_loan_paths

T0 = dt.datetime(2026, 6, 1, 9, 0)


def hop(i, src, dst, hours, amount, sector="personal"):
    return {"transfer_id": f"T{i}", "from_account_key": src, "to_account_key": dst, "transfer_ts": T0 + dt.timedelta(hours=hours),
            "amount": amount, "to_sector": sector}


def test_loan_paths_and_cycle_render_deterministically(tmp_path):
    paths = [[hop(1, "aa" * 16, "bb" * 16, 5, 990.0), hop(2, "bb" * 16, "cc" * 16, 30, 960.0, "real_estate")],
             [hop(3, "aa" * 16, "dd" * 16, 7, 980.0, "securities")]]
    a = render_loan_paths(paths, tmp_path / "a.png", application_id="A1", disbursed_amount=1000.0, disbursed_ts=T0)
    b = render_loan_paths(paths, tmp_path / "b.png", application_id="A1", disbursed_amount=1000.0, disbursed_ts=T0)
    ring = [hop(1, "x" * 32, "y" * 32, 1, 500.0), hop(2, "y" * 32, "z" * 32, 20, 490.0), hop(3, "z" * 32, "x" * 32, 40, 480.0, "retail")]
    c = render_cycle(ring, tmp_path / "c.png", cycle_id="c:1")
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: E731
    assert digest(a) == digest(b)
    assert all(open(p, "rb").read(8) == b"\x89PNG\r\n\x1a\n" for p in (a, c))
    empty = render_loan_paths([], tmp_path / "e.png", application_id="A2", disbursed_amount=10.0, disbursed_ts=T0)
    assert open(empty, "rb").read(4) == b"\x89PNG"


def test_hops_must_carry_the_hop_fields(tmp_path):
    with pytest.raises(ValueError, match="amount"):
        render_cycle([{"transfer_id": "T1", "from_account_key": "a", "to_account_key": "b", "transfer_ts": T0, "to_sector": "x"}],
                     tmp_path / "x.png", cycle_id="c:x")
    with pytest.raises(ValueError, match="at least one hop"):
        render_cycle([], tmp_path / "y.png", cycle_id="c:y")
