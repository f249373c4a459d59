"""Petastorm route (riskgraph/petastorm_route.py) against the same training set read by the
maintained loader and by ``to_pandas``.

Petastorm 0.13.1 cannot import here (pyarrow 25 / numpy 2), so the main environment builds
the training set and its Parquet snapshot, and ``.venv-petastorm/bin/python`` (built by
``make petastorm-env``; ``make test`` builds it first) streams every batch through
``make_batch_reader`` + ``petastorm.pytorch.DataLoader`` in a subprocess and writes what it
read to an .npz. The rows must equal ``to_pandas()``'s as a multiset, with the maintained
loader's dtypes.
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from riskgraph import tables as T
from riskgraph.training import get_training_set
# The feature-table helpers of the training-set tests (pytest puts tests/ on sys.path).
from test_training import FEATS, _row, _ts, _write_features

REPO = Path(__file__).resolve().parents[1]
PETASTORM_PY = REPO / ".venv-petastorm" / "bin" / "python"
HINT = r"run `make petastorm-env` and use \.venv-petastorm/bin/python"

# Runs in .venv-petastorm: argv = snapshot folder, output .npz, a JSON list of a Delta
# version's files. Reads the snapshot once per label (an int label and a float label with
# nulls), once more as two shards, and the Delta files' raw feature rows without a label.
READER = textwrap.dedent("""
    import json, sys
    import numpy as np, pyarrow, petastorm, torch
    from riskgraph.petastorm_route import make_petastorm_loader

    snapshot, out, delta_files = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
    res, info = {}, {"petastorm": petastorm.__version__, "pyarrow": pyarrow.__version__,
                     "numpy": np.__version__, "torch": torch.__version__}

    def read(**kw):
        with make_petastorm_loader(snapshot, batch_size=7, **kw) as loader:
            batches = list(loader)
            cols = loader.feature_cols
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        return x, y, cols, [tuple(b[0].shape) + (str(b[0].dtype), str(b[1].dtype)) for b in batches]

    for label in ("label", "weight"):
        x, y, cols, shapes = read(label_col=label)
        res[f"x_{label}"], res[f"y_{label}"] = x.numpy(), y.numpy()
        info[label] = {"feature_cols": cols, "batches": shapes, "x_dtype": str(x.dtype), "y_dtype": str(y.dtype)}
    for r in range(2):
        x, y, _, _ = read(label_col="label", rank=r, world_size=2)
        res[f"x_shard{r}"], res[f"y_shard{r}"] = x.numpy(), y.numpy()
    feats = info["label"]["feature_cols"]
    with make_petastorm_loader(delta_files, batch_size=7, label_col=None, feature_cols=feats) as loader:
        res["x_delta"] = torch.cat(list(loader)).numpy()
    info["pyspark_imported"] = "pyspark" in sys.modules
    np.savez(out, **res)
    print(json.dumps(info))
""")


def _rows(x, y) -> np.ndarray:
    """(x | y) as float64 rows in a canonical order (NaN sorts first), to compare multisets."""
    m = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    key = np.where(np.isnan(m), -np.inf, m)
    return m[np.lexsort(key.T[::-1])]


def _collect(loader):
    batches = list(loader)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


@pytest.fixture()
def petastorm_python():
    if not PETASTORM_PY.exists():
        if os.environ.get("CI"):  # CI runs `make test`, which builds the env: a skip there would hide a broken build
            pytest.fail(f"{PETASTORM_PY} missing in CI: `make test` should have built it (make petastorm-env)")
        pytest.skip("run make petastorm-env (builds .venv-petastorm/, the Petastorm route's own environment)")
    return PETASTORM_PY


def test_petastorm_loader_reads_the_training_set_like_the_maintained_loader(spark, cfg_factory, tmp_path, petastorm_python):
    cfg = cfg_factory()
    n = 40
    rows = [_row(f"A{i:03d}", f"P{i}", _ts(1) + dt.timedelta(hours=i), i, 10 * i, None if i % 7 == 0 else i / 2)
            for i in range(n)]
    _write_features(spark, cfg, rows, "load")
    spine = [(r["application_id"], r["as_of_ts"], i % 3, None if i % 5 == 0 else i / 4) for i, r in enumerate(rows)]
    spine += [("A999", _ts(3), 1, 0.5),                     # unknown entity: all features null
              ("A001", _ts(1), 0, None)]                     # before its feature row: all features null
    ts = get_training_set(spark, cfg, spark.createDataFrame(spine, "application_id string, as_of_ts timestamp, label int, weight double"),
                          features=FEATS)
    files = ts.write_snapshot(num_files=3)
    assert len(files) == 3
    expected = ts.to_pandas()
    assert len(expected) == n + 2

    # a Delta version's data files as delta-rs lists them: plain local paths, partition folders
    from deltalake import DeltaTable

    (tmp_path / "delta_files.json").write_text(json.dumps(DeltaTable(T.FEATURES.uri(cfg), version=0).file_uris()))

    proc = subprocess.run([str(petastorm_python), "-c", READER, ts.snapshot_path, str(tmp_path / "read.npz"),
                           str(tmp_path / "delta_files.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, f"petastorm reader failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    got = np.load(tmp_path / "read.npz")

    # the environment is the one requirements-petastorm.txt pins, and reading needs no pyspark
    assert (info["petastorm"], info["pyarrow"], info["numpy"][:5]) == ("0.13.1", "14.0.2", "1.26.")
    assert info["pyspark_imported"] is False

    x_pd = expected[FEATS].astype("float64").to_numpy()
    for label, y_dtype in (("label", torch.int64), ("weight", torch.float32)):
        # maintained loader over the same snapshot: the reference for columns and dtypes
        mx, my = _collect(ts.torch_loader(batch_size=7, label_col=label))
        assert (mx.dtype, my.dtype) == (torch.float32, y_dtype)
        meta = info[label]
        assert meta["feature_cols"] == FEATS == list(ts.features)
        assert (meta["x_dtype"], meta["y_dtype"]) == (str(mx.dtype), str(my.dtype))
        assert all(b[0] <= 7 and b[1] == len(FEATS) for b in meta["batches"])
        px, py = got[f"x_{label}"], got[f"y_{label}"]
        assert px.dtype == np.float32 and py.dtype == my.numpy().dtype
        y_pd = expected[label].astype("float64").to_numpy()
        want = _rows(x_pd, y_pd)
        # same rows as a multiset, same values (float32 vs float64: tolerance), nulls as NaN
        np.testing.assert_allclose(_rows(px, py), want, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(_rows(mx.numpy(), my.numpy()), want, rtol=1e-6, equal_nan=True)
    assert np.isnan(got["y_weight"]).sum() == expected["weight"].isna().sum() > 0
    assert np.isnan(got["x_label"]).all(axis=1).sum() == 2  # the two unmatched spine rows

    # the Delta version's raw feature rows, no spine, no label
    delta_rows = np.array([[r[f] if r[f] is not None else np.nan for f in FEATS] for r in rows], dtype=np.float64)
    np.testing.assert_allclose(_rows(got["x_delta"], np.zeros(len(got["x_delta"]))), _rows(delta_rows, np.zeros(n)),
                               rtol=1e-6, equal_nan=True)

    # two shards (row groups split between ranks): disjoint, together every row once
    shards = [_rows(got[f"x_shard{r}"], got[f"y_shard{r}"]) for r in range(2)]
    assert all(len(s) for s in shards)
    np.testing.assert_allclose(_rows(np.concatenate([got["x_shard0"], got["x_shard1"]]),
                                     np.concatenate([got["y_shard0"], got["y_shard1"]])),
                               _rows(x_pd, expected["label"].to_numpy()), rtol=1e-6, equal_nan=True)


def test_importing_the_route_in_the_main_env_says_which_env_to_use():
    sys.modules.pop("riskgraph.petastorm_route", None)
    with pytest.raises(ImportError, match=HINT) as e:
        importlib.import_module("riskgraph.petastorm_route")
    # the cause is kept: here petastorm is not installed, or fails on pyarrow 25 if it were
    assert "petastorm" in str(e.value) or "pyarrow" in str(e.value)
    assert "riskgraph.petastorm_route" not in sys.modules
