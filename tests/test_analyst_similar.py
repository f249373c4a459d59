"""`riskgraph similar`: an analyst's view of one application's media neighbours, blacklist
hits and gang, on a tiny hand-built world (real JPEGs, espeak-ng calls, texts) written with
the project's store exactly as the jobs write it."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from riskgraph import schemas as S
from riskgraph import tables as T
from riskgraph.analyst import (MissingTable, UnknownApplication, redact, select_gang_edges, select_neighbourhood_edges,
                               select_neighbours, similar_report, word_diff_html)
from riskgraph.config import load_config
from riskgraph.media import photos, voices
from riskgraph.store import choose_store

UTC = dt.timezone.utc
RUN_DATE = "2026-03-10"
BL_SAID = "same room as applications A001, A002, A005 (similarity >= 0.88)"


def _t(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, tzinfo=UTC)


# application -> time; A005 is the one an analyst looks at, A006 is in no gang
APPS = {"A001": _t(1), "A002": _t(2), "A003": _t(3), "A004": _t(4), "A005": _t(5), "A006": _t(6), "A007": _t(7)}
# A001's fraud was known before A005 applied; A002's default only after (but before the run date)
OUTCOMES = [("A001", "fraud_confirmed", _t(3)), ("A002", "default", _t(9)), ("A004", "good", _t(4))]
OWN_TEXT = "buy stock for my grocery shop before the holiday season, call me on +86 138 0013 8000"
COPY_TEXT = "buy goods for my grocery shop before the holiday season"


def _photo(decor_seed: int, place: str, kind: str, shot: int) -> bytes:
    scene = photos.render_scene(decor_seed, place, width=256, height=192)
    img, _ = photos.photograph(scene, np.random.default_rng([decor_seed, shot]), kind=kind, out_width=128, out_height=128)
    return photos.encode_jpeg(img, 85)


def _call(speaker_seed: int, shot: int) -> bytes:
    x = voices.synthesize_call(voices.speaker_from_seed(speaker_seed), "hello, I am calling about my loan application",
                               np.random.default_rng(shot), max_seconds=1.5)
    return voices.encode_wav(x, 8000)


@pytest.fixture(scope="module")
def media_bytes():
    """Real media, rendered once: photos of a back office (3 gang members), a shop, a chain
    store; two voices; three texts."""
    return {
        ("A001", "selfie"): _photo(11, "back_office", "selfie", 1),
        ("A002", "selfie"): _photo(11, "back_office", "selfie", 2),
        ("A003", "selfie"): _photo(33, "chain_store", "selfie", 3),
        ("A004", "premises"): _photo(22, "shop", "premises", 4),
        ("A005", "selfie"): _photo(11, "back_office", "selfie", 5),
        ("A005", "id_photo"): _photo(11, "back_office", "id_photo", 6),
        ("A005", "premises"): _photo(22, "shop", "premises", 7),
        ("A001", "call"): _call(5, 1),
        ("A002", "call"): _call(9, 2),
        ("A005", "call"): _call(5, 3),
        ("A001", "purpose"): COPY_TEXT.encode(),
        ("A004", "purpose"): b"tuition fee for my daughter abroad",
        ("A005", "purpose"): OWN_TEXT.encode(),
    }


def _key(data: bytes) -> str:
    return "m:" + hashlib.sha256(data).hexdigest()[:32]


def _write(spark, cfg, table, columns, rows, partitions_of):
    df = spark.createDataFrame(rows, S.struct(columns))
    parts = sorted({partitions_of(r) for r in rows})
    choose_store(spark, "delta-rs").write(df, table.uri(cfg), partition_col=table.partition_col, partitions=parts,
                                          run_id=f"test-{table.key}", description=table.description)


def build_world(spark, cfg, media_bytes) -> dict[tuple[str, str], str]:
    """bronze applications / outcomes / media, one graph/media_links snapshot, gangs and graph
    edges for RUN_DATE; returns {(application, kind): media key}."""
    root = Path(cfg.paths.root)
    day = lambda ts: ts.date().isoformat()  # noqa: E731
    _write(spark, cfg, T.BRONZE_APPLICATIONS, S.BRONZE_APPLICATIONS,
           [(a, f"P{a}", ts, "sme", 1000.0, 12, "app", 3000.0, "ACME", None, None, f"d-{a}", "10.0.0.1", None, None, None,
             None, day(ts)) for a, ts in APPS.items()], lambda r: r[-1])
    _write(spark, cfg, T.BRONZE_OUTCOMES, S.BRONZE_OUTCOMES, [(a, o, ts, day(ts)) for a, o, ts in OUTCOMES], lambda r: r[-1])
    keys, media_rows = {}, []
    for (a, kind), data in sorted(media_bytes.items()):
        modality = S.MEDIA_KINDS[kind]
        ext = {"background": "jpg", "voice": "wav", "text": "txt"}[modality]
        rel = f"raw/media/dt={day(APPS[a])}/{a}_{kind}.{ext}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        keys[(a, kind)] = k = _key(data)
        # texts by a relative uri (resolved against paths.root, as ingest_media allows), the rest absolute
        uri = rel if modality == "text" else str(root / rel)
        media_rows.append((k, a, None, kind, modality, uri, len(data), hashlib.sha256(data).hexdigest(),
                           {"jpg": "jpeg", "wav": "wav", "txt": "text"}[ext], 128 if ext == "jpg" else None,
                           128 if ext == "jpg" else None, 1.5 if ext == "wav" else None, 8000 if ext == "wav" else None,
                           len(data) if ext == "txt" else None, APPS[a], day(APPS[a])))
    _write(spark, cfg, T.BRONZE_MEDIA, S.BRONZE_MEDIA, media_rows, lambda r: r[-1])

    def link(a, kind, anchor, sim, *, hub=False, live=True):
        aa, ak = anchor
        m = S.MEDIA_KINDS[kind]
        return (a, APPS[a], m, keys[anchor], keys[(a, kind)], kind, aa, APPS[aa], sim, hub, live, 0, None, None, None, RUN_DATE)

    rows = [link(a, kind, (a, kind), 1.0, hub=(a == "A003"), live=(a != "A003")) for (a, kind) in sorted(keys)]
    rows += [
        link("A005", "selfie", ("A001", "selfie"), 0.91),
        link("A005", "id_photo", ("A001", "selfie"), 0.85),       # same anchor again, weaker: shown once
        link("A005", "selfie", ("A002", "selfie"), 0.88),
        link("A005", "premises", ("A004", "premises"), 0.80),
        link("A005", "selfie", ("A003", "selfie"), 0.77, live=False),  # a chain-store hub anchor
        link("A002", "selfie", ("A001", "selfie"), 0.90),          # another application's link: not shown
        link("A005", "call", ("A001", "call"), 0.93),
        link("A005", "call", ("A002", "call"), 0.71),
        link("A005", "purpose", ("A001", "purpose"), 0.95),
        ("A005", APPS["A005"], "blacklist", "BL-0042", keys[("A005", "call")], "call", None,
         dt.datetime(2026, 2, 1, tzinfo=UTC), 0.87, False, True, 0, None, None, "voice", RUN_DATE),
    ]
    _write(spark, cfg, T.MEDIA_LINKS, S.MEDIA_LINKS, rows, lambda r: r[-1])

    _write(spark, cfg, T.GANG_MEMBERS, S.GANG_MEMBERS,
           [(a, "g:A001", "c:A001", "component", RUN_DATE) for a in ("A001", "A002", "A005")], lambda r: r[-1])
    room = f"background:{keys[('A001', 'selfie')]}"
    evidence = json.dumps([
        {"value": room, "members": 3, "applications": ["A001", "A002", "A005"], "similarity": 0.88, "says": BL_SAID},
        {"value": "device:d-shared", "members": 2, "applications": ["A001", "A002"], "similarity": None, "says": None}])
    _write(spark, cfg, T.GANGS, S.GANGS,
           [("g:A001", "c:A001", "component", 3, 3, 2, 2 / 3, APPS["A001"], APPS["A005"], 9.6, 96.0, 0.03, 2, 3, 1.0, 7, 2, 2,
             "background,device", evidence, RUN_DATE)], lambda r: r[-1])
    edges = [("app:A001", "device:d-shared", "uses_device"), ("app:A002", "device:d-shared", "uses_device"),
             ("app:A005", "device:d-A005", "uses_device"),
             *[(f"app:{a}", room, "same_background") for a in ("A001", "A002", "A005")],
             ("app:A001", f"voice:{keys[('A001', 'call')]}", "same_voice"), ("app:A005", f"voice:{keys[('A001', 'call')]}", "same_voice"),
             ("app:A001", f"text:{keys[('A001', 'purpose')]}", "same_wording"),
             ("app:A005", f"text:{keys[('A001', 'purpose')]}", "same_wording"),
             ("app:A005", "blacklist:BL-0042", "hits_blacklist"),
             # A006: no gang; shares a device with A003 and a hub IP with everyone
             ("app:A003", "device:d-36", "uses_device"), ("app:A006", "device:d-36", "uses_device"),
             *[(f"app:{a}", "ip:10.0.0.1", "from_ip") for a in APPS]]
    _write(spark, cfg, T.EDGES, S.EDGES, [(s, d, r, APPS[s[4:]], RUN_DATE) for s, d, r in edges], lambda r: r[-1])
    _write(spark, cfg, T.SUPER_NODES, S.SUPER_NODES, [("ip:10.0.0.1", "ip", 7, 5, 3.2, "cap", RUN_DATE)], lambda r: r[-1])
    return keys


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory, media_bytes):
    """The tiny world, built once for the module (its ten Delta commits are most of the
    tests' time); the config is conftest's ``cfg_factory`` one, rooted in a module temp dir."""
    tmp = tmp_path_factory.mktemp("analyst")
    cfg = load_config("test", overrides={"paths.root": str(tmp / "root"), "paths.checkpoint_dir": str(tmp / "ckpt"),
                                         "mlflow.tracking_uri": f"sqlite:///{tmp}/mlflow.db",
                                         "mlflow.artifact_root": str(tmp / "mlflow-art")})
    return cfg, build_world(spark, cfg, media_bytes)


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def _png(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, f"{path} does not decode as an image"
    return img


def test_similar_report_end_to_end(spark, world, monkeypatch, capsys, tmp_path):
    from riskgraph import cli

    cfg, keys = world
    root = Path(cfg.paths.root)
    before = _files(root)

    # the CLI, as an analyst types it (the session factory is the test's session)
    monkeypatch.setattr("riskgraph.session.get_spark", lambda cfg: spark)
    argv = ["similar", "A005", "--run-date", RUN_DATE, "--k", "12", "--set", f"paths.root={root}"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.split()
    out = root / "reports" / "similar" / "A005"
    assert printed == [str(out / n) for n in ("backgrounds.png", "voices.png", "texts.html", "subgraph.png", "summary.md")]
    # nothing written outside the report folder, and no audio written at all
    assert {p for p in _files(root) - before if not p.startswith(str(out) + os.sep)} == set()
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(p).name for p in printed)

    # backgrounds: 3 own photos in row 1, 4 earlier photos (A001, A002, A004, hub A003) in row 2 -> 4 x 2 tiles
    bg = _png(str(out / "backgrounds.png"))
    assert abs(bg.shape[1] - 4 * 240) <= 2 and abs(bg.shape[0] - (2 * 280 + 30)) <= 2
    tile = bg[90:280, 20:220]  # the first own photo: a real picture, not a blank tile
    assert tile.std() > 20
    # voices: own call + 2 voice neighbours = 3 spectrogram rows
    vo = _png(str(out / "voices.png"))
    assert abs(vo.shape[1] - 900) <= 2 and abs(vo.shape[0] - round(100 * (0.4 + 1.6 * 3))) <= 2
    sg = _png(str(out / "subgraph.png"))
    assert sg.shape[:2] == (800, 1100)
    assert (np.abs(sg.astype(int) - [40, 39, 214]).sum(axis=2) < 30).any(), "a bad-known application node (red) is drawn"

    page = (out / "texts.html").read_text()
    assert "<del>stock</del> <ins>goods</ins>" in page and "0.950" in page and "bad known" in page
    assert "138 0013" not in page and "[phone]" in page  # the applicant's phone number is masked

    summary = (out / "summary.md").read_text()
    assert "entry BL-0042: voice blacklist, similarity 0.870, by its call" in summary
    assert "Gang g:A001" in summary and BL_SAID in summary and "device:d-shared links 2 members" in summary
    assert "| background | 3 | 0 | 4 (4) | 4 | 1 | 1 | 3 |" in summary  # A001 bad known; A002 only later; A003 a hub anchor
    assert "| voice | 1 | 0 | 2 (2) | 2 | 1 | 0 | 2 |" in summary

    # deterministic: the same tables give the same bytes in every file
    again = similar_report(spark, cfg, "A005", run_date=RUN_DATE, out_dir=str(tmp_path / "again"))
    assert {n: Path(p).read_bytes() for n, p in again.items()} == \
        {n: (out / Path(p).name).read_bytes() for n, p in again.items()}

    # the selection itself: one row per anchor, point-in-time bad-known, hub anchors flagged
    store = choose_store(spark, "delta-rs")
    links = store.read(spark, T.MEDIA_LINKS.uri(cfg))
    nb = select_neighbours(links, store.read(spark, T.BRONZE_MEDIA.uri(cfg)), store.read(spark, T.BRONZE_OUTCOMES.uri(cfg)),
                           "A005", k=3)
    bg_rows = nb[nb["type"] == "background"]
    assert list(bg_rows.anchor_application_id) == ["A001", "A002", "A004"]  # k=3 cuts the hub anchor A003 (0.77)
    assert list(bg_rows.similarity) == [0.91, 0.88, 0.80] and list(bg_rows.kind) == ["selfie", "selfie", "premises"]
    assert list(bg_rows.bad_known) == [True, False, False]
    assert list(bg_rows.value) == [keys[("A001", "selfie")], keys[("A002", "selfie")], keys[("A004", "premises")]]
    assert int(bg_rows.n_anchors.iloc[0]) == 4 and not bg_rows.anchor_hub.any() and bg_rows.links.all()


def test_no_gang_unknown_application_and_missing_links(spark, world, cfg_factory, tmp_path):
    cfg, keys = world
    store = choose_store(spark, "delta-rs")

    # A006: in no gang, no media -> a 1-hop neighbourhood without the hub IP, placeholders elsewhere
    edges = store.read(spark, T.EDGES.uri(cfg)).filter(f"run_date = '{RUN_DATE}'")
    hubs = store.read(spark, T.SUPER_NODES.uri(cfg))
    hood = select_neighbourhood_edges(edges, "A006", hubs=hubs)
    assert hood[["src", "dst"]].values.tolist() == [["app:A003", "device:d-36"], ["app:A006", "device:d-36"]]
    # the gang's view: values linking >= 2 members and members' blacklist hits; no hub IP, no lone device
    members = store.read(spark, T.GANG_MEMBERS.uri(cfg))
    gang = select_gang_edges(edges, members, "g:A001", hubs=hubs)
    assert sorted(set(gang.dst)) == sorted(["blacklist:BL-0042", "device:d-shared", f"background:{keys[('A001', 'selfie')]}",
                                            f"voice:{keys[('A001', 'call')]}", f"text:{keys[('A001', 'purpose')]}"])
    paths = similar_report(spark, cfg, "A006", out_dir=str(tmp_path / "a6"))
    summary = Path(paths["summary"]).read_text()
    assert f"In no gang as of {RUN_DATE}" in summary and "1-hop neighbourhood" in summary and "none before its time" in summary
    for name in ("backgrounds", "voices", "subgraph"):
        assert _png(paths[name]).shape[0] > 100

    with pytest.raises(UnknownApplication, match=r"unknown application id 'A999': not in bronze/applications as of 2026-03-10"):
        similar_report(spark, cfg, "A999", out_dir=str(tmp_path / "x"))
    with pytest.raises(UnknownApplication, match=r"landed on 2026-03-05, after run date 2026-03-01"):
        _early(spark, cfg, tmp_path)
    assert not (tmp_path / "x").exists()

    empty = cfg_factory(**{"paths.root": str(tmp_path / "empty")})
    with pytest.raises(MissingTable, match=r"run link_media \(riskgraph run\) with media sources in graph.sources"):
        similar_report(spark, empty, "A005")


def _early(spark, cfg, tmp_path):
    """A report for a run date before the application landed: the links snapshot of that date
    does not exist either, so write one (an empty day would be refused first)."""
    rows = [("A001", APPS["A001"], "background", "m:x", "m:x", "selfie", "A001", APPS["A001"], 1.0, False, True, 0, None, None,
             None, "2026-03-01")]
    df = spark.createDataFrame(rows, S.struct(S.MEDIA_LINKS))
    choose_store(spark, "delta-rs").write(df, T.MEDIA_LINKS.uri(cfg), partition_col=S.RUN_DATE, partitions=["2026-03-01"],
                                          run_id="test-early")
    return similar_report(spark, cfg, "A005", run_date="2026-03-01", out_dir=str(tmp_path / "x"))


def test_word_diff_marks_changed_words_and_escapes():
    assert word_diff_html("buy stock for my shop", "buy goods for my shop") == "buy <del>stock</del> <ins>goods</ins> for my shop"
    assert word_diff_html("a <b>", "a <b> c") == "a &lt;b&gt; <ins>c</ins>"
    assert word_diff_html("same words", "same words") == "same words"


def test_redact_masks_contacts_but_not_amounts():
    assert redact("mail me at li.wei@example.com or +86 138-0013-8000") == "mail me at [e-mail] or [phone]"
    assert redact("I need 1,200,000 yuan, 50000 for stock, term 12") == "I need 1,200,000 yuan, 50000 for stock, term 12"
