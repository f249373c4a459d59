"""Pictures of money for analysts: a loan's traced paths and a cycle (money/paths, money/cycles).

Accounts are nodes, labelled by sector and a short prefix of their pseudonym (never an
account number); each hop is an arrow labelled with its order, date-time and amount. The
layout is computed, not drawn by a spring model: a path reads left to right by hop, a cycle
sits on a circle in time order, so the same rows always give the same picture.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

DPI = 110
SECTOR_COLOUR = {"personal": "#4c72b0", "lender": "#55a868", "retail": "#8c8c8c", "utilities": "#8c8c8c",
                 "employer": "#8c8c8c", "payroll": "#8c8c8c", "real_estate": "#c44e52", "securities": "#dd8452"}
HOP_FIELDS = ("transfer_id", "from_account_key", "to_account_key", "transfer_ts", "amount", "to_sector")


def _short(key: str, n: int = 8) -> str:
    return key if len(key) <= n else key[:n] + "…"


def _hops_frame(hops: Sequence) -> pd.DataFrame:
    """Hop structs (Spark Rows or dicts) -> a frame with HOP_FIELDS."""
    rows = [h.asDict() if hasattr(h, "asDict") else dict(h) for h in hops]
    missing = [f for f in HOP_FIELDS if rows and f not in rows[0]]
    if missing:
        raise ValueError(f"hops lack field(s) {missing}; expected {HOP_FIELDS}")
    return pd.DataFrame(rows, columns=list(HOP_FIELDS))


def _label(ts, amount: float) -> str:
    return f"{pd.Timestamp(ts):%m-%d %H:%M}\n{amount:,.2f}"


def render_loan_paths(paths: Sequence[Sequence], path: str, *, application_id: str, disbursed_amount: float,
                      disbursed_ts, borrower_sector: str = "personal", title: str | None = None) -> str:
    """Draw a loan's traced paths (each a list of hop structs, best first) from the
    disbursement to the flagged sector: one row per path, hops left to right. Returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    frames = [_hops_frame(p) for p in paths]
    width = max([len(f) for f in frames] + [1]) + 1
    fig = Figure(figsize=(2.6 * (width + 1), 1.0 + 1.6 * max(len(frames), 1)), dpi=DPI)
    ax = fig.subplots()
    def node(x, y, text, colour):
        ax.scatter([x], [y], s=900, c=colour, zorder=3, edgecolors="black", linewidths=0.8)
        ax.text(x, y - 0.32, text, ha="center", va="top", fontsize=7)

    def arrow(x0, x1, y, text, colour="black"):
        ax.add_patch(FancyArrowPatch((x0 + 0.18, y), (x1 - 0.18, y), arrowstyle="-|>", mutation_scale=14, color=colour, zorder=2))
        ax.text((x0 + x1) / 2, y + 0.08, text, ha="center", va="bottom", fontsize=7)

    for i, f in enumerate(frames or [pd.DataFrame(columns=list(HOP_FIELDS))]):
        y = -1.6 * i
        node(0, y, "lender", SECTOR_COLOUR["lender"])
        borrower = f["from_account_key"].iloc[0] if len(f) else None
        node(1, y, f"borrower\n{_short(borrower) if borrower else ''}", SECTOR_COLOUR.get(borrower_sector, "#4c72b0"))
        arrow(0, 1, y, "disbursed\n" + _label(disbursed_ts, disbursed_amount), "#55a868")
        for j, r in enumerate(f.itertuples(), start=1):
            sec = r.to_sector
            node(j + 1, y, f"{sec}\n{_short(r.to_account_key)}", SECTOR_COLOUR.get(sec, "#4c72b0"))
            share = r.amount / disbursed_amount if disbursed_amount else float("nan")
            arrow(j, j + 1, y, f"hop {j}  {_label(r.transfer_ts, r.amount)}\n({share:.0%} of the loan)")
        ax.text(-0.5, y, f"path {i + 1}", ha="right", va="center", fontsize=8, fontweight="bold")
    if not frames:
        ax.text(width / 2, 0.5, "no path into a flagged sector", ha="center")
    ax.set_xlim(-1.2, width + 0.6)
    ax.set_ylim(-1.6 * max(len(frames), 1) + 0.6, 0.9)
    ax.set_axis_off()
    ax.set_title(title or f"loan {application_id}: where its money went (top paths into flagged sectors)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return str(path)


def render_cycle(hops: Sequence, path: str, *, cycle_id: str, title: str | None = None) -> str:
    """Draw one cycle: its accounts on a circle in the order the money visited them, each hop
    an arrow labelled with its order, time and amount. Returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    f = _hops_frame(hops)
    if not len(f):
        raise ValueError("a cycle needs at least one hop")
    accts = list(f["from_account_key"])
    n = len(accts)
    pos = {a: (math.cos(math.pi / 2 - 2 * math.pi * i / n), math.sin(math.pi / 2 - 2 * math.pi * i / n)) for i, a in enumerate(accts)}
    sector_of = {r.to_account_key: r.to_sector for r in f.itertuples()}
    fig = Figure(figsize=(6.5, 6.0), dpi=DPI)
    ax = fig.subplots()
    for a, (x, y) in pos.items():
        sec = sector_of.get(a, "personal")
        ax.scatter([x], [y], s=1100, c=SECTOR_COLOUR.get(sec, "#4c72b0"), zorder=3, edgecolors="black", linewidths=0.8)
        ax.text(x * 1.32, y * 1.32, f"{sec}\n{_short(a)}", ha="center", va="center", fontsize=7)
    for i, r in enumerate(f.itertuples(), start=1):
        (x0, y0), (x1, y1) = pos[r.from_account_key], pos[r.to_account_key]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=16, shrinkA=16, shrinkB=16,
                                     connectionstyle="arc3,rad=0.18", color="black", zorder=2))
        mx, my = (x0 + x1) / 2 * 0.72, (y0 + y1) / 2 * 0.72
        ax.text(mx, my, f"{i}. {_label(r.transfer_ts, r.amount)}", ha="center", va="center", fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    first, last = f.iloc[0], f.iloc[-1]
    hours = (pd.Timestamp(last.transfer_ts) - pd.Timestamp(first.transfer_ts)).total_seconds() / 3600
    ax.set_title(title or f"cycle {cycle_id}: {n} transfers, {first.amount:,.2f} out, {last.amount:,.2f} back after {hours:.0f} h",
                 fontsize=9)
    ax.set_xlim(-1.7, 1.7)
    ax.set_ylim(-1.7, 1.7)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return str(path)
