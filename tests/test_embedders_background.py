"""Background embedder: classic cues against hand-computed values, offline model loading (DINOv2
from a local folder, EfficientNet-Lite0 from its wheel), fusion, person masking, re-ranking."""
from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest

from riskgraph.embedders.base import Embedder
from riskgraph.embedders.image_cues import (
    CueConfig, colour_hist, cue_parts, gist, gradient_orientation_votes, hog_grid, hsv_bins, lbp_hist,
    lbp_riu2_codes, zone_weights,
)

RED, BLUE, BLACK, WHITE = (255, 0, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (models must load from local files)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _photos(n: int = 3, seed: int = 7) -> list[tuple[np.ndarray, str]]:
    from riskgraph.media import photos

    scene = photos.render_scene(1234, "home")
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("selfie", "premises", "id_photo")[:n]:
        img, info = photos.photograph(scene, rng, kind=kind)
        out.append((photos.decode_image(photos.encode_jpeg(img, info["jpeg_quality"])), kind))
    return out


# --- classic cues, by hand ---------------------------------------------------------------------


def test_hsv_bins_by_hand():
    img = np.array([[RED, BLUE], [BLACK, WHITE]], np.uint8)
    # OpenCV HSV: red (0, 255, 255), blue (120, 255, 255), black (0, 0, 0), white (0, 0, 255);
    # bins (12, 4, 3): index (h*12//180 * 4 + s*4//256) * 3 + v*3//256
    assert hsv_bins(img, (12, 4, 3)).tolist() == [[(0 * 4 + 3) * 3 + 2, (8 * 4 + 3) * 3 + 2], [0, 2]]


def test_colour_hist_by_hand_and_masked():
    img = np.array([[RED, RED], [BLUE, BLACK]], np.uint8)
    v = colour_hist(img, bins=(12, 4, 3), levels=(1,))
    # shares 2/4, 1/4, 1/4 -> sqrt 0.7071, 0.5, 0.5 -> already unit length
    expect = np.zeros(144)
    expect[11], expect[107], expect[0] = np.sqrt(0.5), 0.5, 0.5
    np.testing.assert_allclose(v, expect, atol=1e-6)
    # black pixel masked out: sqrt(1/2), sqrt(1/4) -> normalised by sqrt(3/4)
    w = np.array([[1, 1], [1, 0]], np.float32)
    v = colour_hist(img, w, bins=(12, 4, 3), levels=(1,))
    expect = np.zeros(144)
    expect[11], expect[107] = np.sqrt(0.5) / np.sqrt(0.75), 0.5 / np.sqrt(0.75)
    np.testing.assert_allclose(v, expect, atol=1e-6)


def test_colour_pyramid_cells_by_hand():
    img = np.array([[RED, BLUE], [BLUE, BLUE]], np.uint8)
    v = colour_hist(img, bins=(12, 4, 3), levels=(1, 2))
    # level 1: red 1/4, blue 3/4; level 2: four cells each holding one pixel (share 1)
    raw = np.zeros(144 * 5)
    raw[11], raw[107] = 0.5, np.sqrt(0.75)
    raw[144 + 11] = raw[288 + 107] = raw[432 + 107] = raw[576 + 107] = 1.0
    np.testing.assert_allclose(v, raw / np.linalg.norm(raw), atol=1e-6)


@pytest.mark.parametrize("neigh,code", [
    (np.zeros(8), 0),                       # no neighbour >= centre: uniform, 0 ones
    (np.full(8, 9), 8),                     # all >= centre
    (np.array([9, 0, 0, 0, 0, 0, 0, 0]), 1),    # one run of ones: uniform, 1 one
    (np.array([9, 9, 9, 0, 0, 0, 0, 0]), 3),
    (np.array([9, 0, 0, 0, 9, 0, 0, 0]), 9),    # two runs: 4 transitions, non-uniform
], ids=["dark", "bright", "one", "run3", "nonuniform"])
def test_lbp_riu2_by_hand(neigh, code):
    # neighbour order: E, NE, N, NW, W, SW, S, SE
    g = np.full((3, 3), 5.0)
    for (dy, dx), v in zip(((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)), neigh):
        g[1 + dy, 1 + dx] = v
    assert lbp_riu2_codes(g).tolist() == [[code]]


def test_lbp_hist_by_hand():
    # 3x4 gray, two interior pixels: the 5 has only 0 neighbours -> no bit set -> code 0; the 0
    # next to it has every neighbour >= 0 -> all 8 bits -> code 8
    g = np.array([[0, 0, 0, 0], [0, 5, 0, 0], [0, 0, 0, 0]], np.float32)
    codes = lbp_riu2_codes(g)
    assert codes.tolist() == [[0, 8]]
    v = lbp_hist(g, levels=(1,), scales=(1,))
    expect = np.zeros(10)
    expect[0] = expect[8] = np.sqrt(0.5)
    np.testing.assert_allclose(v, expect / np.linalg.norm(expect), atol=1e-6)


def test_gradient_votes_and_hog_by_hand():
    g = np.array([[0, 1, 2]] * 3, np.float32)  # horizontal ramp: gx = 2 at the middle column
    b0, b1, v0, v1 = gradient_orientation_votes(g, 4)
    # theta 0 sits half-way between centres pi/8 (bin 0) and -pi/8 (bin 3): 1 each
    assert (b0[1, 1], b1[1, 1], v0[1, 1], v1[1, 1]) == (3, 0, 1.0, 1.0)
    np.testing.assert_allclose(hog_grid(g, grid=1, n_bins=4), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-6)
    gv = g.T.copy()  # vertical ramp: theta pi/2, between bins 1 and 2
    b0, b1, v0, v1 = gradient_orientation_votes(gv, 4)
    assert (b0[1, 1], b1[1, 1]) == (1, 2)
    np.testing.assert_allclose(hog_grid(gv, grid=1, n_bins=4), [0, np.sqrt(0.5), np.sqrt(0.5), 0], atol=1e-6)


def test_gist_orientation_energy():
    # vertical stripes (variation along x) excite the orientation-0 Gabor more than orientation 90
    x = np.arange(64)
    stripes = (127 + 100 * np.sin(2 * np.pi * x / 8))[None, :].repeat(64, 0).astype(np.float32)
    v = gist(stripes, size=64, grid=1, wavelengths=(8.0,), n_orient=4)
    assert v.shape == (4,) and v[0] > 3 * v[2]
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, atol=1e-6)


def test_zone_weights_by_hand():
    w = zone_weights(4, 4, [(0.5, 0.5, 1.0, 1.0)], 0.25)
    expect = np.ones((4, 4), np.float32)
    expect[2:, 2:] = 0.25
    np.testing.assert_array_equal(w, expect)


def test_cue_parts_normalised_and_deterministic():
    img, _ = _photos(1)[0]
    a, b = cue_parts(img, None), cue_parts(img.copy(), None)
    assert set(a) == {"colour", "lbp", "hog", "gist"}
    for k in a:
        np.testing.assert_allclose(np.linalg.norm(a[k]), 1.0, atol=1e-5)
        np.testing.assert_array_equal(a[k], b[k])


def test_cue_masking_ignores_the_zone_only():
    img, _ = _photos(1)[0]
    h, w = img.shape[:2]
    zone = (0.25, 0.25, 0.75, 1.0)
    painted = img.copy()
    painted[h // 4 + 4:, w // 4 + 4:3 * w // 4 - 4] = (255, 0, 255)  # a "person" inside the zone
    wmap = zone_weights(h, w, [zone], 0.0)
    cfg = CueConfig(cues=("colour",), work_size=h)
    masked = [cue_parts(x, wmap, cfg)["colour"] for x in (img, painted)]
    np.testing.assert_allclose(masked[0], masked[1], atol=1e-6)
    plain = [cue_parts(x, None, cfg)["colour"] for x in (img, painted)]
    assert float(plain[0] @ plain[1]) < 0.95
    outside = img.copy()
    outside[:h // 8] = (255, 0, 255)  # outside the zone: masking must not hide it
    assert float(cue_parts(outside, wmap, cfg)["colour"] @ masked[0]) < 0.99


# --- deep models, offline -----------------------------------------------------------------------


def test_dinov2_loads_from_local_folder_only(tmp_path, no_network):
    from riskgraph.embedders.image_deep import Dinov2Backbone, save_tiny_dinov2

    folder = save_tiny_dinov2(tmp_path / "dino", image_size=112, hidden_size=64, num_layers=2, num_heads=2, seed=1)
    m = Dinov2Backbone(folder, num_threads=1)
    imgs = [im for im, _ in _photos(2)]
    e = m.embed(imgs, [None, None])
    assert e.shape == (2, 128) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, Dinov2Backbone(folder, num_threads=1).embed(imgs, [None, None]))
    # masking the lower half changes the patch-mean half of the descriptor, not the CLS half
    wmap = zone_weights(224, 224, [(0.0, 0.5, 1.0, 1.0)], 0.0)
    em = m.embed(imgs[:1], [wmap])
    assert not np.allclose(em, e[:1], atol=1e-4)
    np.testing.assert_allclose(em[0, :64], e[0, :64], atol=1e-5)


def test_dinov2_missing_folder_names_it(tmp_path, no_network):
    from riskgraph.embedders.background import BackgroundEmbedder
    from riskgraph.embedders.image_deep import Dinov2Backbone, ModelFolderError

    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelFolderError, match="no-such-model"):
        Dinov2Backbone(missing)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelFolderError, match="preprocessor_config.json"):
        Dinov2Backbone(tmp_path / "half")
    with pytest.raises(ModelFolderError, match="no-such-model"):
        BackgroundEmbedder.with_dinov2(missing)


@pytest.fixture(scope="module")
def default_model():
    from riskgraph.embedders.background import BackgroundEmbedder

    return BackgroundEmbedder.from_settings(num_threads=1)


def test_efficientnet_offline_and_deterministic(no_network):
    from riskgraph.embedders.image_deep import EffNetConfig, EfficientNetLite0Backbone

    imgs = [im for im, _ in _photos(2)]
    a = EfficientNetLite0Backbone(cfg=EffNetConfig(layers=(7, 11)), num_threads=1)
    e1 = a.embed(imgs, [None, None])
    e2 = EfficientNetLite0Backbone(cfg=EffNetConfig(layers=(7, 11)), num_threads=1).embed(imgs, [None, None])
    assert e1.shape == (2, 80 + 192)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(e1[0], e1[1], atol=1e-3)


def test_efficientnet_masking_reduces_the_persons_effect():
    from riskgraph.embedders.image_deep import EfficientNetLite0Backbone

    img, _ = _photos(2)[1]  # premises: nobody in front
    person = img.copy()
    cv2.ellipse(person, (112, 224), (70, 110), 0, 180, 360, (200, 40, 160), -1)
    cv2.circle(person, (112, 90), 35, (230, 180, 150), -1)
    m = EfficientNetLite0Backbone(num_threads=1)
    wmap = zone_weights(224, 224, [(0.15, 0.2, 0.85, 1.0)], 0.0)
    plain = m.embed([img, person], [None, None])
    masked = m.embed([img, person], [wmap, wmap])
    # the person moves the masked descriptor less than half as far (cosine distance) as the plain one
    assert 1 - float(masked[0] @ masked[1]) < 0.5 * (1 - float(plain[0] @ plain[1]))


# --- the fused embedder -------------------------------------------------------------------------


def test_fuse_parts_weights_by_hand():
    from riskgraph.embedders.background import fuse_parts

    parts = {"a": np.array([[2.0, 0.0]]), "b": np.array([[0.0, 5.0]])}
    np.testing.assert_allclose(fuse_parts(parts, {"a": 1.0, "b": 3.0}), [[0.5, 0, 0, np.sqrt(3) / 2]], atol=1e-6)
    np.testing.assert_allclose(fuse_parts(parts, {"a": 1.0, "b": 0.0}), [[1.0, 0.0]], atol=1e-6)
    with pytest.raises(ValueError):
        fuse_parts(parts, {"a": 0.0})


def test_default_embedder_contract(default_model):
    m = default_model
    assert isinstance(m, Embedder)
    assert m.modality == "background" and m.device == "cpu" and len(m.model_version) == 12
    items = _photos(3)
    e = m.embed_batch(items)
    assert e.shape == (3, m.dim) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, m.embed_batch(items))
    assert m.embed_batch([]).shape == (0, m.dim)


def test_fusion_cosine_is_weighted_mean_of_parts(default_model):
    m = default_model
    items = _photos(2)
    parts = m.embed_parts(items)
    e = m.embed_batch(items)
    w = m.settings.weights
    expect = sum(w[p] * float(parts[p][0] @ parts[p][1]) for p in w) / sum(w.values())
    assert abs(float(e[0] @ e[1]) - expect) < 1e-5


def test_weights_change_vector_and_version():
    from riskgraph.embedders.background import BackgroundEmbedder

    a = BackgroundEmbedder.from_settings(weights={"gist": 1.0, "colour": 1.0})
    b = BackgroundEmbedder.from_settings(weights={"gist": 1.0, "colour": 3.0})
    items = _photos(2)
    assert a.model_version != b.model_version
    assert not np.allclose(a.embed_batch(items), b.embed_batch(items), atol=1e-4)
    c = BackgroundEmbedder.from_settings(weights={"gist": 1.0, "colour": 1.0})
    assert c.model_version == a.model_version


def test_photo_kind_selects_the_zone():
    from riskgraph.embedders.background import BackgroundEmbedder

    m = BackgroundEmbedder.from_settings(weights={"colour": 1.0}, person_weight={"colour": 0.0})
    img, _ = _photos(1)[0]
    as_selfie, as_premises, bare = m.embed_batch([(img, "selfie"), (img, "premises"), img])
    assert not np.allclose(as_selfie, as_premises, atol=1e-4)
    np.testing.assert_array_equal(as_selfie, bare)  # default kind: selfie
    with pytest.raises(ValueError, match="unknown photo kind"):
        m.embed_batch([(img, "passport")])


def test_with_dinov2_folder(tmp_path, no_network):
    from riskgraph.embedders.background import BackgroundEmbedder
    from riskgraph.embedders.image_deep import save_tiny_dinov2

    folder = save_tiny_dinov2(tmp_path / "d", hidden_size=64, num_layers=2, num_heads=2)
    m = BackgroundEmbedder.with_dinov2(folder, weights={"gist": 1.0, "dino": 1.0})
    e = m.embed_batch(_photos(2))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    other = save_tiny_dinov2(tmp_path / "e", hidden_size=64, num_layers=2, num_heads=2, seed=5)
    assert BackgroundEmbedder.with_dinov2(other, weights={"gist": 1.0, "dino": 1.0}).model_version != m.model_version


def test_decode(default_model):
    img, _ = _photos(1)[0]
    ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(default_model.decode(png.tobytes()), img)  # PNG is lossless
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    dec = default_model.decode(jpg.tobytes())
    assert dec.shape == img.shape and np.abs(dec.astype(int) - img).mean() < 8
    assert default_model.decode(b"") is None and default_model.decode(b"not an image") is None


# --- re-ranking -----------------------------------------------------------------------------------


def test_reranker_prefers_the_same_room():
    from riskgraph.embedders.background import GeometricReranker
    from riskgraph.media import photos

    rr = GeometricReranker(min_inliers=8)
    rng = np.random.default_rng(3)
    room = photos.render_scene(11, "shop")
    q, _ = photos.photograph(room, rng, kind="premises")
    same, _ = photos.photograph(room, rng, kind="premises")
    others = [photos.photograph(photos.render_scene(s, "shop"), rng, kind="premises")[0] for s in (12, 13)]
    fq = rr.features(q, "premises")
    cands = [rr.features(x, "premises") for x in (others[0], same, others[1])]
    order, inl = rr.rerank(fq, cands, global_scores=[0.9, 0.1, 0.8])
    assert order[0] == 1 and inl[1] >= 20 and inl[1] > 2 * max(inl[0], inl[2])
    order2, inl2 = rr.rerank(fq, cands, global_scores=[0.9, 0.1, 0.8])
    np.testing.assert_array_equal(inl, inl2)  # deterministic


def test_reranker_ignores_matches_inside_both_zones():
    from riskgraph.embedders.background import GeometricReranker

    rr = GeometricReranker()
    img, _ = _photos(1)[0]
    f = rr.features(img, "premises")
    all_in = type(f)(f.pts, f.desc, np.ones(len(f.pts), bool), f.size)
    assert rr.inliers(f, f) > 20
    assert rr.inliers(all_in, all_in) == 0  # every match joins two zone points
    assert rr.inliers(all_in, f) > 20


# --- the fine-tuned EfficientNet-Lite0 (jobs/train_background.py) -----------------------------


@pytest.fixture(scope="module")
def metric_folder(tmp_path_factory):
    """A fine-tuned-layout folder with random (seeded) trainable weights: the loading code's test
    model, never a measured one."""
    import torch

    from riskgraph.embedders.image_deep import EffNetMetricConfig, build_effnet_metric, save_effnet_metric

    torch.manual_seed(3)
    net = build_effnet_metric(EffNetMetricConfig(freeze_after=4, pool_block=7, dim=32, image_size=96))
    with torch.no_grad():  # move the fine-tuned blocks off ImageNet, so a load that drops them shows
        for p in net.blocks.parameters():
            p.add_(0.01 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("metric") / "effnet"
    version = save_effnet_metric(folder, net, extra={"training": {"note": "test"}})
    net.eval()
    return folder, net, version


def test_metric_backbone_round_trip_gives_the_networks_vectors(metric_folder, no_network):
    import torch

    from riskgraph.embedders.image_deep import EfficientNetLite0MetricBackbone, lite0_pixels

    folder, net, version = metric_folder
    m = EfficientNetLite0MetricBackbone(folder, num_threads=1)
    assert (m.dim, m.model_version, m.cfg.pool_block) == (32, version, 7)
    imgs = [im for im, _ in _photos(3)]
    wmap = zone_weights(224, 224, [(0.2, 0.3, 0.8, 1.0)], 0.0)
    e = m.embed(imgs, [None, wmap, None])
    assert e.shape == (3, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # the network's own output on the same pixels, weight maps averaged onto the input grid
    w = np.stack([np.ones((96, 96), np.float32), cv2.resize(wmap, (96, 96), interpolation=cv2.INTER_AREA),
                  np.ones((96, 96), np.float32)])[:, None]
    with torch.inference_mode():
        direct = net(lite0_pixels(imgs, 96), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(e, direct, atol=1e-5)
    # the mask matters, a reload is the same model, and batching does not change a vector
    assert not np.allclose(e[1], m.embed(imgs[1:2], [None])[0], atol=1e-4)
    np.testing.assert_array_equal(EfficientNetLite0MetricBackbone(folder, num_threads=1).embed(imgs, [None, wmap, None]), e)
    np.testing.assert_allclose(np.concatenate([m.embed([im], [wm]) for im, wm in zip(imgs, [None, wmap, None])]), e, atol=1e-5)


def test_metric_folder_is_checked(metric_folder, tmp_path):
    import json
    import shutil

    from riskgraph.embedders.image_deep import EfficientNetLite0MetricBackbone, ModelFolderError

    folder, _, _ = metric_folder
    with pytest.raises(ModelFolderError, match="no-such"):
        EfficientNetLite0MetricBackbone(tmp_path / "no-such")
    other = tmp_path / "other-imagenet"
    shutil.copytree(folder, other)
    conf = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**conf, "imagenet_weights_sha256": "0" * 64}))
    with pytest.raises(ModelFolderError, match="retrain"):
        EfficientNetLite0MetricBackbone(other)
    (other / "config.json").write_text(json.dumps({**conf, "model_type": "something-else"}))
    with pytest.raises(ModelFolderError, match="something-else"):
        EfficientNetLite0MetricBackbone(other)
    # weights that are not the ones config.json describes (a half-copied folder): refused
    import torch

    state = torch.load(folder / "model.pt", weights_only=True)
    state["proj.bias"] = state["proj.bias"] + 0.01
    (other / "config.json").write_text(json.dumps(conf))
    torch.save(state, other / "model.pt")
    with pytest.raises(ModelFolderError, match="not the model config.json describes"):
        EfficientNetLite0MetricBackbone(other)


def test_from_folder_keeps_the_operating_points_only_for_the_model_they_were_measured_on(metric_folder, tmp_path):
    """link_media's calibration: model reads the folder's operating points through the embedder;
    a device or thread change keeps them, an override that changes the vectors drops them."""
    import json
    import shutil

    from riskgraph.embedders.background import BackgroundEmbedder

    folder, _, _ = metric_folder
    f = tmp_path / "with-points"
    shutil.copytree(folder, f)
    points = [{"false_match_rate": 1e-4, "threshold": 0.87, "true_match_rate": 0.4}]
    conf = json.loads((f / "config.json").read_text())
    (f / "config.json").write_text(json.dumps({**conf, "fusion": {"weights": {"gist": 1.0, "effnet_ft": 1.0}},
                                               "operating_points": {"points": points}}))
    assert BackgroundEmbedder.from_folder(f).operating_points == points
    assert BackgroundEmbedder.from_folder(f, allow_cuda=False, num_threads=2).operating_points == points
    assert BackgroundEmbedder.from_folder(f, weights={"effnet_ft": 1.0}).operating_points is None
    assert BackgroundEmbedder.from_folder(folder).operating_points is None  # a folder without points


def test_metric_weights_change_the_version(metric_folder, tmp_path):
    import torch

    from riskgraph.embedders.image_deep import save_effnet_metric

    folder, net, version = metric_folder
    assert save_effnet_metric(tmp_path / "m1", net) == version  # same weights, same version
    saved = net.proj.bias.detach().clone()
    with torch.no_grad():
        net.proj.bias.add_(0.01)
    try:
        assert save_effnet_metric(tmp_path / "m2", net) != version
    finally:
        with torch.no_grad():
            net.proj.bias.copy_(saved)


def test_from_folder_dispatches_on_the_folders_model_type(metric_folder, tmp_path, no_network):
    import json

    from riskgraph.embedders.background import BackgroundEmbedder
    from riskgraph.embedders.image_deep import ModelFolderError, save_tiny_dinov2
    from riskgraph.embedders.registry import build_embedder

    folder, _, version = metric_folder
    m = BackgroundEmbedder.from_folder(folder)
    assert m.settings.active() == ["effnet_ft"] and m.dim == 32  # no fusion recorded: the part alone
    conf = json.loads((folder / "config.json").read_text())
    fused = tmp_path / "fused"
    fused.mkdir()
    for f in ("model.pt",):
        (fused / f).write_bytes((folder / f).read_bytes())
    (fused / "config.json").write_text(json.dumps({**conf, "fusion": {"weights": {"gist": 0.5, "effnet_ft": 2.0}}}))
    f = build_embedder("background", {"model": "background-fused", "folder": str(fused)}, device="cpu")
    assert f.settings.weights == {"gist": 0.5, "effnet_ft": 2.0} and f.model_version != m.model_version
    items = _photos(2)
    parts = f.embed_parts(items)
    expect = (0.5 * float(parts["gist"][0] @ parts["gist"][1]) + 2.0 * float(parts["effnet_ft"][0] @ parts["effnet_ft"][1])) / 2.5
    e = f.embed_batch(items)
    assert abs(float(e[0] @ e[1]) - expect) < 1e-5
    # a moved folder keeps its version (contents are digested, not the path)
    moved = tmp_path / "moved"
    fused.rename(moved)
    assert BackgroundEmbedder.from_folder(moved).model_version == f.model_version
    dino = save_tiny_dinov2(tmp_path / "dino", hidden_size=64, num_layers=2, num_heads=2)
    assert "dino" in BackgroundEmbedder.from_folder(dino).settings.active()
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelFolderError, match="bert"):
        BackgroundEmbedder.from_folder(tmp_path / "odd")
    with pytest.raises(ModelFolderError, match="no config.json"):
        BackgroundEmbedder.from_folder(tmp_path / "nothing-here")


def test_choose_fusion_weights_finds_the_useful_part():
    from riskgraph.embedders.background import choose_fusion_weights

    rng = np.random.default_rng(0)
    place = np.repeat(np.arange(20), 2)
    centres = rng.normal(size=(20, 8))
    good = centres[place] + 0.05 * rng.normal(size=(40, 8))  # photos of a place close together
    noise = rng.normal(size=(40, 8))                         # says nothing about the place
    w = choose_fusion_weights({"good": good, "noise": noise}, ["noise", "good"], place)
    assert w["good"] > 0 and w["noise"] == 0.0


def test_background_training_reduces_the_loss_and_writes_a_loadable_folder(tmp_path, no_network):
    """The training job on a tiny set: the loss falls, and the folder loads through the embed
    path with the fusion weights chosen on validation places (too few places here to estimate
    an operating point: the list is empty, not made up)."""
    import json

    from riskgraph.jobs.train_background import TrainSettings, train_background
    from riskgraph.embedders.background import BackgroundEmbedder

    s = TrainSettings(places=12, photos_per_place=3, val_places=6, test_places=6, eval_photos=2, image_size=96,
                      minutes=5, max_steps=30, eval_every=15, batch_places=8, photos_per_batch_place=3, lr=1e-3,
                      pool_block=7, dim=32)
    res = train_background(tmp_path / "bg", s)
    curve = json.loads((tmp_path / "bg" / "training_curve.json").read_text())["loss_every_10_steps"]
    assert res["steps_run"] == 30 and curve[-1] < 0.8 * curve[0], curve
    conf = json.loads((tmp_path / "bg" / "config.json").read_text())
    assert conf["fusion"]["weights"] == res["fusion_weights"] and conf["model_version"] == res["model_version"]
    assert conf["training"]["best_step"] in (15, 30)
    m = BackgroundEmbedder.from_folder(tmp_path / "bg")
    assert m.settings.weights == res["fusion_weights"] and m.model_version == res["embedder_version"]
    assert res["operating_points"] == [] and m.operating_points == []
    assert m.embed_batch(_photos(2)).shape == (2, m.dim)
