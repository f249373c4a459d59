"""Loan-purpose texts: determinism, coached copies stay near their template, honest people reuse
common phrases. Pure Python, no Spark; a second or so."""
from __future__ import annotations

import re

import numpy as np
import pytest

from riskgraph.media.texts import (
    COMMON_PURPOSES,
    coached_text,
    honest_text,
    number_to_words,
    template_from_seed,
)


def trigrams(text: str) -> set[str]:
    """Character 3-grams of the lower-cased text with whitespace collapsed."""
    t = re.sub(r"\s+", " ", text.lower())
    return {t[i:i + 3] for i in range(len(t) - 2)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def test_template_is_a_function_of_the_seed():
    assert template_from_seed(42) == template_from_seed(42)
    texts = [template_from_seed(s) for s in range(300)]
    assert len(set(texts)) == 300, "every intermediary writes a different template"
    for t in texts:
        n_sentences = len(re.findall(r"[.!?](\s|$)", t))
        assert 2 <= n_sentences <= 4, t
        assert t.isascii() and "{" not in t and "}" not in t, t


def test_template_rejects_negative_seed():
    with pytest.raises(ValueError, match="non-negative"):
        template_from_seed(-1)


def test_coached_text_is_deterministic_and_mostly_edited():
    template = template_from_seed(7)
    a = [coached_text(template, np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(11)
    copies = [coached_text(template, rng) for _ in range(300)]
    edited = [c for c in copies if c != template]
    # ~10% verbatim pastes; the rest carry edits, and the edits vary between members.
    assert 0.8 <= len(edited) / len(copies) <= 0.97
    assert len(set(edited)) > 150


@pytest.mark.parametrize("n_templates", [60], ids=["60-intermediaries"])
def test_coached_copy_is_nearest_its_own_template(n_templates):
    templates = [template_from_seed(1000 + s) for s in range(n_templates)]
    grams = [trigrams(t) for t in templates]
    rng = np.random.default_rng(5)
    wins, own_sims, other_max = 0, [], []
    n = 0
    for i, t in enumerate(templates):
        for _ in range(10):
            g = trigrams(coached_text(t, rng))
            sims = np.array([jaccard(g, h) for h in grams])
            own, best_other = sims[i], np.delete(sims, i).max()
            wins += own > best_other
            own_sims.append(own)
            other_max.append(best_other)
            n += 1
    assert wins / n >= 0.95, f"own template nearest for only {wins}/{n}"
    # Recognisably the same text, and clearly apart from the nearest other template.
    assert np.median(own_sims) > 0.75
    assert np.median(other_max) < 0.5


def test_honest_people_reuse_short_phrases():
    rng = np.random.default_rng(2024)
    texts = [honest_text(rng) for _ in range(2000)]
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    dupes = {t: c for t, c in counts.items() if c > 1}
    assert len(dupes) >= 10, "strangers must sometimes write exactly the same purpose"
    assert len(counts) > 800, "but most texts are not copies of each other"
    # The shared texts are the short common phrases, not long coached-looking paragraphs:
    # whole sentences of people's own rarely coincide.
    assert np.mean([len(t.split()) <= 8 for t in dupes]) > 0.9
    long = [t for t in texts if len(t.split()) >= 10]
    assert len(long) > 200 and len(set(long)) / len(long) > 0.95
    assert all(t.isascii() and "{" not in t for t in texts)
    assert [honest_text(np.random.default_rng(9)) for _ in range(3)] == [
        honest_text(np.random.default_rng(9))] * 3


def test_honest_texts_are_not_near_any_template():
    template_grams = [trigrams(template_from_seed(s)) for s in range(60)]
    rng = np.random.default_rng(77)
    near = 0
    for _ in range(500):
        g = trigrams(honest_text(rng))
        near += max(jaccard(g, h) for h in template_grams) > 0.5
    assert near <= 5


def test_common_purposes_are_unique_short_phrases():
    assert len(set(COMMON_PURPOSES)) == len(COMMON_PURPOSES) >= 60
    assert all(1 <= len(p.split()) <= 5 for p in COMMON_PURPOSES)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (15, "fifteen"), (40, "forty"), (58, "fifty-eight"),
    (100, "one hundred"), (305, "three hundred and five"), (1005, "one thousand and five"),
    (30000, "thirty thousand"), (125000, "one hundred and twenty-five thousand"),
    (2_000_500, "two million five hundred"),
], ids=lambda v: str(v))
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_to_words_range():
    with pytest.raises(ValueError):
        number_to_words(-1)
    with pytest.raises(ValueError):
        number_to_words(10**9)
