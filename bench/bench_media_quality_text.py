"""Template recall of the text embedder on held-out intermediaries' templates.

The fraud pattern in text is coaching: one intermediary's template, lightly edited, as many
gang members' loan purposes (``riskgraph.media.texts``). The benchmark:

* fits the char n-gram model (``text-char-ngram-svd``, the embed step's default) on a *train*
  corpus: coached copies of ``--train-templates`` templates plus honest purposes, as the embed
  step fits it on the training period's texts;
* embeds a *test* corpus whose templates come from a disjoint seed range: ``--test-templates``
  templates x ``--copies`` coached copies, mixed with ``--honest`` honest purposes (the common
  short phrases every stranger writes included);
* reports, for the coached copies: template recall@1 (the nearest other text is a copy of the
  same template), recall@k, and the ROC AUC of the cosine for same-template vs other pairs;
  for honest texts: the share whose nearest neighbour scores above the link threshold (the
  data-calibrated threshold at ``--fmr`` on the test corpus's honest pairs), i.e. how often an
  honest purpose would look coached.

    .venv/bin/python bench/bench_media_quality_text.py [--train-templates 200 --test-templates 100
        --copies 8 --honest 3000 --fmr 1e-4] [--out docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from riskgraph.embedders.background import topk  # noqa: E402
from riskgraph.embedders.text import CharNgramSettings, CharNgramTextEmbedder  # noqa: E402
from riskgraph.features.similarity import calibrate_threshold  # noqa: E402
from riskgraph.media.texts import coached_text, honest_text, template_from_seed  # noqa: E402

TRAIN_SEEDS = 0          # template seeds [0, n) train, [1_000_000, 1_000_000 + n) test: disjoint
TEST_SEEDS = 1_000_000


def corpus(first_seed: int, n_templates: int, copies: int, n_honest: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts and their template label (-1 honest)."""
    rng = np.random.default_rng(seed)
    texts, label = [], []
    for t in range(n_templates):
        tpl = template_from_seed(first_seed + t)
        for _ in range(copies):
            texts.append(coached_text(tpl, rng))
            label.append(t)
    for _ in range(n_honest):
        texts.append(honest_text(rng))
        label.append(-1)
    return texts, np.array(label)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-templates", type=int, default=200)
    ap.add_argument("--test-templates", type=int, default=100)
    ap.add_argument("--copies", type=int, default=8, help="coached copies per template")
    ap.add_argument("--honest", type=int, default=3000, help="honest purposes in each corpus")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--fmr", type=float, default=1e-4, help="false-match rate of the link threshold")
    ap.add_argument("--out", default=None, help="append the table to this Markdown file")
    a = ap.parse_args(argv)
    t0 = time.time()

    train, _ = corpus(TRAIN_SEEDS, a.train_templates, a.copies, a.honest, seed=1)
    test, lab = corpus(TEST_SEEDS, a.test_templates, a.copies, a.honest, seed=2)
    model = CharNgramTextEmbedder.fit(train, CharNgramSettings())
    t1 = time.time()
    emb = model.embed_batch(test)
    embed_s = time.time() - t1

    coached = lab >= 0
    idx, sc = topk(emb, a.k)
    top_lab = lab[idx]
    r1 = float(np.mean(top_lab[coached, 0] == lab[coached]))
    rk = float(np.mean((top_lab[coached] == lab[coached, None]).any(1)))
    s = emb @ emb.T
    iu = np.triu_indices(len(lab), 1)
    both = coached[iu[0]] & coached[iu[1]]
    same = (lab[iu[0]] == lab[iu[1]]) & both
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(same[both], s[iu][both]))
    # the link threshold as link_media's data calibration would set it: honest texts only are
    # strangers for sure here (owners = their index), so this is a clean impostor quantile
    # except for strangers typing one stock phrase, which calibrate_threshold leaves out
    honest_idx = np.flatnonzero(~coached)
    cal = calibrate_threshold(emb[honest_idx], honest_idx, false_match_rate=a.fmr)
    thr = cal["threshold"]
    honest_linked = float(np.mean(sc[~coached, 0] >= thr))
    coached_linked = float(np.mean(sc[coached, 0] >= thr))

    lines = [f"Train: {a.train_templates} templates x {a.copies} coached copies + {a.honest} honest purposes (fit); "
             f"held-out test: {a.test_templates} other templates x {a.copies} copies + {a.honest} honest purposes. "
             f"Model `text-char-ngram-svd` (dim {model.dim}, version {model.model_version}).", "",
             "| metric | value |", "|---|---|",
             f"| template recall@1 (coached copies: the nearest other text is a copy of the same template) | {r1:.3f} |",
             f"| template recall@{a.k} | {rk:.3f} |",
             f"| same-template ROC AUC (pairs of coached copies) | {auc:.3f} |",
             f"| link threshold at FMR {a.fmr:g} (honest pairs; {cal['n_identical']} identical stranger pairs left out) | {thr:.4f} |",
             f"| coached copies whose nearest neighbour passes it | {coached_linked:.3f} |",
             f"| honest purposes whose nearest neighbour passes it | {honest_linked:.3f} |",
             f"| embedding throughput (1 process) | {len(test) / embed_s:,.0f} texts/s |",
             "", f"Bench wall time {time.time() - t0:.0f} s.", ""]
    table = "\n".join(lines)
    print(table)
    if a.out:
        from _report import append_markdown

        append_markdown(a.out, Path(__file__).name, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
