"""An analyst's view of one application in the multimodal network (issue 11): the earlier
photos, calls and texts it resembles, whether those applications' bad outcomes were known at
its time, its blacklist hits, and the gang (or neighbourhood) it sits in.

``riskgraph similar APPLICATION_ID`` (riskgraph/cli.py) and ``notebooks/investigate_gang.py``
call :func:`similar_report`, which writes five files into one folder:

* ``backgrounds.png``: the application's photos, then its nearest earlier photos;
* ``voices.png``: log-mel spectrograms of its call and the calls it sounds like;
* ``texts.html``: its loan purpose against its near copies, differing words marked;
* ``subgraph.png``: its gang (or 1-hop neighbourhood), media links drawn per modality;
* ``summary.md``: counts per modality, blacklist hits, gang evidence.

Two layers, as everywhere in riskgraph:

* **Selection** (``select_*``): Spark DataFrames in, small pandas out. Each filters by the
  application id (or gang id) in Spark before it collects, so what reaches the driver is one
  application's links (its items × ``similarity.<m>.search_k`` at most), ``k`` neighbours per
  modality, one gang's edges, or ``max_per_value`` applications per attribute value.
* **Rendering** (``render_*``): pandas rows and file bytes in, one file out; no Spark, no
  reads. Deterministic: the same inputs give the same bytes (fixed layout seed, no dates).

"Bad known" beside a neighbour means the neighbour application's first bad outcome (fraud or
default) became known *strictly before this application's time* (the point-in-time rule of
the features); in the subgraph it means known by the end of the run date (the gang table's
rule). Nothing rendered holds raw PII: bronze carries pseudonyms only, and free-text loan
purposes are passed through :func:`redact` (e-mail addresses, phone-like digit runs) before
they are shown. No audio is written out, only spectrogram pictures.
"""
from __future__ import annotations

import datetime as dt
import difflib
import html
import json
import math
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from riskgraph import link_sources as LS
from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.features.validation import require_columns

__all__ = [
    "AnalystError", "UnknownApplication", "MissingTable", "NO_MEDIA_LINKS", "REPORT_FILES",
    "select_application", "select_own_items", "select_neighbours", "select_blacklist_hits", "select_gang",
    "select_gang_edges", "select_neighbourhood_edges", "select_bad_known",
    "redact", "word_diff_html", "render_backgrounds", "render_voices", "render_texts", "render_subgraph",
    "render_summary", "similar_report", "default_out_dir",
]

NO_MEDIA_LINKS = "run link_media (riskgraph run) with media sources in graph.sources"
REPORT_FILES = {"backgrounds": "backgrounds.png", "voices": "voices.png", "texts": "texts.html",
                "subgraph": "subgraph.png", "summary": "summary.md"}
MAX_K = 100  # neighbours per modality: a picture of more than 100 thumbnails helps nobody
NEIGHBOURHOOD_PER_VALUE = 8  # other applications drawn per shared value when the application is in no gang
PHOTO_KINDS = tuple(k for k, m in S.MEDIA_KINDS.items() if m == "background")  # selfie, id_photo, premises
KIND_ORDER = {k: i for i, k in enumerate(S.MEDIA_KINDS)}
APP_PREFIX = "app:"
# Edge labels of the table link sources (media similarity and blacklist hits): drawn in their
# own colour and a dashed line; attribute links (device, phone, ...) grey and solid.
MEDIA_STYLE = {
    LS.relationship("background"): ("#2ca02c", "background"),
    LS.relationship("voice"): ("#9467bd", "voice"),
    LS.relationship("text"): ("#ff7f0e", "text"),
    LS.relationship("blacklist"): ("#000000", "blacklist"),
}
ATTRIBUTE_COLOUR = "#7f7f7f"
BAD_COLOUR, OK_COLOUR, HUB_COLOUR = "#d62728", "#1f77b4", "#ff9900"
TILE_IN = (2.4, 2.8)  # one thumbnail (width, height) in inches; at DPI it is 240 x 280 px
HEADER_IN = 0.3  # the figure title above the first row of thumbnails
DPI = 100


class AnalystError(RuntimeError):
    """The report cannot be made; the message says what to do."""


class UnknownApplication(AnalystError):
    """The application id is not in bronze/applications as of the run date."""


class MissingTable(AnalystError):
    """A table the report needs has not been written yet."""


# =============================================================================== selection
def select_application(apps: DataFrame, application_id: str) -> pd.DataFrame:
    """The application's bronze row(s): application_id, applicant_id, application_ts, product.
    Empty when the id is unknown. Needs apps(application_id, applicant_id, application_ts, product)."""
    require_columns(apps, ["application_id", "applicant_id", "application_ts", "product"], "select_application")
    # bounded: one id (bronze keeps one row per application id)
    return (apps.filter(F.col("application_id") == application_id)
            .select("application_id", "applicant_id", "application_ts", "product").limit(5).toPandas())


def select_own_items(media: DataFrame, links: DataFrame, application_id: str) -> pd.DataFrame:
    """The application's own media items with their hub flags.

    Needs media(media_key, application_id, kind, modality, uri, item_ts) (bronze/media) and
    links(application_id, type, value, media_key, is_hub, earlier_applicants) (one
    graph/media_links snapshot). Returns media_key, kind, modality, uri, item_ts, is_hub,
    earlier_applicants, ordered by modality then kind (selfie, id_photo, premises, call, purpose).
    """
    require_columns(media, ["media_key", "application_id", "kind", "modality", "uri", "item_ts"], "select_own_items(media)")
    require_columns(links, ["application_id", "type", "value", "media_key", "is_hub", "earlier_applicants"], "select_own_items(links)")
    mine = (media.filter(F.col("application_id") == application_id)
            .select("media_key", "kind", "modality", "uri", "item_ts").dropDuplicates(["media_key"]))
    own_rows = (links.filter((F.col("application_id") == application_id) & F.col("type").isin(*LS.MEDIA_MODALITIES)
                             & (F.col("value") == F.col("media_key")))
                .groupBy("media_key").agg(F.max(F.col("is_hub").cast("int")).alias("is_hub"),
                                          F.max("earlier_applicants").alias("earlier_applicants")))
    pdf = mine.join(own_rows, "media_key", "left").toPandas()  # bounded: one application's items
    pdf["is_hub"] = pdf["is_hub"].fillna(0).astype(bool)
    pdf["earlier_applicants"] = pdf["earlier_applicants"].fillna(0).astype(int)
    order = {m: i for i, m in enumerate(LS.MEDIA_MODALITIES)}
    pdf["_o"] = [(order.get(m, 9), KIND_ORDER.get(k, 9), key) for m, k, key in zip(pdf.modality, pdf.kind, pdf.media_key)]
    return pdf.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def select_neighbours(links: DataFrame, media: DataFrame, outcomes: DataFrame, application_id: str, *, k: int) -> pd.DataFrame:
    """The application's nearest earlier items: at most ``k`` per modality, best first.

    From one graph/media_links snapshot ``links``: its rows of type background / voice / text
    whose anchor is another application's item (the links to earlier items), one row per anchor
    (the best of its own items' matches). Then, by key lists of at most ``3 k`` entries: each
    anchor's kind and uri from bronze ``media``, whether the anchor item is itself a hub item
    (its own row in ``links``), and the anchor application's first bad outcome from
    ``outcomes(application_id, outcome, known_ts)``.

    Returns type, media_key (this application's matching item), kind, value (the anchor key),
    anchor_application_id, anchor_kind, anchor_uri, anchor_ts, ts (this application's time),
    similarity, is_hub (this item), anchor_hub, links (a live graph link), bad_known (the anchor
    application's bad outcome known strictly before ``ts``), bad_known_ts, rank (1 = nearest),
    n_anchors and n_anchor_apps (all earlier anchors of the type, before the cut at ``k``).
    """
    require_columns(links, ["application_id", "ts", "type", "value", "media_key", "kind", "anchor_application_id",
                            "anchor_ts", "similarity", "is_hub", "links"], "select_neighbours(links)")
    require_columns(media, ["media_key", "kind", "uri"], "select_neighbours(media)")
    require_columns(outcomes, ["application_id", "outcome", "known_ts"], "select_neighbours(outcomes)")
    if not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}, got {k}")
    earlier = links.filter((F.col("application_id") == application_id) & F.col("type").isin(*LS.MEDIA_MODALITIES)
                           & F.col("anchor_application_id").isNotNull() & (F.col("anchor_application_id") != application_id))
    per_anchor = Window.partitionBy("type", "value").orderBy(F.desc("similarity"), "media_key")
    per_type = Window.partitionBy("type").orderBy(F.desc("similarity"), "value")
    all_of_type = Window.partitionBy("type")
    top = (
        earlier.withColumn("_r", F.row_number().over(per_anchor)).filter(F.col("_r") == 1)
        .withColumn("n_anchors", F.count(F.lit(1)).over(all_of_type))
        .withColumn("n_anchor_apps", F.size(F.collect_set("anchor_application_id").over(all_of_type)))
        .withColumn("rank", F.row_number().over(per_type)).filter(F.col("rank") <= int(k))
        .select("type", "media_key", "kind", "value", "anchor_application_id", "anchor_ts", "ts", "similarity",
                "is_hub", "links", "rank", "n_anchors", "n_anchor_apps")
        .toPandas()  # bounded: k rows per modality
    )
    cols = ["type", "media_key", "kind", "value", "anchor_application_id", "anchor_kind", "anchor_uri", "anchor_ts", "ts",
            "similarity", "is_hub", "anchor_hub", "links", "bad_known", "bad_known_ts", "rank", "n_anchors", "n_anchor_apps"]
    if top.empty:
        return pd.DataFrame(columns=cols)
    keys, apps = sorted(set(top.value)), sorted(set(top.anchor_application_id))
    # bounded: the anchors picked above (<= 3 k keys), looked up by key lists
    anchor_media = (media.filter(F.col("media_key").isin(*keys)).select("media_key", "kind", "uri")
                    .dropDuplicates(["media_key"]).toPandas()
                    .rename(columns={"media_key": "value", "kind": "anchor_kind", "uri": "anchor_uri"}))
    anchor_hub = (links.filter(F.col("media_key").isin(*keys) & (F.col("value") == F.col("media_key")))
                  .groupBy(F.col("media_key").alias("value")).agg(F.max(F.col("is_hub").cast("int")).alias("anchor_hub"))
                  .toPandas())
    bad = (outcomes.filter(F.col("application_id").isin(*apps) & F.col("outcome").isin(*S.BAD_OUTCOMES))
           .groupBy(F.col("application_id").alias("anchor_application_id")).agg(F.min("known_ts").alias("bad_known_ts"))
           .toPandas())
    out = top.merge(anchor_media, on="value", how="left").merge(anchor_hub, on="value", how="left").merge(
        bad, on="anchor_application_id", how="left")
    out["anchor_hub"] = out["anchor_hub"].fillna(0).astype(bool)
    out["bad_known_ts"] = pd.to_datetime(out["bad_known_ts"])
    out["bad_known"] = out["bad_known_ts"].notna() & (out["bad_known_ts"] < out["ts"])
    order = {m: i for i, m in enumerate(LS.MEDIA_MODALITIES)}
    out["_o"] = out["type"].map(order)
    return out.sort_values(["_o", "rank"]).drop(columns="_o").reset_index(drop=True)[cols]


def select_blacklist_hits(links: DataFrame, application_id: str) -> pd.DataFrame:
    """The application's blacklist hits in one graph/media_links snapshot: entry_id,
    blacklist_kind (voice, background, device, phone), kind (its item or attribute that hit),
    media_key, similarity (1 for exact device/phone hits), added_ts, best first.
    Needs links(application_id, type, value, blacklist_kind, kind, media_key, similarity, anchor_ts)."""
    require_columns(links, ["application_id", "type", "value", "blacklist_kind", "kind", "media_key", "similarity",
                            "anchor_ts"], "select_blacklist_hits")
    return (links.filter((F.col("application_id") == application_id) & (F.col("type") == "blacklist"))
            .select(F.col("value").alias("entry_id"), "blacklist_kind", "kind", "media_key", "similarity",
                    F.col("anchor_ts").alias("added_ts"))
            .orderBy(F.desc("similarity"), "entry_id")
            .toPandas())  # bounded: one application's hits (its items x search_k + 2)


def select_gang(members: DataFrame, gangs: DataFrame, application_id: str) -> pd.DataFrame:
    """The gang holding the application (0 or 1 row of the gangs/summary columns) from one
    run date's gangs/members and gangs/summary. Needs members(application_id, gang_id), gangs(gang_id, ...)."""
    require_columns(members, ["application_id", "gang_id"], "select_gang(members)")
    require_columns(gangs, ["gang_id", "size", "evidence"], "select_gang(gangs)")
    mine = members.filter(F.col("application_id") == application_id).select("gang_id").distinct()
    return gangs.join(mine, "gang_id").orderBy("gang_id").limit(1).toPandas()  # bounded: one row


def select_gang_edges(edges: DataFrame, members: DataFrame, gang_id: str, *, hubs: DataFrame | None = None) -> pd.DataFrame:
    """The graph edges of the gang's members to values that link at least two of them (what
    ties them together) and to blacklist entries (a member's hit is worth seeing alone), hub
    values (``hubs(id)``, gangs/super_nodes) left out.
    Needs edges(src, dst, relationship, ts) of one run date and members(application_id, gang_id).
    Returns src, dst, relationship, ts (bounded by the gang's size x its members' values)."""
    require_columns(edges, ["src", "dst", "relationship", "ts"], "select_gang_edges(edges)")
    require_columns(members, ["application_id", "gang_id"], "select_gang_edges(members)")
    mine = members.filter(F.col("gang_id") == gang_id).select(F.concat(F.lit(APP_PREFIX), "application_id").alias("src"))
    e = edges.join(mine.distinct(), "src")
    if hubs is not None:
        e = e.join(hubs.select(F.col("id").alias("dst")), "dst", "left_anti")
    shared = Window.partitionBy("dst")
    blacklisted = F.col("relationship") == LS.relationship("blacklist")
    return (e.withColumn("_n", F.size(F.collect_set("src").over(shared))).filter((F.col("_n") >= 2) | blacklisted)
            .select("src", "dst", "relationship", "ts").orderBy("dst", "src").toPandas())


def select_neighbourhood_edges(edges: DataFrame, application_id: str, *, hubs: DataFrame | None = None,
                               max_per_value: int = 8) -> pd.DataFrame:
    """The application's 1-hop neighbourhood through non-hub values: its own edges, and for each
    of its values the (at most ``max_per_value``, earliest first) other applications using it.
    Hub values (``hubs(id)``, gangs/super_nodes) are left out; media hub items never became
    edges (link_media's ``links`` flag). Needs edges(src, dst, relationship, ts) of one run date.
    Returns src, dst, relationship, ts."""
    require_columns(edges, ["src", "dst", "relationship", "ts"], "select_neighbourhood_edges")
    own = edges.filter(F.col("src") == APP_PREFIX + application_id)
    if hubs is not None:
        own = own.join(hubs.select(F.col("id").alias("dst")), "dst", "left_anti")
    values = sorted(r["dst"] for r in own.select("dst").distinct().collect())  # bounded: one application's values
    if not values:
        return pd.DataFrame(columns=["src", "dst", "relationship", "ts"])
    earliest = Window.partitionBy("dst").orderBy("ts", "src")
    others = (edges.filter(F.col("dst").isin(*values) & (F.col("src") != APP_PREFIX + application_id))
              .withColumn("_r", F.row_number().over(earliest)).filter(F.col("_r") <= int(max_per_value)).drop("_r"))
    return (own.select("src", "dst", "relationship", "ts").unionByName(others.select("src", "dst", "relationship", "ts"))
            .orderBy("dst", "src").toPandas())  # bounded: values x (max_per_value + 1)


def select_bad_known(outcomes: DataFrame, application_ids, *, as_of) -> set[str]:
    """The applications among ``application_ids`` (a bounded list) whose bad outcome was known
    at or before ``as_of``. Needs outcomes(application_id, outcome, known_ts)."""
    require_columns(outcomes, ["application_id", "outcome", "known_ts"], "select_bad_known")
    ids = sorted(set(application_ids))
    if not ids:
        return set()
    rows = (outcomes.filter(F.col("application_id").isin(*ids) & F.col("outcome").isin(*S.BAD_OUTCOMES)
                            & (F.col("known_ts") <= F.lit(as_of)))
            .select("application_id").distinct().collect())  # bounded: <= len(ids)
    return {r["application_id"] for r in rows}


# =============================================================================== rendering
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# a run of >= 9 digits, optionally with +, spaces, dots, dashes or brackets between them: a
# phone number; loan amounts ("50,000", "1,200,000") stay below 9 digits
_PHONE = re.compile(r"\+?\d(?:[\s().-]?\d){8,}")


def redact(text: str) -> str:
    """Free text with e-mail addresses and phone-like numbers masked ([e-mail], [phone]): a loan
    purpose is typed by the applicant and can hold contact details."""
    return _PHONE.sub("[phone]", _EMAIL.sub("[e-mail]", text))


def word_diff_html(a: str, b: str) -> str:
    """HTML of ``b`` against ``a`` on word tokens (difflib): words only in ``a`` in ``<del>``,
    words only in ``b`` in ``<ins>``, the rest plain; every word HTML-escaped."""
    ta, tb = a.split(), b.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(ta[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(' '.join(ta[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(' '.join(tb[j1:j2]))}</ins>")
    return " ".join(out)


def _short(key: str | None, n: int = 10) -> str:
    return "-" if not key else (key if len(key) <= n + 2 else key[: n + 2] + "…")


def _neighbour_label(r) -> tuple[str, str]:
    """Label lines and colour of one neighbour: similarity, anchor application, bad known, hubs."""
    flags = [("bad known" if r.bad_known else "no bad known")]
    if r.is_hub:
        flags.append("HUB item")
    if r.anchor_hub:
        flags.append("hub anchor")
    if not (r.links or r.is_hub or r.anchor_hub):
        flags.append("not linked: far apart / no GPS / too old")  # similar, but evidence only (max_link_km, max_link_days)
    text = f"#{int(r.rank)} sim {r.similarity:.3f}  {r.anchor_application_id}\n{', '.join(flags)}\n" \
           f"{r.anchor_kind or '?'} ~ its {r.kind}"
    return text, (BAD_COLOUR if r.bad_known else "black")


def _figure(w_in: float, h_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w_in, h_in), dpi=DPI)


def _tile(ax, img, label: str, colour: str, *, hub: bool) -> None:
    if img is None:
        ax.set_facecolor("#dddddd")
        ax.text(0.5, 0.5, "file missing\nor undecodable", ha="center", va="center", fontsize=7, transform=ax.transAxes)
    else:
        ax.imshow(img, interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(label, fontsize=6.5, color=colour, loc="left")
    for s in ax.spines.values():
        s.set_edgecolor(HUB_COLOUR if hub else "#999999")
        s.set_linewidth(3 if hub else 0.5)


def render_backgrounds(own: pd.DataFrame, neighbours: pd.DataFrame, files: Mapping[str, bytes | None], path, *,
                       application_id: str, run_date: str, ncols: int = 4) -> str:
    """An image grid: the application's photos (own rows of kind selfie / id_photo / premises)
    in the first row, then its background neighbours (``select_neighbours`` rows of type
    background), each labelled with similarity, anchor application, bad known / no bad known,
    and hub flags (an orange frame). ``files`` maps media keys to bytes (None: missing).
    The PNG is ``ncols x 240`` by ``rows x 280 + 30`` pixels. Returns ``path``."""
    from riskgraph.media.photos import decode_image

    photos = own[own["kind"].isin(PHOTO_KINDS)] if len(own) else own
    nb = neighbours[neighbours["type"] == "background"] if len(neighbours) else neighbours
    ncols = max(int(ncols), len(photos), 1)
    nrows = 1 + max(1, math.ceil(len(nb) / ncols))
    height = nrows * TILE_IN[1] + HEADER_IN
    fig = _figure(ncols * TILE_IN[0], height)
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for i, r in enumerate(photos.itertuples()):
        ax = axes[0, i]
        ax.set_axis_on()
        hub = bool(r.is_hub)
        _tile(ax, _decode(decode_image, files.get(r.media_key)),
              f"this application: {r.kind}\n{_short(r.media_key)}" + ("\nHUB item (like many strangers')" if hub else ""),
              "black", hub=hub)
    if not len(photos):
        axes[0, 0].text(0, 0.5, "this application has no photos", fontsize=9, transform=axes[0, 0].transAxes)
    if not len(nb):
        axes[1, 0].text(0, 0.5, "no earlier photo above the background threshold", fontsize=9, transform=axes[1, 0].transAxes)
    for i, r in enumerate(nb.itertuples()):
        ax = axes[1 + i // ncols, i % ncols]
        ax.set_axis_on()
        label, colour = _neighbour_label(r)
        _tile(ax, _decode(decode_image, files.get(r.value)), label, colour, hub=bool(r.is_hub or r.anchor_hub))
    fig.suptitle(f"{application_id}: its photos (top row) and nearest earlier photos, graph/media_links {run_date}",
                 fontsize=9, x=0.01, y=1 - 0.05 / height, ha="left", va="top")
    # the tiles' three title lines need ~0.45 in above each row; the figure title HEADER_IN above that
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (HEADER_IN + 0.45) / height, wspace=0.05, hspace=0.22)
    fig.savefig(path, dpi=DPI)
    return str(path)


def _decode(fn, data):
    return None if data is None else fn(data)


def _log_mel_db(data: bytes | None):
    """(log-mel in dB (frames x 40), seconds) of WAV bytes, or None if undecodable."""
    from riskgraph.embedders.audio import LogMelConfig, log_mel
    from riskgraph.media.voices import decode_wav

    dec = None if data is None else decode_wav(data)
    if dec is None:
        return None
    x, sr = dec
    win = int(round(sr * 0.025))
    cfg = LogMelConfig(sample_rate=sr, n_fft=1 << (win - 1).bit_length(), fmax=min(3800.0, sr / 2 - 1))
    m = log_mel(x, cfg)
    if not len(m):
        return None
    return m * (10.0 / np.log(10.0)), len(x) / sr


def render_voices(own: pd.DataFrame, neighbours: pd.DataFrame, files: Mapping[str, bytes | None], path, *,
                  application_id: str, run_date: str) -> str:
    """Log-mel spectrograms (40 mel bands, 25 ms / 10 ms, dB): the application's call(s) first,
    then its voice neighbours, labelled like the photos. ``files`` maps media keys to WAV bytes.
    Nothing is written but the picture (no audio). Returns ``path``."""
    calls = own[own["modality"] == "voice"] if len(own) else own
    nb = neighbours[neighbours["type"] == "voice"] if len(neighbours) else neighbours
    rows = [(r.media_key, f"this application: {r.kind} {_short(r.media_key)}" + (" — HUB item" if r.is_hub else ""), "black")
            for r in calls.itertuples()]
    rows += [(r.value, _neighbour_label(r)[0].replace("\n", "  |  "), _neighbour_label(r)[1]) for r in nb.itertuples()]
    n = max(len(rows), 1)
    fig = _figure(9.0, 0.4 + 1.6 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    if not rows:
        axes[0].set_axis_off()
        axes[0].text(0, 0.5, "this application has no verification call", fontsize=10, transform=axes[0].transAxes)
    for ax, (key, label, colour) in zip(axes, rows):
        spec = _log_mel_db(files.get(key))
        if spec is None:
            ax.set_facecolor("#dddddd")
            ax.text(0.5, 0.5, "file missing or undecodable", ha="center", va="center", fontsize=8, transform=ax.transAxes)
        else:
            m, seconds = spec
            ax.imshow(m.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, m.shape[1]),
                      vmin=float(np.percentile(m, 5)), vmax=float(np.max(m)))
            ax.set_ylabel("mel band", fontsize=7)
        ax.set_title(label, fontsize=7, color=colour, loc="left")
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("seconds", fontsize=7)
    fig.suptitle(f"{application_id}: its call and the earlier calls in its voice links, graph/media_links {run_date}",
                 fontsize=9, x=0.01, ha="left")
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.6 / (0.4 + 1.6 * n), top=1 - 0.4 / (0.4 + 1.6 * n), hspace=0.6)
    fig.savefig(path, dpi=DPI)
    return str(path)


_HTML_STYLE = """body{font-family:sans-serif;max-width:60em;margin:1em auto;color:#222}
ins{background:#c8f7c5;text-decoration:none} del{background:#f7c5c5}
.own{background:#f4f4f4;padding:.5em;border-left:4px solid #888}
table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.4em;vertical-align:top;text-align:left}
.bad{color:#d62728;font-weight:bold} .hub{color:#c77700}"""


def render_texts(own: pd.DataFrame, neighbours: pd.DataFrame, texts: Mapping[str, str | None], path, *,
                 application_id: str, run_date: str) -> str:
    """An HTML page: the application's loan-purpose text(s), then each text neighbour with its
    similarity, anchor application, bad known, hub flags, and its words against the
    application's matching text (``<del>`` only in this application's, ``<ins>`` only in the
    neighbour's). ``texts`` maps media keys to decoded text (None: missing); every text passes
    :func:`redact` and is HTML-escaped. Returns ``path``."""
    mine = own[own["modality"] == "text"] if len(own) else own
    nb = neighbours[neighbours["type"] == "text"] if len(neighbours) else neighbours
    clean = {k: (redact(v) if v is not None else None) for k, v in texts.items()}
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>texts like {e(application_id)}</title>"
             f"<style>{_HTML_STYLE}</style></head><body>",
             f"<h1>Loan-purpose texts like {e(application_id)}'s</h1>",
             f"<p>graph/media_links {e(run_date)}; <del>struck</del> words are only in this application's text, "
             f"<ins>marked</ins> words only in the neighbour's. Bad known = the neighbour's bad outcome was known "
             f"before this application's time.</p>"]
    if not len(mine):
        parts.append("<p>This application has no loan-purpose text.</p>")
    for r in mine.itertuples():
        t = clean.get(r.media_key)
        parts.append(f"<h2>This application ({e(r.kind)}, {e(_short(r.media_key))})"
                     + (" <span class='hub'>HUB item</span>" if r.is_hub else "") + "</h2>"
                     + f"<p class='own'>{e(t) if t is not None else '<i>file missing or undecodable</i>'}</p>")
    if not len(nb):
        parts.append("<p>No earlier text above the text threshold.</p>")
    else:
        parts.append("<table><tr><th>#</th><th>similarity</th><th>application</th><th>known</th><th>differences</th></tr>")
        for r in nb.itertuples():
            a, b = clean.get(r.media_key), clean.get(r.value)
            diff = word_diff_html(a, b) if a is not None and b is not None else \
                (e(b) if b is not None else "<i>file missing or undecodable</i>")
            flags = (("<span class='bad'>bad known</span>" if r.bad_known else "no bad known")
                     + (" <span class='hub'>HUB item</span>" if r.is_hub else "") + (" <span class='hub'>hub anchor</span>" if r.anchor_hub else "")
                     + (" <span class='hub'>not linked: far apart / no GPS</span>" if not (r.links or r.is_hub or r.anchor_hub) else ""))
            parts.append(f"<tr><td>{int(r.rank)}</td><td>{r.similarity:.3f}</td><td>{e(str(r.anchor_application_id))}</td>"
                         f"<td>{flags}</td><td>{diff}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>\n")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
    return str(path)


def _vertex_type(v: str) -> str:
    return v.split(":", 1)[0]


def render_subgraph(edges: pd.DataFrame, bad_known: set[str], path, *, application_id: str, title: str) -> str:
    """The gang (or neighbourhood) as a picture: application nodes (circles, red = bad known,
    blue = none; the application itself ringed in black) and value nodes (squares, labelled
    with their type), attribute links grey and solid, media links dashed in one colour per
    modality (background, voice, text, blacklist). ``edges``: src ('app:<id>'), dst
    ('<type>:<value>'), relationship. Fixed layout seed: the same edges give the same picture.
    Returns ``path``."""
    import networkx as nx
    from matplotlib.lines import Line2D

    me = APP_PREFIX + application_id
    g = nx.Graph()
    nodes = sorted(set(edges["src"]) | set(edges["dst"]) | {me}) if len(edges) else [me]
    g.add_nodes_from(nodes)
    for r in edges.sort_values(["src", "dst"]).itertuples() if len(edges) else ():
        g.add_edge(r.src, r.dst, relationship=r.relationship)
    pos = nx.spring_layout(g, seed=7, k=1.2 / math.sqrt(max(len(g), 1)))
    fig = _figure(11.0, 8.0)
    ax = fig.subplots()
    apps = [n for n in g if n.startswith(APP_PREFIX)]
    vals = [n for n in g if not n.startswith(APP_PREFIX)]
    colours = [BAD_COLOUR if n[len(APP_PREFIX):] in bad_known else OK_COLOUR for n in apps]
    nx.draw_networkx_nodes(g, pos, nodelist=apps, node_color=colours, node_size=[260 if n == me else 120 for n in apps],
                           edgecolors=["black" if n == me else "none" for n in apps], linewidths=2.5, ax=ax)
    nx.draw_networkx_nodes(g, pos, nodelist=vals, node_color="#bbbbbb", node_shape="s", node_size=70, ax=ax)
    attr = [(u, v) for u, v, d in g.edges(data=True) if d["relationship"] not in MEDIA_STYLE]
    nx.draw_networkx_edges(g, pos, edgelist=attr, edge_color=ATTRIBUTE_COLOUR, style="solid", alpha=0.6, ax=ax)
    handles = [Line2D([], [], color=ATTRIBUTE_COLOUR, lw=1.5, label="attribute link (device, phone, ip, ...)")]
    for rel, (colour, name) in MEDIA_STYLE.items():
        el = [(u, v) for u, v, d in g.edges(data=True) if d["relationship"] == rel]
        if el:
            nx.draw_networkx_edges(g, pos, edgelist=el, edge_color=colour, style="dashed", width=1.8, ax=ax)
        handles.append(Line2D([], [], color=colour, lw=1.8, ls="--", label=f"{name} link ({rel})"))
    above = {n: (x, y + 0.035) for n, (x, y) in pos.items()}  # application ids just above their circles
    nx.draw_networkx_labels(g, above, {n: n[len(APP_PREFIX):] for n in apps}, font_size=7, verticalalignment="bottom", ax=ax)
    # values by their type only (an IP or a pseudonym helps nobody in a picture); blacklist
    # entries by their id, which the analyst looks up
    nx.draw_networkx_labels(g, pos, {n: n if _vertex_type(n) == "blacklist" else _vertex_type(n) for n in vals},
                            font_size=6, font_color="#444444",
                            verticalalignment="top", ax=ax)
    handles += [Line2D([], [], marker="o", ls="", color=BAD_COLOUR, label="application, bad known"),
                Line2D([], [], marker="o", ls="", color=OK_COLOUR, label="application, no bad known"),
                Line2D([], [], marker="s", ls="", color="#bbbbbb", label="shared value / media anchor")]
    # the legend sits in its own column right of the graph: it never hides a node
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.margins(0.06)
    ax.set_axis_off()
    if not len(edges):
        ax.text(0.5, 0.9, "no links in the graph snapshot", ha="center", transform=ax.transAxes)
    fig.subplots_adjust(left=0.01, right=0.76, bottom=0.01, top=0.95)
    fig.savefig(path, dpi=DPI)
    return str(path)


def _evidence_lines(evidence_json: str | None) -> list[str]:
    try:
        ev = json.loads(evidence_json) if evidence_json else []
    except ValueError:
        return []
    lines = []
    for e in ev:
        if e.get("says"):
            lines.append(f"{e['says']} ({e.get('members')} members)")
        else:
            lines.append(f"{e.get('value')} links {e.get('members')} members")
    return lines


def render_summary(app: Mapping, own: pd.DataFrame, neighbours: pd.DataFrame, blacklist: pd.DataFrame,
                   gang: Mapping | None, *, run_date: str, k: int, subgraph_note: str, files: Mapping[str, str]) -> str:
    """The report's Markdown: per modality the application's items, its earlier anchors (all,
    the k shown, bad known among those shown, hub items), its blacklist hits (entry id, kind,
    similarity), its gang with the evidence sentences ("says", else value and members)."""
    lines = [f"# {app['application_id']}: similar media as of {run_date}", "",
             f"Application time {app['application_ts']} UTC, product {app.get('product') or '-'}. "
             f"Neighbours are earlier items of other applications above the calibrated similarity threshold "
             f"(graph/media_links), at most {k} shown per modality; *bad known* = the neighbour's bad outcome was known before this application's time.", "",
             "## Per modality", "",
             "| modality | own items | own hub items | earlier items (applications) | shown | bad known among shown "
             "| hub anchors among shown | live links |",
             "|---|---|---|---|---|---|---|---|"]
    for m in LS.MEDIA_MODALITIES:
        o = own[own["modality"] == m] if len(own) else own
        nb = neighbours[neighbours["type"] == m] if len(neighbours) else neighbours
        n_all = int(nb["n_anchors"].iloc[0]) if len(nb) else 0
        n_apps = int(nb["n_anchor_apps"].iloc[0]) if len(nb) else 0
        lines.append(f"| {m} | {len(o)} | {int(o['is_hub'].sum()) if len(o) else 0} | {n_all} ({n_apps}) | {len(nb)} | "
                     f"{int(nb['bad_known'].sum()) if len(nb) else 0} | {int(nb['anchor_hub'].sum()) if len(nb) else 0} | "
                     f"{int(nb['links'].sum()) if len(nb) else 0} |")
    lines += ["", "## Blacklist hits", ""]
    if len(blacklist):
        for r in blacklist.itertuples():
            lines.append(f"- entry {r.entry_id}: {r.blacklist_kind} blacklist, similarity {r.similarity:.3f}, "
                         f"by its {r.kind}" + (f" ({_short(r.media_key)})" if r.media_key else "")
                         + f", entry added {r.added_ts}")
    else:
        lines.append("none before its time")
    lines += ["", "## Gang", ""]
    if gang is None:
        lines.append(f"In no gang as of {run_date}. {subgraph_note}")
    else:
        lines.append(f"Gang {gang['gang_id']}: {gang['size']} applications by {gang.get('n_applicants', '-')} applicants, "
                     f"{gang.get('n_bad_known', '-')} bad known by {run_date}; link types {gang.get('link_types') or '-'}. "
                     f"{subgraph_note}")
        ev = _evidence_lines(gang.get("evidence"))
        if ev:
            lines += ["", "Evidence:", *[f"- {s}" for s in ev]]
    lines += ["", "## Files", "", *[f"- {name}: `{Path(p).name}`" for name, p in files.items() if name != "summary"], ""]
    return "\n".join(lines)


# =============================================================================== wiring
def default_out_dir(cfg, application_id: str) -> str:
    """``<paths.root>/reports/similar/<application id>/`` (the id made folder-safe)."""
    root = cfg.paths.root
    if "://" in root and not root.startswith("file://"):
        raise AnalystError(f"paths.root is {root}: reports are written to a local folder, pass --out DIR")
    safe = re.sub(r"[^0-9A-Za-z._-]+", "_", application_id).strip("._") or "application"
    return str(Path(root.removeprefix("file://")) / "reports" / "similar" / safe)


def _read_files(uris: Mapping[str, str], base: str) -> dict[str, bytes | None]:
    from riskgraph.features.embeddings import read_media_bytes, resolve_uri

    return {key: read_media_bytes(resolve_uri(uri, base)) if isinstance(uri, str) and uri else None
            for key, uri in sorted(uris.items())}


def similar_report(spark: SparkSession, cfg, application_id: str, *, run_date: str | dt.date | None = None,
                   k: int = 12, out_dir: str | None = None, store=None) -> dict[str, str]:
    """Write the five report files for ``application_id`` into ``out_dir`` (default
    :func:`default_out_dir`) and return {name: path} (backgrounds, voices, texts, subgraph,
    summary). ``run_date``: the graph/media_links snapshot to read (default: its latest); the
    gang, graph edges and hub values of the same date are used when they exist. Reads at most
    the application's own files plus ``k`` neighbours' files per modality.

    Raises :class:`MissingTable` when graph/media_links or bronze/media is missing and
    :class:`UnknownApplication` when the id is not in bronze/applications as of the run date.
    """
    from riskgraph.store import choose_store

    if not 1 <= int(k) <= MAX_K:
        raise AnalystError(f"--k must be in 1..{MAX_K}, got {k}")
    store = store or choose_store(spark, cfg.store.backend)
    links_uri = T.MEDIA_LINKS.uri(cfg)
    if store.version(links_uri) is None:
        raise MissingTable(f"no graph/media_links table at {links_uri}: {NO_MEDIA_LINKS}")
    links_all = store.read(spark, links_uri)
    if run_date is None:
        run_date = links_all.agg(F.max(S.RUN_DATE)).first()[0]  # one value
        if run_date is None:
            raise MissingTable(f"graph/media_links at {links_uri} is empty: {NO_MEDIA_LINKS}")
        asked = False
    else:
        asked = True
    run_date = run_date.isoformat() if isinstance(run_date, dt.date) else str(run_date)
    links = links_all.filter(F.col(S.RUN_DATE) == run_date)
    if asked and not links.limit(1).count():
        latest = links_all.agg(F.max(S.RUN_DATE)).first()[0]
        raise AnalystError(f"graph/media_links has no snapshot for run date {run_date} (latest: {latest}); "
                           f"pass --run-date {latest}, or run link_media for {run_date}")

    apps_uri = T.BRONZE_APPLICATIONS.uri(cfg)
    if store.version(apps_uri) is None:
        raise MissingTable(f"no bronze/applications at {apps_uri}: run ingest first")
    apps_all = store.read(spark, apps_uri).filter(F.col("application_id") == application_id)
    app = select_application(apps_all.filter(F.col(S.DT) <= run_date), application_id)
    if app.empty:
        later = apps_all.select(S.DT).limit(1).collect()  # bounded: one row
        hint = (f"it landed on {later[0][S.DT]}, after run date {run_date}: pass a later --run-date" if later else
                "check the id (application ids are listed in gangs/members, the feature store and bronze/applications)")
        raise UnknownApplication(f"unknown application id {application_id!r}: not in bronze/applications as of {run_date}; {hint}")
    app_row = app.iloc[0].to_dict()

    media_uri = T.BRONZE_MEDIA.uri(cfg)
    if store.version(media_uri) is None:
        raise MissingTable(f"no bronze/media at {media_uri}: run ingest_media (riskgraph run) with simulation.media or landed media")
    media = store.read(spark, media_uri).filter(F.col(S.DT) <= run_date)
    out_uri = T.BRONZE_OUTCOMES.uri(cfg)
    outcomes = (store.read(spark, out_uri).filter(F.col(S.DT) <= run_date) if store.version(out_uri) is not None
                else spark.createDataFrame([], S.struct(S.BRONZE_OUTCOMES)))

    own = select_own_items(media, links, application_id)
    neighbours = select_neighbours(links, media, outcomes, application_id, k=k)
    blacklist = select_blacklist_hits(links, application_id)

    def snap(table):
        return (store.read(spark, table.uri(cfg)).filter(F.col(S.RUN_DATE) == run_date)
                if store.version(table.uri(cfg)) is not None else None)

    members, gangs, edges, hubs = snap(T.GANG_MEMBERS), snap(T.GANGS), snap(T.EDGES), snap(T.SUPER_NODES)
    gang_pdf = select_gang(members, gangs, application_id) if members is not None and gangs is not None else pd.DataFrame()
    gang = gang_pdf.iloc[0].to_dict() if len(gang_pdf) else None
    if edges is None:
        sub_edges = pd.DataFrame(columns=["src", "dst", "relationship", "ts"])
        note, title = f"No graph/edges snapshot for {run_date}: run build_graph.", f"{application_id}: no graph snapshot"
    elif gang is not None:
        sub_edges = select_gang_edges(edges, members, gang["gang_id"], hubs=hubs)
        note = "subgraph.png shows the gang's members, the values linking at least two of them and their blacklist hits."
        title = f"gang {gang['gang_id']} as of {run_date}: {gang['size']} applications (bad known = by the end of {run_date})"
    else:
        sub_edges = select_neighbourhood_edges(edges, application_id, hubs=hubs, max_per_value=NEIGHBOURHOOD_PER_VALUE)
        note = (f"subgraph.png shows its 1-hop neighbourhood through non-hub values (at most {NEIGHBOURHOOD_PER_VALUE} "
                f"other applications per value).")
        title = f"{application_id}: in no gang as of {run_date}; its 1-hop neighbourhood (bad known = by the end of {run_date})"
    as_of = dt.datetime.combine(dt.date.fromisoformat(run_date) + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    sub_apps = {s[len(APP_PREFIX):] for s in sub_edges["src"]} | {application_id}
    bad = select_bad_known(outcomes, sub_apps, as_of=as_of)

    # at most: own items + k anchors per modality, read on the driver
    uris = {r.media_key: r.uri for r in own.itertuples()}
    uris |= {r.value: r.anchor_uri for r in neighbours.itertuples()}
    files = _read_files(uris, cfg.paths.root)
    from riskgraph.embedders.text import decode_text

    text_keys = set(own.loc[own["modality"] == "text", "media_key"]) | set(neighbours.loc[neighbours["type"] == "text", "value"])
    texts = {key: (decode_text(b) if b is not None else None) for key, b in files.items() if key in text_keys}

    out = Path(out_dir or default_out_dir(cfg, application_id))
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: str(out / fname) for name, fname in REPORT_FILES.items()}
    render_backgrounds(own, neighbours, files, paths["backgrounds"], application_id=application_id, run_date=run_date)
    render_voices(own, neighbours, files, paths["voices"], application_id=application_id, run_date=run_date)
    render_texts(own, neighbours, texts, paths["texts"], application_id=application_id, run_date=run_date)
    render_subgraph(sub_edges, bad, paths["subgraph"], application_id=application_id, title=title)
    md = render_summary(app_row, own, neighbours, blacklist, gang, run_date=run_date, k=k, subgraph_note=note, files=paths)
    Path(paths["summary"]).write_text(md, encoding="utf-8")
    return paths
