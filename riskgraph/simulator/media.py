"""The media layer: selfies, ID photos, business premises, verification calls, loan purposes
and blacklists, written as files beside the landing CSVs (docs/media.md).

Draws only from its own sub-seeded generator (``layer_rng(seed, "media")``), after the base
world is written: turning it on or off leaves every other file byte-identical.

Who is photographed where (the first source article's "same room behind many selfies"):

* honest applicants at home (a household shares its home), at work (colleagues share their
  employer's room), in a bank-branch lobby, or in one of a few very popular chain stores whose
  decor is the same in every city: a hub of strangers, like a carrier NAT IP;
* gang members mostly in one of their intermediary's 1..``gang_rooms_max`` back-office rooms;
  the intermediary answers most of the gang's verification calls itself and writes most of its
  members' loan purposes from one template with small edits. An intermediary serves one or two
  gangs over the year, so a blacklisted voice or room catches its next gang.

Bad media (``defect_rate`` of items per kind, recorded in ``truth/media_defects.parquet``) are
planted so the media ingest's quarantine is exercised: missing file, zero bytes, truncated,
wrong kind, too small, silent, too short and duplicate content.
"""
from __future__ import annotations

import datetime as dt
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from riskgraph.simulator.layers import LayerContext, layer_rng

log = logging.getLogger("riskgraph.simulator.media")

PHOTO_KINDS = ("selfie", "id_photo", "premises")
EXT = {"selfie": "jpg", "id_photo": "jpg", "premises": "jpg", "call": "wav", "purpose": "txt"}
MEDIA_DEFECTS = {  # defect -> media kinds it is planted on
    "missing_file": ("selfie", "call", "purpose"),
    "zero_bytes": ("selfie", "call"),
    "truncated": ("selfie", "call"),
    "wrong_kind": ("selfie",),
    "too_small": ("selfie",),
    "silent_audio": ("call",),
    "too_short_audio": ("call",),
    "duplicate_content": ("id_photo",),
}
GANG_ROOM_P = 0.85  # a gang member photographed in one of the intermediary's rooms (else at home)
ID_SAME_PLACE_P = 0.7  # the ID photo is taken where the selfie was (else at home)
GANG_PREMISES_IN_ROOM_P = 0.5  # a gang's "business premises" shot in the back office
INTERMEDIARY_GANGS = 0.6  # intermediaries per gang: some serve two gangs over the year
BLACKLIST_DELAY_DAYS = (1, 10)  # an intermediary is blacklisted this long after its first confirmed fraud
BLACKLIST_NOISE_SHARE = 0.25  # entries about people outside this world (other lenders' shared list)
JPEG_QUALITY = (35, 90)


# ---------------------------------------------------------------- rendering (worker processes)
def _render_photo_chunk(args: tuple) -> list[tuple[str, int]]:
    """Render and write one place's photos: (decor_seed, place_kind, size, [(path, photo_kind, seed, quality, small)])."""
    from riskgraph.media import photos

    decor_seed, place_kind, size, jobs = args
    scene = photos.render_scene(decor_seed, place_kind)
    out = []
    for path, photo_kind, seed, quality, small in jobs:
        img, _ = photos.photograph(scene, np.random.default_rng(seed), kind=photo_kind,
                                   out_width=40 if small else size, out_height=40 if small else size)
        data = photos.encode_jpeg(img, quality)
        Path(path).write_bytes(data)
        out.append((path, len(data)))
    return out


def _render_call_chunk(args: tuple) -> list[tuple[str, int]]:
    """Render and write calls: (sample_rate, seconds, [(path, speaker_seed, seed, variant)])."""
    from riskgraph.media import voices

    sample_rate, seconds, jobs = args
    out = []
    for path, speaker_seed, seed, variant in jobs:
        rng = np.random.default_rng(seed)
        if variant == "silent_audio":
            samples = (rng.normal(0, 2.0, int(seconds * sample_rate))).astype(np.int16)  # ~ -84 dBFS hiss
        else:
            speaker = voices.speaker_from_seed(speaker_seed)
            text = voices.call_script(rng)
            secs = 0.5 if variant == "too_short_audio" else seconds
            samples = voices.synthesize_call(speaker, text, rng, sample_rate=sample_rate, max_seconds=secs)
            if variant == "too_short_audio":
                samples = samples[: int(0.5 * sample_rate)]
        data = voices.encode_wav(samples, sample_rate)
        Path(path).write_bytes(data)
        out.append((path, len(data)))
    return out


def _pool_map(fn, tasks: list, workers: int, what: str) -> list:
    """Run ``fn`` over ``tasks`` in ``workers`` processes (results in task order), with progress."""
    t0, done, out = time.perf_counter(), 0, []
    total = sum(len(t[-1]) for t in tasks)
    step = max(total // 10, 1)
    next_log = step
    if workers <= 1 or len(tasks) <= 1:
        results = map(fn, tasks)
        pool = None
    else:
        # fork: the workers only render (numpy, OpenCV, espeak-ng/sox subprocesses) and inherit
        # the imported modules instead of re-importing the caller's main module (spawn would).
        pool = mp.get_context("fork").Pool(workers)
        results = pool.imap(fn, tasks, chunksize=1)
    try:
        for r in results:
            out.append(r)
            done += len(r)
            if done >= next_log:
                log.info("  %s: %d/%d (%.0f s)", what, done, total, time.perf_counter() - t0)
                next_log += step
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return out


# ---------------------------------------------------------------- the layer
def _day_str(cal, day: int) -> str:
    return cal.date_str(int(day))


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def simulate_media(ctx: LayerContext) -> dict:
    """Write raw/media, raw/media_refs, raw/blacklists and truth/media*.parquet; return a summary.

    ``ctx`` is the simulator's LayerContext: the written base world, its calendar, and for each
    application the landing day of its clean raw row (applications whose raw row was defective
    were never booked and get no media).
    """
    sim, m = ctx.sim, ctx.sim.media
    if not m.enabled:
        return {"enabled": False}
    t0 = time.perf_counter()
    rng = layer_rng(sim.seed, "media")
    w, cal, root = ctx.world, ctx.calendar, Path(ctx.root)
    n = len(w.ts)
    land = np.where(ctx.applications.booked, ctx.applications.day, -1)  # defective rows were never booked
    from_s = 0 if m.from_date is None else (m.from_date - dt.date(1970, 1, 1)).days * 86_400
    apps = np.flatnonzero((land >= 0) & (w.ts >= from_s))
    n_gangs = int(w.n_gangs)
    n_people = len(w.person_rank)

    # ---- who: intermediaries (rooms, voice, template) per gang; places per person
    n_int = max(1, int(np.ceil(INTERMEDIARY_GANGS * max(n_gangs, 1))))
    gang_int = rng.integers(0, n_int, max(n_gangs, 1))
    int_rooms = rng.integers(1, m.gang_rooms_max + 1, n_int)
    int_room_first = np.concatenate([[0], np.cumsum(int_rooms)[:-1]])
    room_seed = rng.integers(0, 2**62, int(int_rooms.sum()))
    int_voice_seed = 5_000_000 + np.arange(n_int)  # speaker seeds; applicants' are 10_000_000 + person
    int_template_seed = rng.integers(0, 2**31, n_int)
    home_seed = rng.integers(0, 2**62, n_people)  # indexed by the household's head person
    shop_seed = rng.integers(0, 2**62, n_people)
    n_emp = int(w.employer.max()) + 1 if n else 0
    work_seed = rng.integers(0, 2**62, max(n_emp, 1))
    chain_seed = rng.integers(0, 2**62, m.n_chain_stores)
    lobby_seed = rng.integers(0, 2**62, m.n_lobbies)
    household = w.person_household  # head person of each person's household (itself when alone)

    k = len(apps)
    person = w.person[apps]
    gang = w.gang[apps]
    is_g = gang >= 0
    u = rng.random(k)
    honest_place = np.where(u < m.chain_store_share, 1,
                    np.where(u < m.chain_store_share + m.lobby_share, 2,
                    np.where((u < m.chain_store_share + m.lobby_share + m.workplace_share) & (w.employer[apps] >= 0), 3, 0)))
    chain_pick = rng.integers(0, m.n_chain_stores, k)
    lobby_pick = rng.integers(0, m.n_lobbies, k)
    gi = np.where(is_g, gang_int[np.maximum(gang, 0)], 0)
    room_pick = int_room_first[gi] + np.floor(rng.random(k) * int_rooms[gi]).astype(np.int64)
    in_room = is_g & (rng.random(k) < GANG_ROOM_P)
    id_same = rng.random(k) < ID_SAME_PLACE_P
    prem_room = is_g & (rng.random(k) < GANG_PREMISES_IN_ROOM_P)
    gang_voice = is_g & (rng.random(k) < m.gang_voice_share)
    gang_text = is_g & (rng.random(k) < m.gang_template_share)
    item_seed = rng.integers(0, 2**62, (k, 5))
    quality = rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (k, 3))

    # place of a photo: (kind, key) -> decor seed; keys are stable names for the truth
    def place_of(i: int, where: int) -> tuple[str, str, int]:
        a = apps[i]
        if where == 4:
            r = int(room_pick[i])
            return "back_office", f"room{r}", int(room_seed[r])
        if where == 1:
            c = int(chain_pick[i])
            return "chain_store", f"chain{c}", int(chain_seed[c])
        if where == 2:
            c = int(lobby_pick[i])
            return "lobby", f"lobby{c}", int(lobby_seed[c])
        if where == 3:
            e = int(w.employer[a])
            return "workplace", f"work{e}", int(work_seed[e])
        h = int(household[w.person[a]])
        return "home", f"home{h}", int(home_seed[h])

    # ---- plan every item (application, kind, file, place/speaker/template)
    items = []  # dicts, one per media item
    for i in range(k):
        a = int(apps[i])
        app_id = f"A{a + 1:08d}"
        day = int(land[a])
        d = _day_str(cal, day)
        selfie_where = 4 if in_room[i] else int(honest_place[i]) if not is_g[i] else 0
        id_where = selfie_where if id_same[i] else 0
        plan = [("selfie", selfie_where), ("id_photo", id_where)]
        if int(w.product[a]) == 2:  # sme: business premises
            plan.append(("premises", 4 if prem_room[i] else -1))
        for j, (kind, where) in enumerate(plan):
            if where == -1:
                pk, key, seed = "shop", f"shop{int(w.person[a])}", int(shop_seed[w.person[a]])
            else:
                pk, key, seed = place_of(i, where)
            items.append(dict(application_id=app_id, app=a, day=d, kind=kind, place_kind=pk, place_id=key,
                              decor_seed=seed, seed=int(item_seed[i, j]), quality=int(quality[i, j]),
                              speaker_id=None, template_id=None))
        spk = int(int_voice_seed[gi[i]]) if gang_voice[i] else 10_000_000 + int(w.person[a])
        items.append(dict(application_id=app_id, app=a, day=d, kind="call", place_kind=None, place_id=None,
                          decor_seed=None, seed=int(item_seed[i, 3]), quality=None,
                          speaker_id=(f"int{gi[i]}" if gang_voice[i] else f"person{int(w.person[a])}"),
                          speaker_seed=spk, template_id=None))
        items.append(dict(application_id=app_id, app=a, day=d, kind="purpose", place_kind=None, place_id=None,
                          decor_seed=None, seed=int(item_seed[i, 4]), quality=None, speaker_id=None,
                          template_id=(f"int{gi[i]}" if gang_text[i] else None),
                          template_seed=(int(int_template_seed[gi[i]]) if gang_text[i] else None)))

    # ---- bad items: disjoint picks per defect kind (applications' items only)
    defect = [None] * len(items)
    selfie_of = {it["application_id"]: j for j, it in enumerate(items) if it["kind"] == "selfie"}
    order = rng.permutation(len(items))
    for kind, kinds in MEDIA_DEFECTS.items():  # duplicate_content last: it copies a clean selfie
        want = max(1, int(round(m.defect_rate * len(items) / 5))) if m.defect_rate > 0 and len(items) >= 500 else 0
        got = 0
        for idx in order:
            if got >= want:
                break
            if defect[idx] is not None or items[idx]["kind"] not in kinds:
                continue
            if kind == "duplicate_content" and defect[selfie_of[items[idx]["application_id"]]] is not None:
                continue
            defect[idx] = kind
            got += 1
    for it, dfc in zip(items, defect):
        it["defect"] = dfc
        it["path"] = str((root / "raw" / "media" / f"dt={it['day']}" / f"{it['application_id']}_{it['kind']}.{EXT[it['kind']]}").resolve())

    # ---- blacklists: intermediaries found out after their first confirmed fraud
    bl = _plan_blacklists(rng, ctx, m, gang_int, n_int, int_room_first, int_rooms, room_seed, int_voice_seed, root, cal)

    # ---- write files
    for d in sorted({it["day"] for it in items} | {b["day"] for b in bl if b.get("path")}):
        (root / "raw" / "media" / f"dt={d}").mkdir(parents=True, exist_ok=True)
    (root / "raw" / "media").mkdir(parents=True, exist_ok=True)
    _write_photos(items, bl, m)
    _write_calls(items, bl, m)
    _write_texts(items, rng)
    _apply_defects(items)
    refs = _write_refs(items, root, cal)
    _write_blacklists(bl, root, cal)
    _write_truth(items, bl, root)
    counts = {kind: sum(1 for it in items if it["kind"] == kind) for kind in EXT}
    defects = {kind: sum(1 for it in items if it["defect"] == kind) for kind in MEDIA_DEFECTS}
    secs = round(time.perf_counter() - t0, 1)
    log.info("media: %d items for %d applications, %d blacklist entries in %.1f s", len(items), k, len(bl), secs)
    return {"enabled": True, "applications_with_media": k, "items": counts, "refs": refs, "defects": defects,
            "blacklist_entries": {kind: sum(1 for b in bl if b["kind"] == kind) for kind in ("voice", "background", "device", "phone")},
            "intermediaries": n_int, "seconds": secs}


def _plan_blacklists(rng, ctx, m, gang_int, n_int, int_room_first, int_rooms, room_seed, int_voice_seed, root, cal) -> list[dict]:
    """Blacklist entries: for ``blacklist_share`` of intermediaries, their voice, one room, one
    device and one phone, added a few days after the first fraud of their gangs became known;
    plus entries about people outside this world (a shared industry list)."""
    w = ctx.world
    fraud = 0  # index of fraud_confirmed in OUTCOMES
    out = []
    listed = np.flatnonzero(rng.random(n_int) < m.blacklist_share)
    end_s = cal.end_s
    g_apps = np.flatnonzero(w.gang >= 0)
    app_int = gang_int[w.gang[g_apps]]
    for it in listed.tolist():
        mine = g_apps[app_int == it]
        frauds = mine[w.outcome[mine] == fraud]
        if len(frauds) == 0:
            continue
        added = int(w.known_ts[frauds].min()) + int(rng.integers(BLACKLIST_DELAY_DAYS[0] * 86_400, BLACKLIST_DELAY_DAYS[1] * 86_400))
        if added > end_s:
            continue
        r = int(int_room_first[it] + rng.integers(0, int_rooms[it]))
        out.append(dict(kind="voice", ts=added, intermediary=f"int{it}", speaker_seed=int(int_voice_seed[it]), seed=int(rng.integers(0, 2**62))))
        out.append(dict(kind="background", ts=added, intermediary=f"int{it}", place_id=f"room{r}", decor_seed=int(room_seed[r]),
                        seed=int(rng.integers(0, 2**62)), quality=int(rng.integers(*JPEG_QUALITY))))
        devs = w.device[mine][w.device[mine] >= 0]
        if len(devs):
            out.append(dict(kind="device", ts=added, intermediary=f"int{it}", value=str(w.device_ids[int(rng.choice(devs))])))
        out.append(dict(kind="phone", ts=added, intermediary=f"int{it}", value=str(int(w.phone[int(rng.choice(mine))]))))
    n_noise = int(round(len(out) * BLACKLIST_NOISE_SHARE / (1 - BLACKLIST_NOISE_SHARE)))
    start_s = int(cal.epoch0)
    for j in range(n_noise):
        kind = ("voice", "background", "device", "phone")[j % 4]
        ts = int(rng.integers(start_s, end_s))
        e = dict(kind=kind, ts=ts, intermediary=None)
        if kind == "voice":
            e.update(speaker_seed=7_000_000 + j, seed=int(rng.integers(0, 2**62)))
        elif kind == "background":
            e.update(place_id=f"outside{j}", decor_seed=int(rng.integers(0, 2**62)), seed=int(rng.integers(0, 2**62)),
                     quality=int(rng.integers(*JPEG_QUALITY)))
        elif kind == "device":
            b = rng.integers(0, 256, 16, dtype=np.uint8)
            h = bytes(b).hex()
            e.update(value=f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        else:
            e.update(value=f"199{int(rng.integers(0, 10**8)):08d}")
        out.append(e)
    out.sort(key=lambda e: (e["ts"], e["kind"], e.get("intermediary") or "", e.get("value") or ""))
    for i, e in enumerate(out):
        e["entry_id"] = f"BL{i + 1:06d}"
        e["day"] = cal.date_str(int((e["ts"] - cal.epoch0) // 86_400))
        if e["kind"] in ("voice", "background"):
            ext = "wav" if e["kind"] == "voice" else "jpg"
            e["path"] = str((root / "raw" / "media" / f"dt={e['day']}" / f"{e['entry_id']}_blacklist_{e['kind']}.{ext}").resolve())
    return out


def _write_photos(items: list[dict], bl: list[dict], m) -> None:
    by_place: dict[tuple, list] = {}
    for it in items:
        if it["kind"] in PHOTO_KINDS and it["defect"] not in ("missing_file", "wrong_kind"):
            by_place.setdefault((it["decor_seed"], it["place_kind"]), []).append(
                (it["path"], it["kind"], it["seed"], it["quality"], it["defect"] == "too_small"))
    for e in bl:
        if e["kind"] == "background":
            by_place.setdefault((e["decor_seed"], "back_office"), []).append((e["path"], "selfie", e["seed"], e["quality"], False))
    tasks = [(seed, kind, m.photo_size, jobs) for (seed, kind), jobs in sorted(by_place.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    _pool_map(_render_photo_chunk, tasks, m.workers, "photos")


def _write_calls(items: list[dict], bl: list[dict], m, chunk: int = 64) -> None:
    jobs = [(it["path"], it["speaker_seed"], it["seed"], it["defect"]) for it in items
            if it["kind"] == "call" and it["defect"] != "missing_file"]
    jobs += [(e["path"], e["speaker_seed"], e["seed"], None) for e in bl if e["kind"] == "voice"]
    tasks = [(8000, m.call_seconds, jobs[i:i + chunk]) for i in range(0, len(jobs), chunk)]
    _pool_map(_render_call_chunk, tasks, m.workers, "calls")


def _write_texts(items: list[dict], rng) -> None:
    from riskgraph.media import texts

    templates: dict[int, str] = {}
    for it in items:
        if it["kind"] != "purpose":
            continue
        r = np.random.default_rng(it["seed"])
        if it["template_seed"] is not None:
            tpl = templates.setdefault(it["template_seed"], texts.template_from_seed(it["template_seed"]))
            text = texts.coached_text(tpl, r)
        else:
            text = texts.honest_text(r)
        it["text_len"] = len(text)
        if it["defect"] != "missing_file":
            Path(it["path"]).write_text(text, encoding="utf-8")


def _apply_defects(items: list[dict]) -> None:
    """Spoil the planted bad items' files (the good ones are already written)."""
    by_app: dict[str, dict] = {}
    for it in items:
        by_app.setdefault(it["application_id"], {})[it["kind"]] = it
    for it in items:
        d, p = it["defect"], Path(it["path"])
        if d == "zero_bytes":
            p.write_bytes(b"")
        elif d == "truncated":
            data = p.read_bytes()
            p.write_bytes(data[: max(len(data) * 6 // 10, 1)])
        elif d == "wrong_kind":  # a call recording uploaded as the selfie
            from riskgraph.media import voices
            p.write_bytes(voices.encode_wav(np.zeros(8000, dtype=np.int16) + 1000, 8000))
        elif d == "duplicate_content":  # the selfie's bytes uploaded again as the ID photo
            p.write_bytes(Path(by_app[it["application_id"]]["selfie"]["path"]).read_bytes())


def _write_csv_by_day(root: Path, table: str, header: list[str], rows_by_day: dict[str, list[list[str]]], cal) -> int:
    """One CSV per calendar day (header only when nothing landed), like the other landing tables."""
    import csv
    import io

    n = 0
    for day in range(cal.n_days):
        d = cal.date_str(day)
        out = root / "raw" / table / f"dt={d}"
        out.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(header)
        for r in rows_by_day.get(d, []):
            wr.writerow(r)
            n += 1
        (out / "part-00000.csv").write_text(buf.getvalue(), encoding="utf-8")
    return n


def _write_refs(items: list[dict], root: Path, cal) -> int:
    rows: dict[str, list[list[str]]] = {}
    for it in items:
        rows.setdefault(it["day"], []).append([it["application_id"], it["kind"], it["path"]])
    return _write_csv_by_day(root, "media_refs", ["application_id", "kind", "uri"], rows, cal)


def _write_blacklists(bl: list[dict], root: Path, cal) -> int:
    rows: dict[str, list[list[str]]] = {}
    for e in bl:
        rows.setdefault(e["day"], []).append([e["entry_id"], e["kind"], e.get("value", ""), e.get("path", ""), _iso(e["ts"])])
    return _write_csv_by_day(root, "blacklists", ["entry_id", "kind", "value", "uri", "added_ts"], rows, cal)


def _write_truth(items: list[dict], bl: list[dict], root: Path) -> None:
    truth = root / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    col = lambda key: [it.get(key) for it in items]  # noqa: E731
    pq.write_table(pa.table({
        "application_id": pa.array(col("application_id"), pa.string()),
        "kind": pa.array(col("kind"), pa.string()),
        "uri": pa.array(col("path"), pa.string()),
        "place_id": pa.array(col("place_id"), pa.string()),
        "place_kind": pa.array(col("place_kind"), pa.string()),
        "speaker_id": pa.array(col("speaker_id"), pa.string()),
        "template_id": pa.array(col("template_id"), pa.string()),
        "defect": pa.array(col("defect"), pa.string()),
    }), truth / "media.parquet")
    pq.write_table(pa.table({
        "entry_id": pa.array([e["entry_id"] for e in bl], pa.string()),
        "kind": pa.array([e["kind"] for e in bl], pa.string()),
        "intermediary_id": pa.array([e.get("intermediary") for e in bl], pa.string()),
        "place_id": pa.array([e.get("place_id") for e in bl], pa.string()),
        "speaker_seed": pa.array([e.get("speaker_seed") for e in bl], pa.int64()),
        "added_ts": pa.array([e["ts"] * 1_000_000 for e in bl], pa.timestamp("us", tz="UTC")),
    }), truth / "blacklists.parquet")
