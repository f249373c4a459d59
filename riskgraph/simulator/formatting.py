"""Text helpers: numeric arrays -> Arrow string arrays, and CSV lines.

No randomness here. The world is kept numeric until a block of landing rows is written; these
turn a block's columns into text (ids, timestamps, fixed-decimal GPS, dotted IPs) vectorised.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _ascii(codes: np.ndarray) -> pa.Array:
    """An (n, w) uint8 array of ASCII codes -> n strings of width w."""
    n, width = codes.shape
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(codes, dtype=np.uint8))).cast(pa.string())


def _base36(values: np.ndarray, width: int) -> pa.Array:
    """Non-negative ints -> fixed-width base-36 codes (left-padded with "0")."""
    alphabet = np.frombuffer(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", dtype=np.uint8)  # no I/O lookalikes
    v = values.astype(np.int64).copy()
    out = np.empty((len(v), width), dtype=np.uint8)
    for i in range(width - 1, -1, -1):
        out[:, i] = alphabet[v % len(alphabet)]
        v //= len(alphabet)
    return _ascii(out)


def _fmt_int(x: np.ndarray) -> pa.Array:
    """Integers -> decimal text."""
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


def _fmt_id(prefix: str, x: np.ndarray, width: int = 8) -> pa.Array:
    """Integers -> ``prefix`` + zero-padded number, e.g. ``A00000042``."""
    return pa.array(np.strings.add(prefix, np.strings.zfill(np.asarray(x, dtype=np.int64).astype(str), width)))


def _fmt_ts(ts: np.ndarray) -> pa.Array:
    """Seconds since 1970 -> ISO-8601 UTC text, e.g. ``2026-01-02T03:04:05Z``."""
    return pa.array(np.datetime_as_string(np.asarray(ts, dtype=np.int64).astype("datetime64[s]"), unit="s", timezone="UTC"))


def _fmt_fixed6(x: np.ndarray) -> pa.Array:
    """Floats with 6 decimals; NaN -> empty."""
    nan = np.isnan(x)
    v = np.rint(np.where(nan, 0.0, x) * 1e6).astype(np.int64)
    a = np.abs(v)
    s = np.strings.add(np.strings.add((a // 1_000_000).astype(str), "."), np.strings.zfill((a % 1_000_000).astype(str), 6))
    s = np.where(v < 0, np.strings.add("-", s), s)
    return pa.array(np.where(nan, "", s))


def _fmt_ip(ip: np.ndarray) -> pa.Array:
    """uint32 IPv4 addresses -> dotted quads."""
    ip = ip.astype(np.int64)
    return pc.binary_join_element_wise(*[_fmt_int((ip >> s) & 255) for s in (24, 16, 8, 0)], ".")


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` for a numpy index array."""
    return pc.take(values, pa.array(np.asarray(idx, dtype=np.int64)))


def _replace(col: pa.Array, mask: np.ndarray, values: list[str]) -> pa.Array:
    """``col`` with the rows under ``mask`` replaced, in order, by ``values`` (few rows: defects)."""
    if not mask.any():
        return col
    return pc.replace_with_mask(col, pa.array(mask), pa.array(values, pa.string()))


def _csv_lines(cols: list[pa.Array]) -> pa.Array:
    """One CSV line per row: fields holding a comma, quote or line break are quoted."""
    out = []
    for c in cols:
        needs = pc.match_substring_regex(c, '[,"\r\n]')
        if pc.any(needs).as_py():
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(c, '"', '""'), '"', "")
            c = pc.if_else(needs, quoted, c)
        out.append(c)
    return pc.binary_join_element_wise(*out, ",")


def _first_occurrence(values: pa.Array) -> np.ndarray:
    """Mask of the first occurrence of each value (hash-based: fast on strings)."""
    codes = pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(len(codes), dtype=bool)
    keep[first] = True
    return keep
