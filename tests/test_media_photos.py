"""Simulated place photos (riskgraph.media.photos): determinism, shapes, codecs, where the
person and the ID card land, and a quality check that same-place photos are findable but not
trivially so. No Spark."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from riskgraph.media.photos import (
    JPEG_QUALITY_RANGE, PHOTO_KINDS, PLACE_KINDS, decode_image, encode_jpeg, person_zone,
    photograph, render_scene,
)

NATURAL = {"home": "selfie", "workplace": "selfie", "back_office": "selfie", "shop": "premises",
           "lobby": "id_photo", "chain_store": "selfie"}


@pytest.mark.parametrize("kind", PLACE_KINDS)
def test_scene_shape_dtype_and_content(kind):
    img = render_scene(11, kind)
    assert img.shape == (288, 384, 3) and img.dtype == np.uint8
    assert img.std() > 20  # a drawn room, not a flat fill
    small = render_scene(11, kind, width=200, height=150)
    assert small.shape == (150, 200, 3)


@pytest.mark.parametrize("kind", PLACE_KINDS)
def test_scene_deterministic_per_seed_and_kind(kind):
    a, b = render_scene(42, kind), render_scene(42, kind)
    assert a.tobytes() == b.tobytes()
    other = render_scene(43, kind)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 10
    other_kind = render_scene(42, "home" if kind != "home" else "shop")
    assert np.abs(a.astype(int) - other_kind.astype(int)).mean() > 10


def test_scene_same_bytes_in_another_process():
    """No per-process salt (Python's str hash) may leak into a scene: a chain store's decor must
    be the same picture for every worker that renders it."""
    code = ("import hashlib; from riskgraph.media.photos import render_scene; "
            "print(hashlib.sha256(render_scene(7, 'chain_store').tobytes()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == hashlib.sha256(render_scene(7, "chain_store").tobytes()).hexdigest()


def test_chain_store_identical_across_its_strangers_and_distinct_across_chains():
    # many unrelated applicants photographed in branches of one chain: one decor seed
    scenes = [render_scene(900, "chain_store") for _ in range(3)]
    assert all(s.tobytes() == scenes[0].tobytes() for s in scenes)
    others = [render_scene(s, "chain_store") for s in (901, 902, 903)]
    assert all(np.abs(o.astype(int) - scenes[0].astype(int)).mean() > 10 for o in others)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown place kind"):
        render_scene(1, "garage")
    with pytest.raises(ValueError, match="unknown photo kind"):
        photograph(render_scene(1, "home"), np.random.default_rng(0), kind="portrait")
    with pytest.raises(ValueError):
        photograph(np.zeros((10, 10), np.uint8), np.random.default_rng(0))


@pytest.mark.parametrize("kind", PHOTO_KINDS)
def test_photograph_deterministic_shapes_and_record(kind):
    scene = render_scene(5, "home")
    a, ia = photograph(scene, np.random.default_rng(3), kind=kind)
    b, ib = photograph(scene, np.random.default_rng(3), kind=kind)
    c, _ = photograph(scene, np.random.default_rng(4), kind=kind)
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes() and ia == ib
    assert a.tobytes() != c.tobytes()
    r, _ = photograph(scene, np.random.default_rng(3), kind=kind, out_width=320, out_height=240)
    assert r.shape == (240, 320, 3)
    x0, y0, x1, y1 = ia["crop_box"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert JPEG_QUALITY_RANGE[0] <= ia["jpeg_quality"] <= JPEG_QUALITY_RANGE[1]
    assert -4 <= ia["rotation_deg"] <= 4


def test_crop_and_nuisance_ranges_over_many_photos():
    scene = render_scene(8, "back_office")
    rng = np.random.default_rng(0)
    infos = [photograph(scene, rng, kind=k)[1] for k in PHOTO_KINDS for _ in range(60)]
    scales = np.array([i["crop_scale"] for i in infos])
    # 55-95 % of the largest crop of the photo's aspect; roll/keystone may shrink or add a little
    assert scales.min() > 0.45 and scales.max() < 1.05
    assert np.median(scales) == pytest.approx(0.75, abs=0.08)
    assert max(i["crop_area"] for i in infos) <= 0.8  # a square photo of a 4:3 scene: <= 75 % + keystone
    q = [i["jpeg_quality"] for i in infos]
    assert min(q) < 45 and max(q) > 80  # the whole 35-90 band is used
    exp = np.array([i["exposure"] for i in infos])
    assert exp.min() < 0.85 and exp.max() > 1.15


def test_selfie_person_inside_person_zone_and_covers_a_fifth_to_a_third():
    rng = np.random.default_rng(1)
    scenes = [render_scene(s, "home") for s in range(5)]
    for (w, h) in ((224, 224), (320, 240), (160, 200)):
        zx0, zy0, zx1, zy1 = person_zone(w, h)
        assert 0 <= zx0 < zx1 <= w and 0 <= zy0 < zy1 == h  # centre-bottom, inside the frame
        covers = []
        for s in range(40):
            img, info = photograph(scenes[s % 5], rng, kind="selfie", out_width=w, out_height=h)
            px0, py0, px1, py1 = info["person_box"]
            assert zx0 <= px0 * w and px1 * w <= zx1 and zy0 <= py0 * h and py1 * h <= zy1
            covers.append(info["person_cover"])
        assert 0.17 <= min(covers) and max(covers) <= 0.40
        assert 0.2 <= float(np.mean(covers)) <= 0.35


def test_person_is_drawn_where_the_record_says():
    """The occluder really changes the pixels in its box and leaves the top corners alone."""
    scene = render_scene(21, "workplace")
    with_person, info = photograph(scene, np.random.default_rng(9), kind="selfie")
    # same generator state, premises: identical geometry draws, no person most of the time
    r = np.random.default_rng(9)
    base, binfo = photograph(scene, r, kind="premises")
    assert binfo["person_box"] is None
    # the crop is drawn first from the same state in both, so the backgrounds align
    assert binfo["crop_box"] == info["crop_box"]
    x0, y0, x1, y1 = (np.array(info["person_box"]) * 224).astype(int)
    diff = np.abs(with_person.astype(int) - base.astype(int)).mean(axis=2)
    cx = (x0 + x1) // 2
    inside = diff[y0 + 10:, cx - 10:cx + 10].mean()        # torso and head
    corners = np.r_[diff[:20, :20].ravel(), diff[:20, -20:].ravel()].mean()  # room only, both shots
    assert inside > corners + 15


def test_id_photo_card_held_in_the_centre():
    rng = np.random.default_rng(2)
    for s in range(30):
        img, info = photograph(render_scene(s, "lobby"), rng, kind="id_photo")
        x0, y0, x1, y1 = info["card_box"]
        assert 0.4 < (x0 + x1) / 2 < 0.6 and 0.38 < (y0 + y1) / 2 < 0.62
        assert x1 - x0 >= 0.45  # a good part of the frame
        assert info["person_box"] is None and info["hand_box"][3] > y1 - 0.05


def test_premises_mostly_without_person():
    rng = np.random.default_rng(3)
    scene = render_scene(4, "shop")
    people = sum(photograph(scene, rng, kind="premises")[1]["person_box"] is not None for _ in range(200))
    assert 10 <= people <= 50  # ~15 %: a shop keeper or a passer-by now and then


def test_jpeg_round_trip_and_quality_ordering():
    img, _ = photograph(render_scene(3, "home"), np.random.default_rng(0), kind="selfie")
    lo, hi = encode_jpeg(img, 35), encode_jpeg(img, 90)
    assert lo[:2] == b"\xff\xd8" and hi[:2] == b"\xff\xd8"
    assert len(lo) < len(hi)
    dlo, dhi = decode_image(lo), decode_image(hi)
    assert dlo.shape == img.shape and dlo.dtype == np.uint8
    err = lambda d: float(np.abs(d.astype(int) - img.astype(int)).mean())
    assert err(dhi) < err(dlo) < 12  # channel order kept (a swap would err by tens)
    assert encode_jpeg(img, 60) == encode_jpeg(img, 60)
    png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert np.array_equal(decode_image(png), img)
    grey = cv2.imencode(".png", img[..., 0])[1].tobytes()
    assert decode_image(grey).shape == img.shape


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff" + b"\x00" * 50])
def test_decode_image_refuses_garbage(data):
    assert decode_image(data) is None


def test_encode_jpeg_refuses_bad_input():
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((8, 8), np.uint8), 50)
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((8, 8, 3), np.uint8), 0)


# ---------------------------------------------------------------------------------------------
# Quality: the same place is findable with a simple descriptor, colour alone is not enough
# ---------------------------------------------------------------------------------------------

def _hsv_hist(img: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return np.sqrt(h / h.sum())  # Hellinger: cosine on square roots


def _grey_thumb(img: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnail, the person zone pulled to the mean (as the embedders down-weight it)."""
    h, w = img.shape[:2]
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    x0, y0, x1, y1 = person_zone(w, h)
    g[y0:y1, x0:x1] = 0.25 * g[y0:y1, x0:x1] + 0.75 * g.mean()
    t = cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).ravel()
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-6)


def _pair_auc(desc: list[np.ndarray], labels: np.ndarray) -> float:
    x = np.stack(desc)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    iu = np.triu_indices(len(x), 1)
    return float(roc_auc_score((labels[:, None] == labels[None, :])[iu], sim[iu]))


def place_aucs(kind: str, n_places: int = 30, per_place: int = 4, seed: int = 7) -> tuple[float, float]:
    """(AUC of hist + grey thumbnail, AUC of the colour histogram alone) for same- vs
    different-place pairs among ``n_places`` places of one kind, photos JPEG'd at their own
    quality. Importable, so the numbers in the report come from the same code as the test."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for i in range(n_places):
        scene = render_scene(1000 + i, kind)
        for _ in range(per_place):
            img, info = photograph(scene, rng, kind=NATURAL[kind])
            imgs.append(decode_image(encode_jpeg(img, info["jpeg_quality"])))
            labels.append(i)
    y = np.array(labels)
    hists = [_hsv_hist(im) for im in imgs]
    both = [np.concatenate([h, _grey_thumb(im)]) for h, im in zip(hists, imgs)]
    return _pair_auc(both, y), _pair_auc(hists, y)


@pytest.mark.parametrize("kind", PLACE_KINDS)
def test_same_place_findable_but_colour_alone_is_not_enough(kind):
    auc_simple, auc_colour = place_aucs(kind)
    assert auc_simple > 0.7, f"{kind}: photos of one place are not more alike than of others ({auc_simple:.3f})"
    assert auc_colour < 0.97, f"{kind}: colour histograms alone nearly solve it ({auc_colour:.3f}): nuisance too weak"
