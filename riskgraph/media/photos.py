"""Simulated photos of places: the room behind a selfie, an ID photo or a business's premises.

Why: one fraud pattern (the "same room behind many selfies") is a gang photographing many
applicants in one intermediary's back office. To build and test detectors we need a world where
every *place* yields many photos that are honestly hard to match: other crops and viewpoints,
exposure, white balance, blur, sensor noise, JPEG 35-90 and a person in front.

Two steps, both pure functions of their seeds (no Spark, no I/O):

* :func:`render_scene` draws a place's canonical wide view from ``(decor_seed, kind)``: a
  one-point-perspective room (pinhole camera, textured walls/floor/ceiling mapped by
  homographies), furniture as shaded 3-D boxes, doors, windows, pictures, shelves, signage and
  lights. Places of one kind draw colours and layouts from the same small style tables, so a
  colour histogram alone does not tell two homes apart; the arrangement does.
* :func:`photograph` takes one shot of a scene with an ``np.random.Generator``: a crop of
  55-95 % of the scene with a small rotation and perspective warp, background defocus, a person
  (selfie), a hand holding an ID card (ID photo) or usually nobody (premises), then exposure,
  white balance, light fall-off, blur and signal-dependent sensor noise. It returns the image and
  a record of every nuisance applied, including the JPEG quality to encode it with
  (:func:`encode_jpeg`).

Place kinds (:data:`PLACE_KINDS`): ``home``, ``workplace``, ``back_office`` (an intermediary's
room), ``shop`` (business premises), ``lobby`` (a bank-branch lobby) and ``chain_store`` (the same
branded decor in every city: one decor seed shared by many unrelated applicants, a hub the
pipeline must recognise and must not use to link strangers).

Images are ``uint8`` RGB arrays of shape ``(height, width, 3)``. OpenCV draws and encodes; it
works in BGR, so :func:`encode_jpeg` / :func:`decode_image` convert at the boundary.
"""
from __future__ import annotations

import zlib
from typing import Any

import cv2
import numpy as np

__all__ = [
    "PLACE_KINDS", "PHOTO_KINDS", "JPEG_QUALITY_RANGE", "render_scene", "photograph",
    "encode_jpeg", "decode_image", "person_zone", "contact_sheet",
]

PLACE_KINDS = ("home", "workplace", "back_office", "shop", "lobby", "chain_store")
PHOTO_KINDS = ("selfie", "id_photo", "premises")
JPEG_QUALITY_RANGE = (35, 90)  # inclusive; phone apps and web uploads recompress in this band

Colour = tuple[int, int, int]

# ----------------------------------------------------------------------------------------------
# Style tables. Places of one kind share these, so colour alone is a weak cue (on purpose).
# ----------------------------------------------------------------------------------------------

_WALLS: dict[str, list[Colour]] = {
    "home": [(236, 228, 208), (214, 196, 166), (205, 205, 200), (186, 204, 214), (188, 200, 170),
             (238, 226, 170), (225, 200, 195), (240, 238, 232), (210, 170, 140)],
    "workplace": [(236, 236, 232), (212, 214, 214), (192, 200, 208), (230, 224, 205),
                  (200, 210, 196), (214, 222, 232), (232, 220, 206)],
    "back_office": [(222, 222, 214), (200, 200, 192), (214, 206, 186), (186, 196, 200),
                    (228, 228, 224), (196, 190, 176)],
    "shop": [(240, 240, 236), (248, 226, 180), (200, 226, 230), (236, 210, 210), (214, 232, 200),
             (230, 230, 230)],
    "lobby": [(232, 226, 214), (218, 214, 206), (240, 238, 234), (200, 196, 190)],
    "chain_store": [(244, 244, 240), (236, 236, 236)],
}
_FLOORS_WOOD: list[Colour] = [(150, 105, 70), (180, 140, 95), (120, 85, 60), (200, 170, 130),
                              (165, 125, 85)]
_FLOORS_TILE: list[Colour] = [(205, 205, 198), (172, 162, 150), (96, 96, 100), (220, 214, 200),
                              (150, 150, 150)]
_FLOORS_CARPET: list[Colour] = [(118, 120, 130), (140, 110, 90), (92, 102, 122), (160, 150, 132),
                                (120, 130, 110)]
_FURNITURE: dict[str, list[Colour]] = {
    "home": [(120, 90, 70), (90, 100, 130), (150, 60, 60), (110, 120, 100), (70, 70, 72),
             (190, 180, 160), (160, 120, 80)],
    "office": [(200, 200, 196), (150, 120, 90), (90, 92, 96), (180, 160, 130), (60, 62, 66)],
    "shop": [(210, 210, 210), (150, 110, 70), (80, 80, 84), (230, 230, 226)],
}
_ACCENTS: list[Colour] = [(200, 40, 40), (30, 90, 170), (30, 140, 70), (240, 180, 20),
                          (120, 40, 140), (240, 110, 20), (20, 150, 160), (30, 30, 30),
                          (220, 80, 140), (100, 60, 30)]
# Chain brands: few on purpose (real high streets have few chains); the brand colour dominates.
_BRANDS: list[tuple[Colour, Colour]] = [((210, 30, 40), (255, 255, 255)),
                                         ((0, 110, 60), (250, 220, 40)),
                                         ((20, 70, 160), (255, 200, 0)),
                                         ((240, 120, 10), (255, 255, 255)),
                                         ((110, 30, 120), (255, 255, 255)),
                                         ((250, 200, 0), (200, 20, 20))]
_SKIN: list[Colour] = [(255, 224, 196), (241, 194, 160), (224, 172, 135), (198, 134, 98),
                       (160, 105, 72), (120, 78, 52), (92, 60, 42)]
_HAIR: list[Colour] = [(20, 16, 14), (60, 40, 26), (110, 76, 44), (190, 150, 90), (150, 60, 30),
                       (130, 130, 130), (40, 30, 25)]
_CLOTHES: list[Colour] = [(30, 40, 70), (200, 200, 200), (140, 30, 40), (40, 90, 60),
                          (70, 70, 75), (230, 230, 225), (180, 140, 90), (40, 100, 170),
                          (20, 20, 22), (200, 120, 40), (110, 80, 130)]
_LETTERS = "ABCDEFGHIKLMNOPRSTUVZ"


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def _seed_rng(decor_seed: int, kind: str, salt: int = 0) -> np.random.Generator:
    # crc32, not hash(): Python's str hash is salted per process and would break determinism.
    return np.random.default_rng([int(decor_seed) % (2**63), zlib.crc32(kind.encode()), salt])


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _jit(rng: np.random.Generator, c: Colour, amt: int = 10) -> Colour:
    d = rng.integers(-amt, amt + 1, 3).tolist()
    return (min(255, max(0, c[0] + d[0])), min(255, max(0, c[1] + d[1])), min(255, max(0, c[2] + d[2])))


def _shade(c: Colour, f: float) -> Colour:
    return (int(min(255, c[0] * f)), int(min(255, c[1] * f)), int(min(255, c[2] * f)))


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    return (int(a[0] * (1 - t) + b[0] * t), int(a[1] * (1 - t) + b[1] * t),
            int(a[2] * (1 - t) + b[2] * t))


def _rect(img: np.ndarray, x0, y0, x1, y1, c: Colour, thick: int = -1) -> None:
    cv2.rectangle(img, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), c,
                  thick, cv2.LINE_AA)


def _lownoise(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Smooth noise (bicubic-upsampled grid), float32 (h, w): paint mottling, light patches."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    g = rng.normal(0.0, amp, (gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def _add_field(tex: np.ndarray, field: np.ndarray) -> np.ndarray:
    return np.clip(tex.astype(np.float32) + field[..., None], 0, 255).astype(np.uint8)


def _word(rng: np.random.Generator, lo: int = 3, hi: int = 8) -> str:
    return "".join(_LETTERS[int(i)] for i in rng.integers(0, len(_LETTERS), int(rng.integers(lo, hi + 1))))


def _text(img, s: str, x0, y0, x1, y1, c: Colour, thick_frac: float = 0.12) -> None:
    """Put ``s`` fitted into the box (x0, y0)-(x1, y1)."""
    w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
    (tw, th), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_DUPLEX, 1.0, 2)
    scale = min(w / max(tw, 1), h / max(th, 1)) * 0.9
    if scale <= 0.05:
        return
    thick = max(1, int(round(th * scale * thick_frac)))
    (tw2, th2), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_DUPLEX, scale, thick)
    org = (int(x0 + (w - tw2) / 2), int(y0 + (h + th2) / 2))
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_DUPLEX, scale, c, thick, cv2.LINE_AA)


# ----------------------------------------------------------------------------------------------
# Surface textures (drawn flat, in pixels of a "metre grid", then mapped into perspective)
# ----------------------------------------------------------------------------------------------

_PPM = 60  # texture pixels per metre: about the back wall's on-screen scale, so little aliasing


def _tex_paint(rng, h, w, base: Colour) -> np.ndarray:
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = base
    return _add_field(tex, _lownoise(rng, h, w, 40, 5.0))


def _tex_wallpaper(rng, h, w, base: Colour, kind: str) -> np.ndarray:
    tex = _tex_paint(rng, h, w, base)
    style = _pick(rng, ["stripes", "pinstripes", "motif", "motif", "diamonds"])
    acc = _mix(base, _pick(rng, _ACCENTS), float(rng.uniform(0.15, 0.45)))
    if style in ("stripes", "pinstripes"):
        period = int(rng.integers(10, 26))
        sw = period // 2 if style == "stripes" else max(1, period // 8)
        for x in range(int(rng.integers(0, period)), w, period):
            _rect(tex, x, 0, x + sw, h, acc)
    elif style == "motif":
        step = int(rng.integers(12, 24))
        shape = int(rng.integers(4))
        r = max(2, step // int(rng.integers(4, 7)))
        for j, y in enumerate(range(step // 2, h, step)):
            off = step // 2 if j % 2 else 0
            for x in range(off, w + step, step):
                if shape == 0:
                    cv2.circle(tex, (x, y), r, acc, -1, cv2.LINE_AA)
                elif shape == 1:
                    cv2.fillConvexPoly(tex, np.array([[x, y - r], [x + r, y], [x, y + r], [x - r, y]], np.int32), acc, cv2.LINE_AA)
                elif shape == 2:
                    for dx, dy in ((-r, 0), (r, 0), (0, -r), (0, r)):
                        cv2.circle(tex, (x + dx // 2, y + dy // 2), max(1, r // 2), acc, -1, cv2.LINE_AA)
                else:
                    cv2.line(tex, (x - r, y), (x + r, y), acc, 1, cv2.LINE_AA)
                    cv2.line(tex, (x, y - r), (x, y + r), acc, 1, cv2.LINE_AA)
    else:  # trellis of diagonal lines
        step = int(rng.integers(14, 28))
        for x in range(-h, w + h, step):
            cv2.line(tex, (x, 0), (x + h, h), acc, 1, cv2.LINE_AA)
            cv2.line(tex, (x + h, 0), (x, h), acc, 1, cv2.LINE_AA)
    return tex


def _tex_brick(rng, h, w, base: Colour) -> np.ndarray:
    mortar = _mix(base, (225, 220, 210), 0.7)
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = mortar
    bh, bw = max(4, int(_PPM * 0.075)), max(8, int(_PPM * 0.23))
    for j, y in enumerate(range(0, h, bh)):
        off = bw // 2 if j % 2 else 0
        for x in range(-off, w, bw):
            _rect(tex, x + 1, y + 1, x + bw - 1, y + bh - 1, _jit(rng, base, 14))
    return _add_field(tex, _lownoise(rng, h, w, 30, 6.0))


def _tex_tiles(rng, h, w, base: Colour, size_m: float, checker: bool) -> np.ndarray:
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = base
    s = max(4, int(_PPM * size_m))
    other = _shade(base, 0.55) if checker else base
    grout = _shade(base, 0.72)
    for j, y in enumerate(range(0, h, s)):
        for i, x in enumerate(range(0, w, s)):
            c = other if (checker and (i + j) % 2) else base
            _rect(tex, x, y, x + s, y + s, _jit(rng, c, 4))
    for y in range(0, h, s):
        cv2.line(tex, (0, y), (w, y), grout, 1)
    for x in range(0, w, s):
        cv2.line(tex, (x, 0), (x, h), grout, 1)
    return _add_field(tex, _lownoise(rng, h, w, 50, 4.0))


def _tex_wood(rng, h, w, base: Colour, plank_m: float, vertical: bool = True) -> np.ndarray:
    """Planks with grain streaks along their length (``vertical``: along texture rows)."""
    if not vertical:
        return np.ascontiguousarray(_tex_wood(rng, w, h, base, plank_m, True).transpose(1, 0, 2))
    tex = np.empty((h, w, 3), np.uint8)
    pw = max(4, int(_PPM * plank_m))
    for x in range(0, w, pw):  # planks differ in lightness, barely in hue
        tex[:, x:x + pw] = _jit(rng, _shade(base, float(rng.uniform(0.85, 1.12))), 3)
    # grain: noise across the plank, stretched along it, gives long streaks
    streak = rng.normal(0, 9.0, (max(2, h // 40), w)).astype(np.float32)
    streak = cv2.resize(streak, (w, h), interpolation=cv2.INTER_LINEAR)
    tex = _add_field(tex, streak)
    for x in range(0, w, pw):
        cv2.line(tex, (x, 0), (x, h), _shade(base, 0.6), 1)
        # plank ends, staggered
        y = int(rng.integers(0, h))
        cv2.line(tex, (x, y), (x + pw, y), _shade(base, 0.65), 1)
    return tex


def _tex_carpet(rng, h, w, base: Colour) -> np.ndarray:
    tex = np.empty((h, w, 3), np.uint8)
    tex[:] = base
    fine = rng.normal(0, 7.0, (h, w)).astype(np.float32)
    return _add_field(tex, fine + _lownoise(rng, h, w, 25, 5.0))


def _tex_ceiling(rng, h, w, base: Colour, panels: bool) -> np.ndarray:
    tex = _tex_paint(rng, h, w, base)
    if panels:  # suspended-ceiling grid with light panels: offices, shops, lobbies
        s = int(_PPM * 0.6)
        for y in range(0, h, s):
            cv2.line(tex, (0, y), (w, y), _shade(base, 0.8), 1)
        for x in range(0, w, s):
            cv2.line(tex, (x, 0), (x, h), _shade(base, 0.8), 1)
        every = int(rng.integers(2, 4))
        for j, y in enumerate(range(0, h, s)):
            if j % every:
                continue
            for i, x in enumerate(range(0, w, s)):
                if i % every == 1:
                    _rect(tex, x + 1, y + 1, x + s - 1, y + s - 1, (252, 252, 246))
    return tex


# ----------------------------------------------------------------------------------------------
# Wall items, drawn onto a wall texture; (x, y) in texture pixels, y = 0 at the ceiling
# ----------------------------------------------------------------------------------------------

def _free_slot(rng, taken: list, w: int, h: int, iw: int, ih: int, y_lo: int, y_hi: int,
               tries: int = 25):
    """A random box of size (iw, ih) on the wall that overlaps no taken box (or None)."""
    if iw >= w - 4 or y_hi - y_lo <= ih:
        return None
    for _ in range(tries):
        x = int(rng.integers(2, w - iw - 2))
        y = int(rng.integers(y_lo, max(y_lo + 1, y_hi - ih)))
        if all(x + iw + 4 < a or x > c + 4 or y + ih + 4 < b or y > d + 4 for a, b, c, d in taken):
            taken.append((x, y, x + iw, y + ih))
            return x, y
    return None


def _item_picture(rng, tex, x, y, iw, ih, family: bool) -> None:
    frame = _pick(rng, [(30, 28, 26), (240, 238, 232), (150, 110, 50), (190, 160, 80), (90, 60, 40)])
    _rect(tex, x, y, x + iw, y + ih, frame)
    b = max(2, int(min(iw, ih) * 0.08))
    x0, y0, x1, y1 = x + b, y + b, x + iw - b, y + ih - b
    kind = "portrait" if family else _pick(rng, ["abstract", "landscape", "mondrian", "abstract", "poster"])
    bg = _pick(rng, [(236, 230, 214), (30, 40, 60), (200, 220, 236), (240, 200, 120), (60, 90, 70)])
    _rect(tex, x0, y0, x1, y1, bg)
    cw, ch = x1 - x0, y1 - y0
    if cw < 3 or ch < 3:
        return
    if kind == "portrait":
        _rect(tex, x0, y0, x1, y1, _jit(rng, (190, 200, 210), 40))
        n = int(rng.integers(1, 4))
        for k in range(n):
            cx = x0 + cw * (k + 0.5) / n
            r = cw / (2.6 * n)
            cv2.ellipse(tex, (int(cx), int(y1 - ch * 0.05)), (int(r * 1.3), int(ch * 0.3)), 0, 180, 360, _pick(rng, _CLOTHES), -1, cv2.LINE_AA)
            cv2.ellipse(tex, (int(cx), int(y0 + ch * 0.42)), (max(1, int(r * 0.7)), max(1, int(ch * 0.2))), 0, 0, 360, _pick(rng, _SKIN), -1, cv2.LINE_AA)
    elif kind == "landscape":
        sky = _pick(rng, [(150, 190, 230), (240, 170, 110), (190, 210, 230)])
        _rect(tex, x0, y0, x1, y1, sky)
        for k in range(int(rng.integers(2, 4))):
            pts = [(x0, y1)]
            for t in np.linspace(0, 1, 6):
                pts.append((int(x0 + t * cw), int(y0 + ch * (0.45 + 0.12 * k + rng.uniform(-0.12, 0.1)))))
            pts.append((x1, y1))
            cv2.fillPoly(tex, [np.array(pts, np.int32)], _jit(rng, (60 + 20 * k, 110 - 10 * k, 60), 20), cv2.LINE_AA)
        cv2.circle(tex, (int(x0 + cw * rng.uniform(0.2, 0.8)), int(y0 + ch * 0.25)), max(1, int(ch * 0.1)), (250, 240, 200), -1, cv2.LINE_AA)
    elif kind == "mondrian":
        xs = sorted(rng.uniform(x0, x1, 2).astype(int))
        ys = sorted(rng.uniform(y0, y1, 2).astype(int))
        for (a, c) in ((x0, xs[0]), (xs[0], xs[1]), (xs[1], x1)):
            for (bb, d) in ((y0, ys[0]), (ys[0], ys[1]), (ys[1], y1)):
                col = _pick(rng, [(240, 238, 230)] * 3 + [(200, 30, 30), (30, 60, 160), (240, 200, 30)])
                _rect(tex, a, bb, c, d, col)
                _rect(tex, a, bb, c, d, (20, 20, 20), 1)
    elif kind == "poster":
        _rect(tex, x0, y0, x1, y0 + ch * 0.3, _pick(rng, _ACCENTS))
        _text(tex, _word(rng, 3, 6), x0, y0, x1, y0 + ch * 0.3, (250, 250, 250))
        cv2.circle(tex, (int(x0 + cw / 2), int(y0 + ch * 0.65)), max(1, int(min(cw, ch) * 0.25)), _pick(rng, _ACCENTS), -1, cv2.LINE_AA)
    else:  # abstract: a few bold shapes, the most distinctive picture kind
        for _ in range(int(rng.integers(3, 7))):
            col = _pick(rng, _ACCENTS)
            px, py = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
            r = max(1, int(min(cw, ch) * rng.uniform(0.1, 0.35)))
            s = int(rng.integers(3))
            if s == 0:
                cv2.circle(tex, (px, py), r, col, -1, cv2.LINE_AA)
            elif s == 1:
                _rect(tex, max(x0, px - r), max(y0, py - r), min(x1, px + r), min(y1, py + r // 2), col)
            else:
                pts = np.array([[px, max(y0, py - r)], [min(x1, px + r), min(y1, py + r)], [max(x0, px - r), min(y1, py + r)]], np.int32)
                cv2.fillConvexPoly(tex, pts, col, cv2.LINE_AA)


def _item_window(rng, tex, x, y, iw, ih, dressing: str) -> None:
    frame = _pick(rng, [(245, 245, 242), (120, 90, 60), (70, 72, 76)])
    _rect(tex, x - 3, y - 3, x + iw + 3, y + ih + 3, frame)
    # outside: sky gradient, sometimes a building opposite
    sky_top = np.array(_pick(rng, [(140, 180, 225), (200, 215, 230), (170, 200, 235)]), np.float32)
    t = np.linspace(0, 1, ih, dtype=np.float32)[:, None, None]
    grad = sky_top * (1 - t) + np.array([235, 240, 245], np.float32) * t
    tex[y:y + ih, x:x + iw] = np.broadcast_to(grad, (ih, iw, 3)).astype(np.uint8)
    if rng.random() < 0.6:
        bx = x + int(iw * rng.uniform(-0.2, 0.5))
        by = y + int(ih * rng.uniform(0.3, 0.7))
        bcol = _pick(rng, [(160, 150, 140), (190, 170, 150), (120, 125, 135)])
        _rect(tex, max(x, bx), by, min(x + iw, bx + int(iw * rng.uniform(0.4, 0.9))), y + ih, bcol)
        for wy in range(by + 4, y + ih - 3, 8):
            for wx in range(max(x, bx) + 3, min(x + iw, bx + int(iw * 0.9)) - 3, 7):
                _rect(tex, wx, wy, wx + 3, wy + 4, _shade(bcol, 0.6))
    n = int(rng.integers(1, 4))
    for k in range(1, n):
        xx = x + iw * k // n
        cv2.line(tex, (xx, y), (xx, y + ih), frame, 3)
    cv2.line(tex, (x, y + ih // 2), (x + iw, y + ih // 2), frame, 2)
    if dressing == "blinds":
        slat = _pick(rng, [(235, 235, 228), (200, 200, 196), (180, 170, 150)])
        down = int(ih * rng.uniform(0.2, 1.0))
        for yy in range(y, y + down, 4):
            _rect(tex, x, yy, x + iw, yy + 2, slat)
    elif dressing == "curtains":
        col = _pick(rng, [(150, 40, 50), (200, 190, 160), (70, 90, 130), (120, 140, 100), (230, 225, 215)])
        cwid = int(iw * rng.uniform(0.18, 0.35))
        for x0 in (x - 6, x + iw + 6 - cwid):
            _rect(tex, x0, y - 8, x0 + cwid, y + ih + 10, col)
            for fx in range(x0 + 3, x0 + cwid, 6):
                cv2.line(tex, (fx, y - 8), (fx, y + ih + 10), _shade(col, 0.78), 2)
        _rect(tex, x - 10, y - 10, x + iw + 10, y - 7, (90, 70, 50))


def _item_door(rng, tex, x, y_floor, iw, ih) -> None:
    col = _pick(rng, [(245, 242, 236), (140, 100, 60), (110, 80, 55), (90, 100, 110), (200, 190, 170)])
    frame = _shade(col, 0.8)
    y = y_floor - ih
    _rect(tex, x - 3, y - 3, x + iw + 3, y_floor, frame)
    _rect(tex, x, y, x + iw, y_floor, col)
    if rng.random() < 0.7:
        for (a, b) in ((0.08, 0.45), (0.55, 0.93)):
            _rect(tex, x + iw * 0.15, y + ih * a, x + iw * 0.85, y + ih * b, _shade(col, 0.9), 1)
    else:  # glazed office door
        _rect(tex, x + iw * 0.2, y + ih * 0.1, x + iw * 0.8, y + ih * 0.5, (190, 205, 215))
    hx = x + iw * (0.85 if rng.random() < 0.5 else 0.12)
    cv2.circle(tex, (int(hx), int(y + ih * 0.52)), 2, (200, 190, 120), -1, cv2.LINE_AA)


def _item_shelf(rng, tex, x, y, iw, ih, goods: bool, palette: list[Colour] | None = None) -> None:
    board = _pick(rng, [(150, 110, 70), (230, 230, 226), (90, 90, 94), (190, 160, 120)])
    _rect(tex, x, y, x + iw, y + ih, _shade(board, 0.55))
    rows = max(1, ih // 18)
    rh = ih / rows
    for r in range(rows):
        yb = int(y + (r + 1) * rh)
        xx = x + 1
        while xx < x + iw - 2:
            if goods:
                bw = int(rng.integers(4, 9))
                bh = int(rh * rng.uniform(0.5, 0.85))
                col = _pick(rng, palette or _ACCENTS)
            else:  # books
                bw = int(rng.integers(2, 5))
                bh = int(rh * rng.uniform(0.55, 0.9))
                col = _jit(rng, _pick(rng, _ACCENTS + [(230, 225, 210), (60, 40, 30)]), 25)
            if rng.random() < 0.12 and not goods:
                xx += bw + 2
                continue
            _rect(tex, xx, yb - bh, min(x + iw - 2, xx + bw - 1), yb - 2, col)
            xx += bw + (0 if not goods else 1)
        _rect(tex, x, yb - 2, x + iw, yb, board)
    _rect(tex, x, y, x + iw, y + ih, board, 2)


def _item_whiteboard(rng, tex, x, y, iw, ih) -> None:
    _rect(tex, x - 2, y - 2, x + iw + 2, y + ih + 2, (160, 162, 166))
    _rect(tex, x, y, x + iw, y + ih, (246, 246, 244))
    # handwriting (short wavy lines), a boxed diagram with arrows, maybe a chart
    inks = [(30, 60, 160), (180, 30, 30), (30, 30, 30), (30, 130, 60)]
    ly = y + 5
    while ly < y + ih * 0.55:
        lx, lw = x + 4 + rng.uniform(0, iw * 0.1), rng.uniform(0.2, 0.55) * iw
        xs = np.linspace(lx, lx + lw, 12)
        pts = np.stack([xs, ly + rng.uniform(-1.2, 1.2, 12)], 1).astype(np.int32)
        cv2.polylines(tex, [pts], False, _pick(rng, inks), 1, cv2.LINE_AA)
        ly += int(rng.integers(4, 8))
    col = _pick(rng, inks)
    nb = int(rng.integers(2, 5))
    centres = []
    for k in range(nb):
        bx = x + iw * (0.08 + 0.84 * k / nb)
        by = y + ih * rng.uniform(0.62, 0.8)
        _rect(tex, bx, by, bx + iw * 0.6 / nb, by + ih * 0.14, col, 1)
        centres.append((int(bx + iw * 0.3 / nb), int(by + ih * 0.07)))
    for a, b in zip(centres, centres[1:]):
        cv2.arrowedLine(tex, (a[0] + int(iw * 0.3 / nb), a[1]), (b[0] - int(iw * 0.3 / nb), b[1]), col, 1, cv2.LINE_AA, tipLength=0.3)


def _item_clock(rng, tex, x, y, d) -> None:
    c = (x + d // 2, y + d // 2)
    cv2.circle(tex, c, d // 2, _pick(rng, [(30, 30, 30), (200, 200, 200), (150, 110, 60)]), -1, cv2.LINE_AA)
    cv2.circle(tex, c, max(1, d // 2 - 2), (245, 245, 240), -1, cv2.LINE_AA)
    for ang in rng.uniform(0, 2 * np.pi, 2):
        cv2.line(tex, c, (int(c[0] + np.cos(ang) * d * 0.35), int(c[1] + np.sin(ang) * d * 0.35)), (20, 20, 20), 1, cv2.LINE_AA)


def _item_board(rng, tex, x, y, iw, ih) -> None:
    """Cork notice board / calendar with pinned notes."""
    _rect(tex, x, y, x + iw, y + ih, (190, 150, 100))
    _rect(tex, x, y, x + iw, y + ih, (120, 90, 60), 2)
    for _ in range(int(rng.integers(3, 8))):
        nw, nh = int(iw * rng.uniform(0.15, 0.35)), int(ih * rng.uniform(0.15, 0.4))
        nx, ny = int(rng.uniform(x + 2, x + iw - nw - 2)), int(rng.uniform(y + 2, y + ih - nh - 2))
        _rect(tex, nx, ny, nx + nw, ny + nh, _pick(rng, [(250, 250, 245), (250, 240, 140), (200, 230, 250), (250, 200, 210)]))


def _item_logo(rng, tex, x, y, iw, ih, col: Colour, bg: Colour | None, name: str) -> None:
    if bg is not None:
        _rect(tex, x, y, x + iw, y + ih, bg)
    m = int(min(iw * 0.3, ih))
    cx, cy = x + m // 2 + 2, y + ih // 2
    s = int(rng.integers(3))
    if s == 0:
        cv2.circle(tex, (cx, cy), max(1, m // 2 - 2), col, -1, cv2.LINE_AA)
        cv2.circle(tex, (cx, cy), max(1, m // 4), bg or (255, 255, 255), -1, cv2.LINE_AA)
    elif s == 1:
        cv2.fillConvexPoly(tex, np.array([[cx, cy - m // 2 + 2], [cx + m // 2 - 2, cy + m // 2 - 2], [cx - m // 2 + 2, cy + m // 2 - 2]], np.int32), col, cv2.LINE_AA)
    else:
        _rect(tex, cx - m // 2 + 2, cy - m // 2 + 2, cx + m // 2 - 2, cy + m // 2 - 2, col)
        _rect(tex, cx - m // 6, cy - m // 2 + 2, cx + m // 6, cy + m // 2 - 2, bg or (255, 255, 255))
    _text(tex, name, x + m + 4, y, x + iw, y + ih, col)


# ----------------------------------------------------------------------------------------------
# The room: a pinhole camera looking straight at the back wall
# ----------------------------------------------------------------------------------------------

class _Room:
    """Geometry of one room and the projection of its 3-D points (metres, y down from the eye)."""

    def __init__(self, rng, W: int, H: int, width_m, depth_m, height_m):
        self.W, self.H = W, H
        fov = np.deg2rad(rng.uniform(62, 78))
        self.f = W / 2 / np.tan(fov / 2)
        self.cx = W / 2 + rng.uniform(-0.12, 0.12) * W     # camera not centred in the room
        self.cy = H / 2 + rng.uniform(-0.10, 0.06) * H      # horizon = eye height
        self.eye = rng.uniform(1.3, 1.6)
        self.rw, self.D, self.rh = width_m, depth_m, height_m
        u = rng.uniform(0.35, 0.65)
        self.xl, self.xr = -width_m * u, width_m * (1 - u)
        self.yf, self.yc = self.eye, self.eye - height_m    # floor (+), ceiling (-)

    def p(self, x, y, z) -> tuple[float, float]:
        return self.cx + self.f * x / z, self.cy + self.f * y / z

    def pts(self, xyz) -> np.ndarray:
        return np.array([self.p(*q) for q in xyz], np.float32)

    def map_surface(self, canvas: np.ndarray, tex: np.ndarray, corners3d) -> None:
        """Warp ``tex`` onto the quad ``corners3d`` (texture TL, TR, BR, BL) of ``canvas``."""
        th, tw = tex.shape[:2]
        src = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
        M = cv2.getPerspectiveTransform(src, self.pts(corners3d))
        # BORDER_TRANSPARENT writes only the pixels the quad covers: layers composite in place
        cv2.warpPerspective(cv2.GaussianBlur(tex, (3, 3), 0), M, (self.W, self.H), dst=canvas,
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)

    def z_visible(self, lateral: float, extent_px: float) -> float:
        """Nearest depth at which a surface at ``lateral`` metres off-axis is still on screen."""
        return max(0.3, 0.9 * self.f * abs(lateral) / max(extent_px, 1.0))

    def box(self, canvas, x0, x1, h, z0, z1, col: Colour, y_base: float | None = None) -> tuple:
        """A shaded box standing on the floor (or on ``y_base``); returns its front-face rect."""
        yb = self.yf if y_base is None else y_base
        yt = yb - h
        fx0, fy0 = self.p(x0, yt, z0)
        fx1, fy1 = self.p(x1, yb, z0)
        # visible faces only: painter's order (sides and top before the front)
        if x0 > 0:
            cv2.fillConvexPoly(canvas, self.pts([(x0, yt, z0), (x0, yt, z1), (x0, yb, z1), (x0, yb, z0)]).astype(np.int32), _shade(col, 0.72), cv2.LINE_AA)
        if x1 < 0:
            cv2.fillConvexPoly(canvas, self.pts([(x1, yt, z0), (x1, yt, z1), (x1, yb, z1), (x1, yb, z0)]).astype(np.int32), _shade(col, 0.72), cv2.LINE_AA)
        if yt > 0:
            cv2.fillConvexPoly(canvas, self.pts([(x0, yt, z0), (x1, yt, z0), (x1, yt, z1), (x0, yt, z1)]).astype(np.int32), _shade(col, 1.15), cv2.LINE_AA)
        elif yb < 0:
            cv2.fillConvexPoly(canvas, self.pts([(x0, yb, z0), (x1, yb, z0), (x1, yb, z1), (x0, yb, z1)]).astype(np.int32), _shade(col, 0.6), cv2.LINE_AA)
        _rect(canvas, fx0, fy0, fx1, fy1, col)
        return fx0, fy0, fx1, fy1

    def shadow(self, canvas, x0, x1, z0, z1, strength=0.35) -> None:
        """Contact shadow on the floor under an object (soft, darker near it)."""
        pts = self.pts([(x0 - 0.08, self.yf, z0 - 0.1), (x1 + 0.08, self.yf, z0 - 0.1),
                        (x1 + 0.08, self.yf, z1), (x0 - 0.08, self.yf, z1)]).astype(np.int32)
        H, W = canvas.shape[:2]
        pad = 12  # 3 sigma of the blur
        x0p, y0p = max(0, int(pts[:, 0].min()) - pad), max(0, int(pts[:, 1].min()) - pad)
        x1p, y1p = min(W, int(pts[:, 0].max()) + pad + 1), min(H, int(pts[:, 1].max()) + pad + 1)
        if x1p <= x0p or y1p <= y0p:
            return
        m = np.zeros((y1p - y0p, x1p - x0p), np.float32)
        cv2.fillConvexPoly(m, pts - np.array([x0p, y0p], np.int32), 1.0)
        m = cv2.GaussianBlur(m, (0, 0), 4)
        roi = canvas[y0p:y1p, x0p:x1p]
        roi[:] = (roi * (1 - strength * m[..., None])).astype(np.uint8)


def _style(rng, kind: str) -> dict:
    """Palettes and materials of one place, drawn from its kind's shared tables."""
    wall = _jit(rng, _pick(rng, _WALLS[kind]), 14)
    st: dict[str, Any] = {"wall": wall}
    if kind == "home":
        st["wall_tex"] = _pick(rng, ["paint", "paint", "wallpaper", "wallpaper", "wood_lower"])
        st["floor_tex"] = _pick(rng, ["wood", "wood", "carpet", "tiles"])
        st["ceiling_panels"] = False
    elif kind in ("workplace", "back_office"):
        st["wall_tex"] = _pick(rng, ["paint", "paint", "paint", "brick_feature"] + (["wallpaper"] if kind == "back_office" else []))
        st["floor_tex"] = _pick(rng, ["carpet", "carpet", "tiles", "wood"])
        st["ceiling_panels"] = rng.random() < 0.8
    elif kind == "shop":
        st["wall_tex"] = _pick(rng, ["paint", "tiles_wall", "brick_feature", "wood_lower"])
        st["floor_tex"] = _pick(rng, ["tiles", "tiles", "wood"])
        st["ceiling_panels"] = rng.random() < 0.6
    elif kind == "lobby":
        st["wall_tex"] = _pick(rng, ["paint", "stone", "wood_lower"])
        st["floor_tex"] = _pick(rng, ["tiles", "stone"])
        st["ceiling_panels"] = True
    else:  # chain_store: one brand, bright, uniform
        st["wall_tex"] = "paint"
        st["floor_tex"] = "tiles"
        st["ceiling_panels"] = True
        st["brand"] = _pick(rng, _BRANDS)
        st["brand_name"] = _word(rng, 4, 7)
    fl = {"wood": _FLOORS_WOOD, "carpet": _FLOORS_CARPET, "tiles": _FLOORS_TILE, "stone": _FLOORS_TILE}
    st["floor"] = _jit(rng, _pick(rng, fl[st["floor_tex"]]), 12)
    st["ceiling"] = _jit(rng, (240, 238, 232), 6)
    st["light"] = _pick(rng, [(1.06, 1.0, 0.9), (1.0, 1.0, 1.0), (0.96, 1.0, 1.06), (1.04, 1.0, 0.95)])
    # one painted feature wall in many rooms: common in homes and offices, and a strong cue
    st["accent_wall"] = None
    if kind != "chain_store" and rng.random() < (0.65 if kind == "workplace" else 0.55):
        acc = _mix(_pick(rng, _ACCENTS), (235, 230, 220), float(rng.uniform(0.2, 0.6)))
        st["accent_wall"] = (_pick(rng, ["back", "left", "right"]), acc)
    return st


def _wall_texture(rng, h, w, st, kind) -> np.ndarray:
    base, t = st["wall"], st["wall_tex"]
    if t == "wallpaper":
        return _tex_wallpaper(rng, h, w, base, kind)
    if t == "tiles_wall":
        return _tex_tiles(rng, h, w, base, 0.15, False)
    if t == "stone":
        return _tex_tiles(rng, h, w, _jit(rng, base, 10), float(rng.uniform(0.4, 0.8)), False)
    tex = _tex_paint(rng, h, w, base)
    if t == "wood_lower":  # wainscot below a rail at ~0.9 m
        y = h - int(0.9 * _PPM)
        tex[y:] = _tex_wood(rng, h - y, w, _pick(rng, _FLOORS_WOOD), 0.12, True)
        _rect(tex, 0, y - 3, w, y, _shade(base, 0.7))
    return tex


def _floor_texture(rng, h, w, st) -> np.ndarray:
    t, base = st["floor_tex"], st["floor"]
    if t == "wood":
        return _tex_wood(rng, h, w, base, float(rng.uniform(0.12, 0.2)), True)
    if t == "carpet":
        return _tex_carpet(rng, h, w, base)
    if t == "stone":
        return _tex_tiles(rng, h, w, base, float(rng.uniform(0.6, 1.0)), False)
    return _tex_tiles(rng, h, w, base, float(rng.uniform(0.3, 0.6)), rng.random() < 0.3)


def render_scene(decor_seed: int, kind: str, *, width: int = 384, height: int = 288) -> np.ndarray:
    """The canonical wide view of one place: a uint8 RGB array of shape (height, width, 3).

    Inputs: ``decor_seed`` (any int: the place's identity) and ``kind`` (one of
    :data:`PLACE_KINDS`). Output depends only on these and the size: the same arguments give the
    same bytes in every process, which is what lets a ``chain_store`` seed shared by many
    applicants look identical everywhere. Render once per place and cache it; each call costs
    a few milliseconds to tens of milliseconds of CPU.
    """
    if kind not in PLACE_KINDS:
        raise ValueError(f"unknown place kind {kind!r}; expected one of {PLACE_KINDS}")
    if width < 32 or height < 32:
        raise ValueError(f"scene too small: {width}x{height} (need at least 32x32)")
    rng = _seed_rng(decor_seed, kind)
    st = _style(rng, kind)
    # (width, depth, height) ranges in metres; depth is camera-to-back-wall, kept short because
    # selfies are taken close to a wall and the wall is what the photos show
    dims = {"home": ((3.5, 5.0), (2.8, 4.2), (2.5, 2.8)), "workplace": ((4.0, 6.0), (3.2, 5.0), (2.6, 3.0)),
            "back_office": ((3.0, 4.5), (2.5, 3.8), (2.5, 2.9)), "shop": ((4.0, 6.5), (3.5, 6.0), (2.8, 3.4)),
            "lobby": ((5.0, 8.0), (4.5, 7.5), (3.0, 3.8)), "chain_store": ((4.5, 7.0), (4.0, 6.5), (3.0, 3.5))}[kind]
    room = _Room(rng, width, height, *(rng.uniform(*d) for d in dims))
    W, H, D = width, height, room.D
    canvas = np.zeros((H, W, 3), np.uint8)

    # --- surfaces: back wall, side walls, floor, ceiling (texture row 0 = top / far) ---
    bw_px, bh_px = int(room.rw * _PPM), int(room.rh * _PPM)
    def wall_style(which):
        acc = st["accent_wall"]
        return dict(st, wall=acc[1], wall_tex="paint") if acc and acc[0] == which else st

    back = _wall_texture(rng, bh_px, bw_px, wall_style("back"), kind)
    zl = min(D - 0.05, room.z_visible(room.xl, room.cx))
    zr = min(D - 0.05, room.z_visible(room.xr, W - room.cx))
    left = _wall_texture(rng, bh_px, max(8, int((D - zl) * _PPM)), wall_style("left"), kind)
    right = _wall_texture(rng, bh_px, max(8, int((D - zr) * _PPM)), wall_style("right"), kind)
    zf = min(D - 0.05, room.z_visible(room.yf, H - room.cy))
    zc = min(D - 0.05, room.z_visible(room.yc, room.cy))
    floor = _floor_texture(rng, max(8, int((D - zf) * _PPM)), bw_px, st)
    ceil = _tex_ceiling(rng, max(8, int((D - zc) * _PPM)), bw_px, st["ceiling"], st["ceiling_panels"])

    _decorate_walls(rng, kind, st, room, back, left, right, floor)

    xl, xr, yf, yc = room.xl, room.xr, room.yf, room.yc
    room.map_surface(canvas, ceil, [(xl, yc, zc), (xr, yc, zc), (xr, yc, D), (xl, yc, D)])
    room.map_surface(canvas, floor, [(xl, yf, D), (xr, yf, D), (xr, yf, zf), (xl, yf, zf)])
    room.map_surface(canvas, left, [(xl, yc, zl), (xl, yc, D), (xl, yf, D), (xl, yf, zl)])
    room.map_surface(canvas, right, [(xr, yc, D), (xr, yc, zr), (xr, yf, zr), (xr, yf, D)])
    room.map_surface(canvas, back, [(xl, yc, D), (xr, yc, D), (xr, yf, D), (xl, yf, D)])
    # skirting and corner lines: the strongest perspective cues in real rooms
    dark = _shade(st["wall"], 0.62)
    for a, b in (((xl, yf, D), (xr, yf, D)), ((xl, yc, D), (xr, yc, D)), ((xl, yc, D), (xl, yf, D)),
                 ((xr, yc, D), (xr, yf, D)), ((xl, yf, D), (xl, yf, zf)), ((xr, yf, D), (xr, yf, zf)),
                 ((xl, yc, D), (xl, yc, zc)), ((xr, yc, D), (xr, yc, zc))):
        pa, pb = room.p(*a), room.p(*b)
        cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), dark, 2, cv2.LINE_AA)

    lights = _furnish(rng, kind, st, room, canvas)
    return _light(rng, room, canvas, st, lights)


def _decorate_walls(rng, kind, st, room: _Room, back, left, right, floor) -> None:
    """Doors, windows, pictures, shelves and signage onto the wall textures (before mapping)."""
    P = _PPM
    floor_y = back.shape[0]
    taken_b: list = []
    taken_l: list = []
    taken_r: list = []
    bw = back.shape[1]

    def slot(tex, taken, wm, hm, ylo_m, yhi_m):
        return _free_slot(rng, taken, tex.shape[1], tex.shape[0], int(wm * P), int(hm * P),
                          int(ylo_m * P), int(yhi_m * P))

    # the back wall's dominant feature first (it is what every photo is most likely to show)
    if kind in ("shop", "chain_store"):
        brand = st.get("brand")
        col, bg = brand if brand else (_pick(rng, _ACCENTS), _jit(rng, (245, 245, 240), 10))
        band_h = int(rng.uniform(0.35, 0.55) * P)
        y0 = int(rng.uniform(0.1, 0.3) * P)
        x0 = int(rng.uniform(0.05, 0.3) * bw)
        x1 = bw - int(rng.uniform(0.05, 0.3) * bw)
        if brand:  # full-width brand stripe + repeated logo: the chain's look
            _rect(back, 0, y0, bw, y0 + band_h, col)
            _item_logo(rng, back, x0, y0 + 2, x1 - x0, band_h - 4, bg, None, st["brand_name"])
            for t in (left, right):
                _rect(t, 0, y0, t.shape[1], y0 + band_h, col)
        else:
            _item_logo(rng, back, x0, y0, x1 - x0, band_h, col, bg, _word(rng, 4, 8))
        taken_b.append((0, 0, bw, y0 + band_h + 4))
        goods = [_jit(rng, _pick(rng, _ACCENTS), 30) for _ in range(int(rng.integers(3, 7)))]
        if brand:
            goods = goods[:2] + [brand[0], brand[1]]
        for tex, taken in ((back, taken_b), (left, taken_l), (right, taken_r)):
            n = int(rng.integers(2, 5))
            for _ in range(n):
                wm = rng.uniform(0.8, 2.0)
                s = slot(tex, taken, wm, rng.uniform(1.2, 1.8), y0 / P + band_h / P + 0.1, tex.shape[0] / P)
                if s:
                    hh = floor_y - s[1]
                    _item_shelf(rng, tex, s[0], s[1], int(wm * P), hh, True, goods)
    elif kind == "lobby":
        col = _pick(rng, _ACCENTS[:7])
        lw, lh = rng.uniform(1.8, 3.0), rng.uniform(0.4, 0.7)
        s = slot(back, taken_b, lw, lh, 0.2, 1.2)
        if s:
            panel = _jit(rng, _pick(rng, [(245, 245, 242), (60, 60, 64), (150, 110, 70)]), 8)
            _rect(back, s[0] - 10, s[1] - 10, s[0] + int(lw * P) + 10, s[1] + int(lh * P) + 10, panel)
            _item_logo(rng, back, s[0], s[1], int(lw * P), int(lh * P), col, None, _word(rng, 4, 7))
        for _ in range(int(rng.integers(1, 4))):
            s = slot(back, taken_b, 0.5, 0.75, 0.6, 1.5)
            if s:
                _item_picture(rng, back, s[0], s[1], int(0.5 * P), int(0.75 * P), False)
    elif kind == "back_office":
        s = slot(back, taken_b, rng.uniform(1.0, 1.8), rng.uniform(0.7, 1.0), 0.5, 1.4)
        if s:
            _item_whiteboard(rng, back, s[0], s[1], taken_b[-1][2] - s[0], taken_b[-1][3] - s[1])
    elif kind == "workplace" and rng.random() < 0.6:
        s = slot(back, taken_b, rng.uniform(1.2, 2.2), rng.uniform(0.4, 0.6), 0.3, 1.0)
        if s:
            _item_logo(rng, back, s[0], s[1], taken_b[-1][2] - s[0], taken_b[-1][3] - s[1],
                       _pick(rng, _ACCENTS), None, _word(rng, 3, 7))

    # painted stripes / a wallpaper border running round the room: corporate stripes in offices,
    # a border strip in homes; they mark a room at every crop (they span all three walls)
    p_band = {"workplace": 0.6, "back_office": 0.35, "lobby": 0.4, "home": 0.2}.get(kind, 0.0)
    if rng.random() < p_band:
        col = _mix(_pick(rng, _ACCENTS), st["wall"], float(rng.uniform(0.0, 0.35)))
        y = int(rng.uniform(0.9, 1.9) * P)
        for k in range(int(rng.integers(1, 4))):
            th = int(rng.uniform(0.04, 0.25) * P)
            c = col if k == 0 else _mix(col, _pick(rng, _ACCENTS), 0.5)
            for t in (back, left, right):
                _rect(t, 0, y, t.shape[1], y + th, c)
            y += th + int(rng.uniform(0.03, 0.12) * P)

    # a large anchor piece in the middle of the back wall (art above the sofa, a notice board,
    # a framed certificate wall): rooms are remembered by such pieces
    if kind in ("home", "workplace", "back_office", "lobby"):
        wm, hm = rng.uniform(0.8, 1.6), rng.uniform(0.55, 0.9)
        s = slot(back, taken_b, wm, hm, 0.35, 1.45)
        if s:
            if kind == "workplace" and rng.random() < 0.5:
                _item_board(rng, back, s[0], s[1], int(wm * P), int(hm * P))
            else:
                _item_picture(rng, back, s[0], s[1], int(wm * P), int(hm * P), False)

    # windows and doors
    dressing = "curtains" if kind == "home" else ("blinds" if kind in ("workplace", "back_office") else "none")
    n_win = int(rng.integers(0, 3)) if kind != "chain_store" else 0
    for _ in range(n_win):
        tex, taken = _pick(rng, [(back, taken_b), (left, taken_l), (right, taken_r)])
        wm, hm = rng.uniform(0.8, 1.8), rng.uniform(1.0, 1.5)
        s = slot(tex, taken, wm + 0.3, hm + 0.2, 0.35, 0.35 + hm + 0.4)
        if s:
            _item_window(rng, tex, s[0] + int(0.15 * P), s[1] + 4, int(wm * P), int(hm * P), dressing)
    for _ in range(int(rng.integers(0, 2)) + (kind in ("home", "back_office"))):
        tex, taken = _pick(rng, [(back, taken_b), (left, taken_l), (right, taken_r)])
        dw, dh = rng.uniform(0.8, 1.0), rng.uniform(2.0, 2.2)
        if tex.shape[0] < dh * P + 10:
            continue
        s = _free_slot(rng, taken, tex.shape[1], tex.shape[0], int(dw * P) + 8, int(dh * P),
                       tex.shape[0] - int(dh * P) - 1, tex.shape[0])
        if s:
            _item_door(rng, tex, s[0] + 4, tex.shape[0], int(dw * P), int(dh * P))

    # smaller wall items by kind
    if kind == "home":
        items = ["picture"] * int(rng.integers(2, 5)) + ["family"] * int(rng.integers(0, 4)) + ["shelf"] * int(rng.integers(0, 2)) + ["clock"] * int(rng.random() < 0.4)
    elif kind == "workplace":
        items = ["picture", "board", "clock", "shelf", "poster", "picture"][: int(rng.integers(2, 7))]
    elif kind == "back_office":
        items = ["board", "poster", "clock", "picture", "shelf", "poster"][: int(rng.integers(2, 7))]
        rng.shuffle(items)
    elif kind == "lobby":
        items = ["poster", "clock", "poster", "poster"][: int(rng.integers(1, 5))]
    else:
        items = ["poster"] * int(rng.integers(0, 3))
    for it in items:
        tex, taken = _pick(rng, [(back, taken_b), (back, taken_b), (left, taken_l), (right, taken_r)])
        if it in ("picture", "family", "poster"):
            wm = rng.uniform(0.4, 1.3) if it != "family" else rng.uniform(0.2, 0.45)
            hm = wm * rng.uniform(0.6, 1.4)
            s = slot(tex, taken, wm, hm, 0.4, 1.6)
            if s:
                if it == "poster":
                    _item_picture(rng, tex, s[0], s[1], int(wm * P), int(hm * P), False)
                else:
                    _item_picture(rng, tex, s[0], s[1], int(wm * P), int(hm * P), it == "family")
        elif it == "board":
            s = slot(tex, taken, 0.9, 0.6, 0.5, 1.4)
            if s:
                _item_board(rng, tex, s[0], s[1], int(0.9 * P), int(0.6 * P))
        elif it == "clock":
            s = slot(tex, taken, 0.3, 0.3, 0.2, 0.8)
            if s:
                _item_clock(rng, tex, s[0], s[1], int(0.3 * P))
        elif it == "shelf":
            wm = rng.uniform(0.8, 1.4)
            s = slot(tex, taken, wm, 0.6, 0.4, 1.2)
            if s:
                _item_shelf(rng, tex, s[0], s[1], int(wm * P), int(0.6 * P), False)

    # rugs on home floors, a mat at the shop door
    if kind == "home" and rng.random() < 0.6:
        fh, fw = floor.shape[:2]
        rw, rh = int(rng.uniform(0.3, 0.6) * fw), int(rng.uniform(0.2, 0.5) * fh)
        x0, y0 = int(rng.uniform(0, fw - rw)), int(rng.uniform(0, fh - rh))
        col = _pick(rng, [(150, 40, 40), (60, 70, 110), (200, 190, 160), (90, 110, 80), (160, 120, 70)])
        _rect(floor, x0, y0, x0 + rw, y0 + rh, col)
        _rect(floor, x0 + 6, y0 + 6, x0 + rw - 6, y0 + rh - 6, _pick(rng, _ACCENTS), 3)


def _furnish(rng, kind, st, room: _Room, canvas) -> list[tuple[float, float, float]]:
    """Furniture as shaded boxes, far to near; returns ceiling light positions (x, y, z)."""
    D, xl, xr = room.D, room.xl, room.xr
    items: list[tuple[float, Any]] = []  # (front z, draw callback)
    pal = _FURNITURE["home" if kind == "home" else ("office" if kind in ("workplace", "back_office", "lobby") else "shop")]

    def add(z0, fn):
        # nothing closer than 1.2 m: nearer objects would fill the frame (or sit behind the lens)
        if z0 >= 1.2:
            items.append((z0, fn))

    def along_back(wm, dm, margin=0.1):
        x0 = rng.uniform(xl + margin, max(xl + margin, xr - wm - margin))
        return x0, x0 + wm, D - dm - rng.uniform(0.0, 0.3), D - 0.02

    def sofa(x0, x1, z0, z1, col):
        def fn():
            room.shadow(canvas, x0, x1, z0, z1)
            room.box(canvas, x0, x1, 0.8, z1 - 0.2, z1, _shade(col, 0.95))          # back rest
            room.box(canvas, x0, x1, 0.42, z0, z1, col)                            # seat
            room.box(canvas, x0, x0 + 0.18, 0.6, z0, z1, _shade(col, 0.9))         # arms
            room.box(canvas, x1 - 0.18, x1, 0.6, z0, z1, _shade(col, 0.9))
            n = int(rng.integers(1, 4))
            cc = _pick(rng, _ACCENTS[:7] + [(230, 225, 210)])
            for k in range(n):
                cx = x0 + 0.3 + (x1 - x0 - 0.6) * (k + 0.5) / n
                room.box(canvas, cx - 0.18, cx + 0.18, 0.35, z1 - 0.35, z1 - 0.2, cc, y_base=room.yf - 0.42)
        return fn

    def desk(x0, x1, z0, z1, col, monitor=True):
        def fn():
            room.shadow(canvas, x0, x1, z0, z1, 0.25)
            room.box(canvas, x0, x0 + 0.05, 0.72, z0, z1, _shade(col, 0.8))
            room.box(canvas, x1 - 0.05, x1, 0.72, z0, z1, _shade(col, 0.8))
            if rng.random() < 0.6:  # drawer pedestal
                room.box(canvas, x1 - 0.45, x1 - 0.05, 0.7, z0 + 0.05, z1, _shade(col, 0.92))
            room.box(canvas, x0, x1, 0.04, z0, z1, col, y_base=room.yf - 0.72)
            if monitor:
                mx = rng.uniform(x0 + 0.2, x1 - 0.6)
                r = room.box(canvas, mx, mx + 0.55, 0.36, z1 - 0.25, z1 - 0.2, (30, 32, 36), y_base=room.yf - 0.86)
                _rect(canvas, r[0] + 2, r[1] + 2, r[2] - 2, r[3] - 2, _pick(rng, [(40, 70, 120), (200, 210, 220), (30, 40, 50)]))
                room.box(canvas, mx + 0.25, mx + 0.3, 0.14, z1 - 0.25, z1 - 0.2, (40, 40, 44), y_base=room.yf - 0.76)
            if rng.random() < 0.7:  # papers
                px = rng.uniform(x0 + 0.1, x1 - 0.4)
                room.box(canvas, px, px + 0.3, 0.03, z0 + 0.1, z0 + 0.4, (245, 245, 240), y_base=room.yf - 0.76)
        return fn

    def chair(x0, z0, col):
        def fn():
            room.box(canvas, x0 + 0.2, x0 + 0.25, 0.45, z0 + 0.2, z0 + 0.25, (50, 50, 54))
            room.box(canvas, x0, x0 + 0.45, 0.08, z0, z0 + 0.45, col, y_base=room.yf - 0.45)
            room.box(canvas, x0, x0 + 0.45, 0.5, z0 + 0.4, z0 + 0.47, col, y_base=room.yf - 0.53)
        return fn

    def cabinet(x0, x1, z0, z1, col, drawers):
        def fn():
            room.shadow(canvas, x0, x1, z0, z1, 0.25)
            r = room.box(canvas, x0, x1, 1.0 + 0.32 * (drawers - 3), z0, z1, col)
            hgt = (r[3] - r[1]) / drawers
            for k in range(drawers):
                yy = r[1] + k * hgt
                _rect(canvas, r[0] + 2, yy + 2, r[2] - 2, yy + hgt - 2, _shade(col, 0.85), 1)
                _rect(canvas, (r[0] + r[2]) / 2 - 4, yy + hgt * 0.3, (r[0] + r[2]) / 2 + 4, yy + hgt * 0.3 + 2, (60, 60, 60))
        return fn

    def counter(x0, x1, z0, z1, col, top, glass=False):
        def fn():
            room.shadow(canvas, x0, x1, z0, z1, 0.3)
            r = room.box(canvas, x0, x1, 1.05, z0, z1, col)
            room.box(canvas, x0 - 0.03, x1 + 0.03, 0.05, z0 - 0.03, z1, top, y_base=room.yf - 1.05)
            n = int(rng.integers(2, 6))
            for k in range(1, n):
                xx = r[0] + (r[2] - r[0]) * k / n
                cv2.line(canvas, (int(xx), int(r[1] + 3)), (int(xx), int(r[3])), _shade(col, 0.8), 1, cv2.LINE_AA)
            if glass:
                g = canvas.copy()
                room.box(g, x0, x1, 0.7, z0 + 0.15, z0 + 0.18, (210, 228, 235), y_base=room.yf - 1.1)
                cv2.addWeighted(g, 0.45, canvas, 0.55, 0, dst=canvas)
        return fn

    def plant(x0, z0):
        def fn():
            pot = _pick(rng, [(180, 90, 60), (230, 230, 225), (60, 60, 60)])
            room.shadow(canvas, x0, x0 + 0.35, z0, z0 + 0.35, 0.3)
            r = room.box(canvas, x0, x0 + 0.35, 0.4, z0, z0 + 0.35, pot)
            cx, cy = (r[0] + r[2]) / 2, r[1]
            s = (r[2] - r[0])
            for _ in range(10):
                a = rng.uniform(np.pi * 1.05, np.pi * 1.95)
                L = s * rng.uniform(0.8, 2.0)
                e = (int(cx + np.cos(a) * L), int(cy + np.sin(a) * L))
                cv2.ellipse(canvas, (((cx + e[0]) / 2, (cy + e[1]) / 2), (max(3.0, L * 1.0), max(2.0, s * 0.3)), float(np.degrees(a))), _jit(rng, (50, 110, 50), 25), -1, cv2.LINE_AA)
        return fn

    def shelving(x0, x1, z0, z1, goods):
        def fn():
            room.shadow(canvas, x0, x1, z0, z1, 0.25)
            col = _pick(rng, [(230, 230, 226), (150, 110, 70), (90, 90, 94)])
            r = room.box(canvas, x0, x1, rng.uniform(1.4, 2.0), z0, z1, col)
            rows = int(rng.integers(3, 6))
            hgt = (r[3] - r[1]) / rows
            for k in range(rows):
                yb = r[1] + (k + 1) * hgt
                xx = r[0] + 2
                while xx < r[2] - 3:
                    bw = max(2, int((r[2] - r[0]) * rng.uniform(0.03, 0.09)))
                    _rect(canvas, xx, yb - hgt * rng.uniform(0.45, 0.85), min(r[2] - 2, xx + bw - 1), yb - 2, _pick(rng, goods))
                    xx += bw + 1
                _rect(canvas, r[0], yb - 2, r[2], yb, _shade(col, 0.8))
        return fn

    def queue_posts(z0):
        def fn():
            belt = _pick(rng, [(180, 30, 40), (30, 50, 120), (30, 30, 30)])
            xs = np.linspace(rng.uniform(xl + 0.5, 0), rng.uniform(0.5, xr - 0.5), int(rng.integers(3, 6)))
            prev = None
            for x in xs:
                top = room.p(x, room.yf - 0.95, z0)
                bot = room.p(x, room.yf, z0)
                cv2.line(canvas, (int(top[0]), int(top[1])), (int(bot[0]), int(bot[1])), (180, 180, 186), 3, cv2.LINE_AA)
                cv2.ellipse(canvas, (int(bot[0]), int(bot[1])), (6, 2), 0, 0, 360, (150, 150, 156), -1, cv2.LINE_AA)
                if prev is not None:
                    cv2.line(canvas, (int(prev[0]), int(prev[1] + 2)), (int(top[0]), int(top[1] + 2)), belt, 2, cv2.LINE_AA)
                prev = top
        return fn

    furn = _jit(rng, _pick(rng, pal), 22)
    if kind == "home":
        w = rng.uniform(1.6, 2.4)
        x0, x1, z0, z1 = along_back(w, 0.9)
        add(z0, sofa(x0, x1, z0, z1, furn))
        if rng.random() < 0.7:
            tx = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3)
            add(z0 - 1.0, lambda tx=tx, z=z0 - 1.0: (room.shadow(canvas, tx - 0.5, tx + 0.5, z, z + 0.5, 0.3), room.box(canvas, tx - 0.5, tx + 0.5, 0.42, z, z + 0.5, _jit(rng, _pick(rng, _FLOORS_WOOD), 10))))
        if rng.random() < 0.6:
            side = xl + 0.05 if rng.random() < 0.5 else xr - 0.95
            add(D - 1.6, cabinet(side, side + 0.9, D - 1.6, D - 1.1, _jit(rng, _pick(rng, pal), 10), 3))
        if rng.random() < 0.5:
            add(D - 0.6, plant(rng.uniform(xl + 0.1, xr - 0.5), D - 0.5))
        if rng.random() < 0.75:  # TV unit or bookcase by a side wall
            bw_ = rng.uniform(0.8, 1.4)
            bx = xl + 0.05 if rng.random() < 0.5 else xr - bw_ - 0.05
            bz = D - rng.uniform(0.45, 1.2)
            if rng.random() < 0.5:
                books = [_jit(rng, c, 25) for c in _ACCENTS + [(230, 225, 210), (60, 40, 30)]]
                add(bz, shelving(bx, bx + bw_, bz, bz + 0.4, books))
            else:
                ucol = _jit(rng, _pick(rng, _FURNITURE["home"]), 15)
                def tv(bx=bx, bw_=bw_, bz=bz, ucol=ucol):
                    room.shadow(canvas, bx, bx + bw_, bz, bz + 0.45, 0.25)
                    room.box(canvas, bx, bx + bw_, 0.5, bz, bz + 0.45, ucol)
                    r = room.box(canvas, bx + 0.1, bx + bw_ - 0.1, 0.6, bz + 0.2, bz + 0.25, (20, 20, 22), y_base=room.yf - 0.55)
                    _rect(canvas, r[0] + 2, r[1] + 2, r[2] - 2, r[3] - 2, _pick(rng, [(25, 28, 34), (60, 90, 140), (90, 130, 80)]))
                add(bz, tv)
        if rng.random() < 0.5:  # floor lamp
            lx, lz = rng.uniform(xl + 0.3, xr - 0.3), D - 0.4
            def lamp(lx=lx, lz=lz):
                top, bot = room.p(lx, room.yf - 1.5, lz), room.p(lx, room.yf, lz)
                cv2.line(canvas, (int(top[0]), int(top[1])), (int(bot[0]), int(bot[1])), (40, 40, 40), 2, cv2.LINE_AA)
                sh = room.pts([(lx - 0.2, room.yf - 1.75, lz), (lx + 0.2, room.yf - 1.75, lz), (lx + 0.25, room.yf - 1.45, lz), (lx - 0.25, room.yf - 1.45, lz)]).astype(np.int32)
                cv2.fillConvexPoly(canvas, sh, (250, 236, 200), cv2.LINE_AA)
            add(lz, lamp)
    elif kind in ("workplace", "back_office"):
        n = int(rng.integers(1, 3)) if kind == "back_office" else int(rng.integers(2, 5))
        # office fabric (partitions, chairs) is chosen per office and used throughout it
        fabric = _jit(rng, _pick(rng, [(120, 130, 140), (70, 90, 130), (140, 60, 60), (90, 120, 90),
                                       (60, 60, 64), (170, 150, 110), (40, 110, 120)]), 12)
        chair_col = _pick(rng, [(30, 30, 34), (40, 60, 110), (120, 30, 30), fabric])
        for k in range(n):
            w = rng.uniform(1.2, 1.8)
            x0 = xl + (xr - xl) * (k + 0.5) / n - w / 2 + rng.uniform(-0.2, 0.2)
            z1 = D - rng.uniform(0.1, 0.6) - (0 if kind == "back_office" else rng.uniform(0, 2.5))
            add(z1 - 0.8, desk(x0, x0 + w, z1 - 0.8, z1, furn))
            if rng.random() < 0.8:
                add(z1 - 1.3, chair(x0 + w / 2 - 0.22 + rng.uniform(-0.3, 0.3), z1 - 1.3, chair_col))
            if kind == "workplace" and rng.random() < 0.5:  # partition
                add(z1 + 0.02, lambda x0=x0, w=w, z1=z1: room.box(canvas, x0, x0 + w, 1.3, z1, z1 + 0.05, fabric))
        nc = int(rng.integers(1, 4)) if kind == "back_office" else int(rng.integers(0, 3))
        cab = _jit(rng, _pick(rng, [(200, 200, 196), (120, 122, 126), (150, 120, 90)]), 8)
        side = xr - 0.5 if rng.random() < 0.5 else xl + 0.05
        for k in range(nc):
            z0 = D - 0.6 - k * 0.55
            add(z0, cabinet(side, side + 0.45, z0, z0 + 0.5, cab, int(rng.integers(3, 5))))
        if rng.random() < 0.5:
            add(D - 0.6, plant(rng.uniform(xl + 0.1, xr - 0.5), D - 0.5))
        if kind == "back_office" and rng.random() < 0.6:  # boxes of files
            bx = rng.uniform(xl + 0.2, xr - 0.8)
            add(D - 1.0, lambda bx=bx: room.box(canvas, bx, bx + 0.5, 0.35, D - 1.0, D - 0.6, (170, 130, 80)))
    elif kind in ("shop", "chain_store"):
        goods = [_jit(rng, _pick(rng, _ACCENTS), 30) for _ in range(5)]
        if kind == "chain_store":
            goods = goods[:3] + list(st["brand"])
        # the till counter stands to one side, a couple of metres in (never across the lens)
        w = rng.uniform(1.4, 2.4)
        cx0 = xl + 0.1 if rng.random() < 0.5 else xr - w - 0.1
        cz = max(2.2, D - rng.uniform(1.2, 2.2))
        ccol = st["brand"][0] if kind == "chain_store" else _jit(rng, _pick(rng, [(150, 110, 70), (80, 80, 84), (190, 160, 120)] + _ACCENTS[:6]), 15)
        add(cz, counter(cx0, cx0 + w, cz, cz + 0.6, ccol, (240, 240, 236)))
        for k in range(int(rng.integers(1, 4))):
            sw = rng.uniform(1.0, 1.8)
            sx = rng.uniform(xl + 0.1, xr - sw - 0.1)
            sz = D - rng.uniform(3.0, 5.0)
            if sz > 2.0:
                add(sz, shelving(sx, sx + sw, sz, sz + 0.5, goods))
        if rng.random() < 0.5:  # glass-front fridge against a side wall
            side = xl + 0.05 if rng.random() < 0.5 else xr - 0.85
            def fridge(side=side):
                r = room.box(canvas, side, side + 0.8, 1.9, D - 1.5, D - 0.8, (235, 235, 235))
                _rect(canvas, r[0] + 3, r[1] + 3, r[2] - 3, r[3] - 10, (180, 210, 225))
                for yy in np.linspace(r[1] + 6, r[3] - 12, 5)[1:]:
                    cv2.line(canvas, (int(r[0] + 3), int(yy)), (int(r[2] - 3), int(yy)), (250, 250, 250), 1)
            add(D - 1.5, fridge)
    elif kind == "lobby":
        w = rng.uniform(2.5, 4.5)
        cx0 = rng.uniform(xl + 0.3, max(xl + 0.3, xr - w - 0.3))
        cz = D - rng.uniform(1.5, 2.5)
        add(cz, counter(cx0, cx0 + w, cz, cz + 0.7, _jit(rng, _pick(rng, [(240, 240, 236), (150, 110, 70), (70, 70, 74)]), 8), (60, 60, 64), glass=True))
        add(cz - rng.uniform(1.0, 2.0), queue_posts(cz - rng.uniform(1.0, 2.0)))
        if rng.random() < 0.7:  # row of waiting chairs against a side wall
            side = xl + 0.05 if rng.random() < 0.5 else xr - 0.55
            ccol = _pick(rng, [(40, 60, 110), (30, 30, 34), (140, 40, 40)])
            for k in range(int(rng.integers(2, 5))):
                z = D - 1.0 - k * 0.6
                add(z, chair(side, z, ccol))
        for k in range(int(rng.integers(1, 3))):
            add(D - 0.6, plant(rng.uniform(xl + 0.1, xr - 0.5), D - 0.5))
    items.sort(key=lambda t: -t[0])  # painter's algorithm: far first
    for _, fn in items:
        fn()
    # ceiling lights: a regular grid in offices/shops, one or two fixtures at home
    lights = []
    n = {"home": 1, "back_office": 1}.get(kind, 3)
    for k in range(n):
        lx = xl + (xr - xl) * (k + 0.5) / n + rng.uniform(-0.3, 0.3)
        lz = rng.uniform(max(2.0, D * 0.4), D - 0.5)
        lights.append((lx, room.yc, lz))
        p = room.p(lx, room.yc + 0.02, lz)
        a = max(2, int(room.f * 0.3 / lz))
        if kind == "home":
            cv2.ellipse(canvas, (int(p[0]), int(p[1]) + a // 3), (a, max(1, a // 2)), 0, 0, 180, (252, 242, 215), -1, cv2.LINE_AA)
        else:
            cv2.ellipse(canvas, (int(p[0]), int(p[1])), (a, max(1, a // 4)), 0, 0, 360, (255, 255, 250), -1, cv2.LINE_AA)
    return lights


def _light(rng, room: _Room, canvas: np.ndarray, st, lights) -> np.ndarray:
    """Illumination: ambient + soft pools under lights + fall-off to the corners; a colour cast."""
    H, W = canvas.shape[:2]
    k = 8  # illumination is smooth: evaluate on a 1/8 grid (in full-size pixel units), upsample
    yy, xx = np.mgrid[0:H:k, 0:W:k].astype(np.float32)
    illum = np.full(xx.shape, float(rng.uniform(0.7, 0.82)), np.float32)
    for (lx, ly, lz) in lights:
        px, py = room.p(lx, ly, lz)
        floor_px = room.p(lx, room.yf, lz)
        s = room.f * 1.6 / lz
        d2 = ((xx - px) / (1.4 * s)) ** 2 + ((yy - (py + floor_px[1]) / 2) / s) ** 2
        illum += float(rng.uniform(0.1, 0.22)) * np.exp(-0.5 * d2)
    illum -= 0.18 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2) * 4 / 2
    illum = cv2.resize(illum * 1.08, (W, H), interpolation=cv2.INTER_LINEAR)
    lut = np.clip(np.arange(256, dtype=np.float32)[:, None] * np.array(st["light"], np.float32), 0, 255)
    img = cv2.LUT(canvas, lut.reshape(1, 256, 3)) * illum[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Photographs of a scene
# ----------------------------------------------------------------------------------------------

# Selfie person box, as fractions of the frame: centre-x jitter, width and height ranges. The
# person stands at the bottom edge (front camera at arm's length). person_zone() is derived
# from these bounds, so a test can check the box never leaves it.
_PERSON_CX = 0.08      # |centre x - 0.5| <= this
_PERSON_W = (0.55, 0.72)
_PERSON_H = (0.70, 0.88)


def person_zone(width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end-exclusive, where a selfie's person can be.

    The union of every person box :func:`photograph` can draw in a ``selfie``: centre-bottom,
    ``x`` within ``0.5 +- (0.08 + 0.36)`` of the width and ``y`` from ``1 - 0.88`` of the height
    to the bottom edge (computed from the occluder's own bounds, so it can never disagree with
    them). Embedders down-weight this region: whatever lies there is usually the applicant,
    not the room. For ``id_photo`` the card sits in the middle of this same zone.
    """
    half = _PERSON_CX + _PERSON_W[1] / 2
    return (int(np.floor((0.5 - half) * width)), int(np.floor((1 - _PERSON_H[1]) * height)),
            int(np.ceil((0.5 + half) * width)), int(height))


def _draw_person(img: np.ndarray, rng, box) -> np.ndarray:
    """Head-and-shoulders silhouette filling ``box`` (x0, y0, x1, y1 pixels); returns its mask."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    skin = _jit(rng, _pick(rng, _SKIN), 10)
    hair = _jit(rng, _pick(rng, _HAIR), 8)
    cloth = _jit(rng, _pick(rng, _CLOTHES), 12)
    mask = np.zeros(img.shape[:2], np.uint8)
    head_c = (cx + bw * rng.uniform(-0.04, 0.04), y0 + bh * 0.3)
    hax, hay = bw * rng.uniform(0.17, 0.21), bh * rng.uniform(0.25, 0.29)
    style = int(rng.integers(4))
    ip = lambda x, y: (int(round(x)), int(round(y)))
    if style == 1:  # long hair falls behind the shoulders
        cv2.ellipse(img, ip(head_c[0], head_c[1] + hay * 0.5), ip(hax * 1.35, hay * 1.3), 0, 180, 360, hair, -1, cv2.LINE_AA)
        _rect(img, head_c[0] - hax * 1.35, head_c[1] + hay * 0.5, head_c[0] + hax * 1.35, head_c[1] + hay * 1.6, hair)
        _rect(mask, head_c[0] - hax * 1.35, head_c[1] + hay * 0.5, head_c[0] + hax * 1.35, head_c[1] + hay * 1.6, 255)
        cv2.ellipse(mask, ip(head_c[0], head_c[1] + hay * 0.5), ip(hax * 1.35, hay * 1.3), 0, 180, 360, 255, -1)
    # shoulders / torso: a wide dome that runs off the bottom of the frame
    sh_c = ip(cx, y0 + bh * 1.02)
    sh_ax = ip(bw * 0.5, bh * 0.44)
    cv2.ellipse(img, sh_c, sh_ax, 0, 180, 360, cloth, -1, cv2.LINE_AA)
    cv2.ellipse(mask, sh_c, sh_ax, 0, 180, 360, 255, -1)
    if rng.random() < 0.5:  # V-neck / collar
        pts = np.array([ip(cx - bw * 0.1, y0 + bh * 0.6), ip(cx + bw * 0.1, y0 + bh * 0.6), ip(cx, y0 + bh * 0.78)], np.int32)
        cv2.fillConvexPoly(img, pts, _shade(skin, 0.9) if rng.random() < 0.6 else _pick(rng, _CLOTHES), cv2.LINE_AA)
    # neck
    _rect(img, cx - bw * 0.08, head_c[1] + hay * 0.6, cx + bw * 0.08, y0 + bh * 0.64, _shade(skin, 0.85))
    _rect(mask, cx - bw * 0.08, head_c[1] + hay * 0.6, cx + bw * 0.08, y0 + bh * 0.64, 255)
    # head
    cv2.ellipse(img, ip(*head_c), ip(hax, hay), 0, 0, 360, skin, -1, cv2.LINE_AA)
    cv2.ellipse(mask, ip(*head_c), ip(hax, hay), 0, 0, 360, 255, -1)
    if style in (0, 1, 2):  # hair on top (style 3: shaved / covered by nothing)
        top = 200 if style != 2 else 220
        cv2.ellipse(img, ip(head_c[0], head_c[1] - hay * 0.1), ip(hax * 1.08, hay * 0.98), 0, top, 340 + (20 if style else 0), hair, -1, cv2.LINE_AA)
        cv2.ellipse(mask, ip(head_c[0], head_c[1] - hay * 0.1), ip(hax * 1.08, hay * 0.98), 0, 180, 360, 255, -1)
    # face: eyes, brows, nose shadow, mouth (coarse: what a 224 px selfie resolves)
    ex, ey = hax * 0.42, head_c[1] - hay * 0.05
    for sgn in (-1, 1):
        cv2.ellipse(img, ip(head_c[0] + sgn * ex, ey), ip(max(1, hax * 0.13), max(1, hay * 0.06)), 0, 0, 360, (40, 30, 28), -1, cv2.LINE_AA)
        cv2.line(img, ip(head_c[0] + sgn * ex - hax * 0.15, ey - hay * 0.15), ip(head_c[0] + sgn * ex + hax * 0.15, ey - hay * 0.17), _shade(hair, 0.9), max(1, int(hay * 0.04)), cv2.LINE_AA)
    cv2.line(img, ip(head_c[0], ey + hay * 0.1), ip(head_c[0] - hax * 0.06, ey + hay * 0.35), _shade(skin, 0.75), 1, cv2.LINE_AA)
    cv2.ellipse(img, ip(head_c[0], ey + hay * 0.55), ip(hax * 0.3, max(1, hay * 0.08)), 0, 0, 180, (150, 70, 70), max(1, int(hay * 0.05)), cv2.LINE_AA)
    return mask


def _draw_id_card(img: np.ndarray, rng) -> dict:
    """An ID card held in the middle of the frame by a hand; returns the card's and hand's boxes."""
    H, W = img.shape[:2]
    cw = int(W * rng.uniform(0.5, 0.68))
    ch = int(cw / 1.586)  # ISO/IEC 7810 ID-1 aspect
    card = np.empty((ch, cw, 3), np.uint8)
    card[:] = _jit(rng, _pick(rng, [(226, 236, 244), (236, 240, 226), (244, 232, 236), (244, 240, 226), (240, 240, 240)]), 6)
    band = _pick(rng, [(30, 70, 140), (150, 30, 40), (30, 110, 70), (90, 60, 120)])
    _rect(card, 0, 0, cw, ch * 0.2, band)
    for i in range(3):
        _rect(card, cw * (0.05 + 0.18 * i), ch * 0.06, cw * (0.18 + 0.18 * i), ch * 0.14, (240, 240, 240))
    fx0, fy0, fx1, fy1 = cw * 0.05, ch * 0.28, cw * 0.33, ch * 0.9
    _rect(card, fx0, fy0, fx1, fy1, (200, 205, 210))
    sk = _pick(rng, _SKIN)
    cv2.ellipse(card, (int((fx0 + fx1) / 2), int(fy1)), (int((fx1 - fx0) * 0.45), int((fy1 - fy0) * 0.3)), 0, 180, 360, _pick(rng, _CLOTHES), -1, cv2.LINE_AA)
    cv2.ellipse(card, (int((fx0 + fx1) / 2), int(fy0 + (fy1 - fy0) * 0.42)), (int((fx1 - fx0) * 0.26), int((fy1 - fy0) * 0.27)), 0, 0, 360, sk, -1, cv2.LINE_AA)
    for k in range(5):
        y = ch * (0.32 + 0.12 * k)
        _rect(card, cw * 0.4, y, cw * (0.4 + rng.uniform(0.2, 0.55)), y + ch * 0.045, (70, 70, 80))
    if rng.random() < 0.5:
        _rect(card, cw * 0.78, ch * 0.62, cw * 0.93, ch * 0.86, (210, 180, 90))  # chip
    ang = rng.uniform(-10, 10)
    ccx, ccy = W / 2 + rng.uniform(-0.07, 0.07) * W, H / 2 + rng.uniform(-0.07, 0.07) * H
    M = cv2.getRotationMatrix2D((cw / 2, ch / 2), ang, 1.0)
    M[:, 2] += (ccx - cw / 2, ccy - ch / 2)
    corners = cv2.transform(np.array([[[0, 0], [cw, 0], [cw, ch], [0, ch]]], np.float32), M)[0]
    skin = _jit(rng, _pick(rng, _SKIN), 10)
    # fingers behind the card's far edge, palm below (drawn first: the card covers them)
    bl, br = corners[3], corners[2]
    side = -1 if rng.random() < 0.5 else 1
    hand_c = (bl * 0.7 + br * 0.3) if side < 0 else (bl * 0.3 + br * 0.7)
    cv2.ellipse(img, (int(hand_c[0]), int(hand_c[1] + ch * 0.25)), (int(cw * 0.2), int(ch * 0.42)), float(ang), 0, 360, _shade(skin, 0.95), -1, cv2.LINE_AA)
    # wrist and forearm down to the frame edge, in a sleeve
    sleeve = _jit(rng, _pick(rng, _CLOTHES), 12)
    wx = hand_c[0] + side * cw * 0.08
    fa = np.array([[wx - cw * 0.14, hand_c[1] + ch * 0.5], [wx + cw * 0.14, hand_c[1] + ch * 0.5],
                   [wx + side * cw * 0.2 + cw * 0.2, H + 2], [wx + side * cw * 0.2 - cw * 0.2, H + 2]], np.int32)
    cv2.fillConvexPoly(img, fa, _shade(skin, 0.9), cv2.LINE_AA)
    cut = hand_c[1] + ch * 0.5 + (H - hand_c[1] - ch * 0.5) * 0.35
    if cut < H:
        sl = np.array([[wx + side * cw * 0.2 * 0.35 - cw * 0.17, cut], [wx + side * cw * 0.2 * 0.35 + cw * 0.17, cut],
                       [wx + side * cw * 0.2 + cw * 0.23, H + 2], [wx + side * cw * 0.2 - cw * 0.23, H + 2]], np.int32)
        cv2.fillConvexPoly(img, sl, sleeve, cv2.LINE_AA)
    cv2.warpAffine(card, M, (W, H), dst=img, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    cv2.polylines(img, [corners.astype(np.int32)], True, (150, 150, 150), 1, cv2.LINE_AA)
    # thumb over the card's lower edge
    th = (int(hand_c[0] + side * cw * 0.05), int(hand_c[1] - ch * 0.06))
    cv2.ellipse(img, th, (int(cw * 0.05), int(ch * 0.15)), float(ang + side * 25), 0, 360, skin, -1, cv2.LINE_AA)
    xs, ys = corners[:, 0], corners[:, 1]
    return {"card_box": [float(xs.min() / W), float(ys.min() / H), float(xs.max() / W), float(ys.max() / H)],
            "card_angle_deg": float(ang),
            "hand_box": [float((hand_c[0] - cw * 0.2) / W), float((th[1] - ch * 0.15) / H),
                         float((hand_c[0] + cw * 0.2) / W), float(min(1.0, (hand_c[1] + ch * 0.67) / H))]}


def photograph(scene: np.ndarray, rng: np.random.Generator, *, kind: str = "selfie",
               out_width: int = 224, out_height: int = 224) -> tuple[np.ndarray, dict]:
    """One photo of ``scene`` (from :func:`render_scene`) with realistic nuisance.

    Inputs: the scene, a ``numpy.random.Generator`` (the only source of randomness: the same
    generator state gives the same bytes), ``kind`` in :data:`PHOTO_KINDS` and the output size.
    Output: a uint8 RGB ``(out_height, out_width, 3)`` image and a dict of what was applied:
    ``crop_box`` (x0, y0, x1, y1 of the scene, fractions), ``crop_area`` (share of the scene's
    area), ``crop_scale`` (share of the largest crop of the photo's aspect: 0.55-0.95, a little
    less when the roll and keystone had to be shrunk to stay inside the scene),
    ``rotation_deg``, ``exposure``, ``gamma``, ``wb_gains`` (R, G, B), ``saturation``,
    ``background_blur_sigma``, ``blur_sigma``, ``motion_blur_px``, ``noise_sigma``,
    ``jpeg_quality`` (35-90: encode with :func:`encode_jpeg` at this quality, the recompression a
    phone app applies), ``person_box`` (fractions, or None), ``person_cover`` (share of frame
    pixels the person covers) and, for ID photos, ``card_box``, ``card_angle_deg``, ``hand_box``.
    """
    if kind not in PHOTO_KINDS:
        raise ValueError(f"unknown photo kind {kind!r}; expected one of {PHOTO_KINDS}")
    if scene.ndim != 3 or scene.shape[2] != 3 or scene.dtype != np.uint8:
        raise ValueError(f"scene must be uint8 (H, W, 3), got {scene.dtype} {scene.shape}")
    SH, SW = scene.shape[:2]
    W, H = int(out_width), int(out_height)
    info: dict[str, Any] = {"kind": kind}

    # --- geometry: a crop of 55-95 % of the largest view with the photo's aspect that fits in
    # the scene, a small roll and a keystone (hand tilt), all applied in one perspective warp.
    # (A square photo of a 4:3 scene can show at most 75 % of it: the share is taken of that
    # largest crop, never by stretching the picture.)
    scale = rng.uniform(0.55, 0.95)
    aspect = (W / H) * np.exp(rng.uniform(-0.03, 0.03))  # lens/sensor anisotropy: tiny
    mw = min(float(SW), SH * aspect)
    cw, ch = np.sqrt(scale) * mw, np.sqrt(scale) * mw / aspect
    # framing clusters around the middle of the room (Beta(2, 2) offsets), as people aim
    x0 = (SW - cw) * rng.beta(2.0, 2.0)
    y0 = (SH - ch) * rng.beta(2.0, 2.0)
    quad = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]], np.float64)
    rot = rng.uniform(-4.0, 4.0)
    c = quad.mean(0)
    a = np.deg2rad(rot)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    quad = (quad - c) @ R.T + c + rng.normal(0, 0.025, (4, 2)) * (cw, ch)
    # keep the quad inside the scene, no invented border pixels: slide it in first, and shrink
    # it towards its centre only where it is wider or taller than the scene
    lo, hi = quad.min(0), quad.max(0)
    lim = np.array([SW - 1.0, SH - 1.0])
    quad += np.where(hi - lo <= lim, np.clip(-lo, 0, None) - np.clip(hi - lim, 0, None), 0.0)
    c = quad.mean(0)
    over = np.maximum.reduce([np.zeros(4), -quad[:, 0] / np.maximum(c[0] - quad[:, 0], 1e-6),
                              (quad[:, 0] - (SW - 1)) / np.maximum(quad[:, 0] - c[0], 1e-6),
                              -quad[:, 1] / np.maximum(c[1] - quad[:, 1], 1e-6),
                              (quad[:, 1] - (SH - 1)) / np.maximum(quad[:, 1] - c[1], 1e-6)])
    if over.max() > 0:
        quad = c + (quad - c) * (1.0 - float(over.max()) * 1.01)
    dst = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    M = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    img = cv2.warpPerspective(scene, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    qx, qy = quad[:, 0] / SW, quad[:, 1] / SH
    info["crop_box"] = [float(qx.min()), float(qy.min()), float(qx.max()), float(qy.max())]
    d1, d2 = quad[2] - quad[0], quad[3] - quad[1]
    area = abs(d1[0] * d2[1] - d1[1] * d2[0]) / 2  # shoelace via the diagonals
    info["crop_area"] = float(area / (SW * SH))
    info["crop_scale"] = float(area / (mw * mw / aspect))
    info["rotation_deg"] = float(rot)

    # --- subject in front: the background is out of focus when someone is close to the lens
    bg_sigma = float(rng.uniform(0.6, 2.0)) if kind != "premises" else 0.0
    if bg_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), bg_sigma)
    info["background_blur_sigma"] = bg_sigma
    info["person_box"], info["person_cover"] = None, 0.0
    person_box = None
    if kind == "selfie":
        cxf = 0.5 + rng.uniform(-_PERSON_CX, _PERSON_CX)
        pw, ph = rng.uniform(*_PERSON_W), rng.uniform(*_PERSON_H)
        person_box = (cxf - pw / 2, 1.0 - ph, cxf + pw / 2, 1.0)
    elif kind == "premises" and rng.random() < 0.15:  # a passer-by or the shop keeper, smaller
        pw, ph = rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.55)
        cxf = rng.uniform(pw / 2, 1 - pw / 2)
        yb = rng.uniform(0.75, 1.0)
        person_box = (cxf - pw / 2, yb - ph, cxf + pw / 2, yb)
    if person_box is not None:
        px0, py0, px1, py1 = person_box
        mask = _draw_person(img, rng, (px0 * W, py0 * H, px1 * W, py1 * H))
        info["person_box"] = [float(v) for v in person_box]
        info["person_cover"] = float(np.count_nonzero(mask) / mask.size)
    if kind == "id_photo":
        info.update(_draw_id_card(img, rng))

    # --- photometry: exposure, white balance and light fall-off act on scene radiance, then the
    # camera's tone curve (gamma) and its saturation setting. clip(x*g)**gamma == min(1, x**gamma *
    # g**gamma), so the per-channel part is one 256-entry table (cv2.LUT) and the spatial part one
    # 2-D gain map: the same image as doing it pixel by pixel, at a fraction of the CPU.
    exposure = float(np.clip(np.exp(rng.normal(0.0, 0.18)), 0.55, 1.7))
    wb = np.exp(rng.normal(0.0, 0.045, 3))
    wb[1] = 1.0
    gamma = float(rng.uniform(0.85, 1.18))
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.stack([255.0 * np.power(levels, gamma) * (exposure * g) ** gamma for g in wb], 1)
    f = cv2.LUT(img, lut.astype(np.float32).reshape(1, 256, 3))
    # light fall-off is smooth: compute it on a 32x32 grid and upsample
    xx = np.linspace(-0.5, 0.5, 32)[None, :]
    yy = xx.T
    ang = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(ang) + yy * np.sin(ang)
    gain = (1.0 + rng.uniform(0.0, 0.35) * ramp) * (1.0 - rng.uniform(0.0, 0.5) * (xx * xx + yy * yy))
    gain = cv2.resize(np.power(gain, gamma).astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    f *= gain[..., None]
    np.minimum(f, 255.0, out=f)
    sat = float(rng.uniform(0.85, 1.12))
    grey = cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    f = cv2.addWeighted(f, sat, grey, 1.0 - sat, 0.0)
    info.update(exposure=exposure, wb_gains=[float(v) for v in wb], saturation=sat, gamma=gamma)

    # --- optics and sensor: blur (focus / hand shake), then signal-dependent noise
    blur = float(rng.uniform(0.0, 1.3))
    if blur > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), blur)
    motion = 0
    if rng.random() < 0.2:
        motion = int(rng.integers(3, 8))
        k = np.zeros((motion, motion), np.float32)
        k[motion // 2, :] = 1.0 / motion
        k = cv2.warpAffine(k, cv2.getRotationMatrix2D((motion / 2 - 0.5, motion / 2 - 0.5), rng.uniform(0, 180), 1.0), (motion, motion))
        f = cv2.filter2D(f, -1, k / max(k.sum(), 1e-6))
    read = float(rng.uniform(1.0, 4.0))
    shot = float(rng.uniform(0.1, 0.45))
    # phone noise after demosaicing/denoising: fine luminance grain + blotchy (half-res) chroma
    luma = rng.standard_normal((H, W, 1), dtype=np.float32)
    chroma = cv2.resize(rng.standard_normal(((H + 1) // 2, (W + 1) // 2, 3), dtype=np.float32), (W, H))
    chroma *= np.float32(0.6)
    chroma += luma * np.float32(0.8)
    sd = f * np.float32(shot * shot)  # photon (variance ~ signal) + read noise
    sd += np.float32(read * read)
    np.maximum(sd, np.float32(read * read), out=sd)
    chroma *= cv2.sqrt(sd)
    f += chroma
    f += np.float32(0.5)
    np.clip(f, 0, 255, out=f)
    out = f.astype(np.uint8)
    info.update(blur_sigma=blur if blur > 0.3 else 0.0, motion_blur_px=motion,
                noise_sigma=[read, shot], jpeg_quality=int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1)))
    return out, info


# ----------------------------------------------------------------------------------------------
# Codecs
# ----------------------------------------------------------------------------------------------

def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 RGB (H, W, 3) image at ``quality`` (1-100; baseline, 4:2:0)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
    q = int(quality)
    if not 1 <= q <= 100:
        raise ValueError(f"JPEG quality must be 1-100, got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray | None:
    """A uint8 RGB (H, W, 3) array from image bytes (JPEG, PNG, ...), or None if undecodable.

    Grey or alpha images come back as 3-channel RGB. Empty or corrupt input gives None, never a
    blank image: a bad file must be quarantined, not embedded.
    """
    if not data:
        return None
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if arr is None or arr.size == 0:
        return None
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------
# Looking at it
# ----------------------------------------------------------------------------------------------

_NATURAL_PHOTO = {"home": "selfie", "workplace": "selfie", "back_office": "selfie",
                  "shop": "premises", "lobby": "id_photo", "chain_store": "selfie"}


def contact_sheet(decor_seeds, kinds, *, photos_per_place: int = 4, seed: int = 0,
                  size: int = 224) -> np.ndarray:
    """A review grid: one row per (decor seed, kind), the scene then JPEG'd photos of it.

    Each place is shot with its usual photo kind (homes/offices/chain stores: selfies, shops:
    premises, lobbies: ID photos), encoded at the photo's own ``jpeg_quality`` and decoded, so the
    sheet shows exactly what a lender would receive. Returns a uint8 RGB array.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for s, k in zip(decor_seeds, kinds):
        scene = render_scene(int(s), k)
        cells = [cv2.resize(scene, (int(size * scene.shape[1] / scene.shape[0]), size), interpolation=cv2.INTER_AREA)]
        for _ in range(photos_per_place):
            img, info = photograph(scene, rng, kind=_NATURAL_PHOTO[k], out_width=size, out_height=size)
            cells.append(decode_image(encode_jpeg(img, info["jpeg_quality"])))
        rows.append(np.hstack(cells))
    return np.vstack(rows)


if __name__ == "__main__":  # python -m riskgraph.media.photos /tmp/photos_sheet.png
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else "photos_sheet.png"
    sheet = contact_sheet(range(100, 100 + len(PLACE_KINDS)), PLACE_KINDS)
    cv2.imwrite(out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(out)
