"""Text embedders: char n-gram LSA (offline default) and a transformer from a local folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from riskgraph.embedders.base import Embedder
from riskgraph.embedders.registry import UnknownModelError, build_embedder, choose_device
from riskgraph.embedders.text import (CharNgramSettings, CharNgramTextEmbedder, TextModelError, TransformerTextEmbedder,
                                      char_ngrams, decode_text)

TEMPLATES = [
    "I need the loan to buy stock for my grocery shop before the holiday season",
    "Renovating the kitchen and bathroom of our apartment after water damage",
    "Paying the tuition fee for my daughter's university semester abroad",
    "Purchasing a used delivery van for my courier business",
    "Medical treatment for my father, surgery costs not covered by insurance",
    "Consolidating credit card debts into one monthly payment",
    "我需要这笔贷款为我的服装店进货，准备春节销售",
    "用于装修新买的房子，包括厨房和卫生间",
]
FILLERS = ["please", "urgently", "as soon as possible", "thank you", "for my family", "this month", "谢谢", "尽快"]


def corpus(seed: int = 0, per_template: int = 12) -> list[str]:
    """Honest-looking variants of each template: a filler added, a word dropped."""
    rng = np.random.default_rng(seed)
    out = []
    for t in TEMPLATES:
        for _ in range(per_template):
            words = t.split(" ")
            if len(words) > 3:
                del words[int(rng.integers(len(words)))]
            out.append(" ".join(words) + " " + FILLERS[int(rng.integers(len(FILLERS)))])
    return out


@pytest.fixture(scope="module")
def model() -> CharNgramTextEmbedder:
    return CharNgramTextEmbedder.fit(corpus(), CharNgramSettings(dim=32, n_features=2**18))


# ------------------------------------------------------------------------------ n-grams, decoding
def test_char_ngrams_are_word_bounded_lowercased_3_to_5():
    assert char_ngrams("Ab  cD") == [" ab", "ab ", " ab ", " cd", "cd ", " cd "]
    assert char_ngrams("x") == [" x "]
    grams = char_ngrams("loan")
    assert grams == [" lo", "loa", "oan", "an ", " loa", "loan", "oan ", " loan", "loan "]
    assert not any(" " in g.strip() for g in char_ngrams("two words"))  # never across a word boundary


@pytest.mark.parametrize("variant,plain", [("ＬＯＡＮ　ＦＯＲ ＳＨＯＰ", "loan for shop"), ("ﬁnance", "finance"),
                                           ("Loan\tfor\n\nSHOP", "loan for shop")],
                         ids=["fullwidth", "ligature", "case-and-whitespace"])
def test_nfkc_case_and_whitespace_fold_to_the_same_ngrams_and_vector(model, variant, plain):
    assert char_ngrams(variant) == char_ngrams(plain)
    a, b = model.embed_batch([variant, plain])
    assert np.array_equal(a, b)


def test_decode_text():
    assert decode_text("贷款 for shop".encode()) == "贷款 for shop"
    assert decode_text(b"\xef\xbb\xbfhello") == "hello"  # BOM dropped
    assert decode_text(b"\xff\xfe\x00bad") is None  # not UTF-8
    assert decode_text(b"  \n\t ") is None
    assert decode_text(b"") is None


# ------------------------------------------------------------------------------ TF-IDF and fit
def test_tfidf_matches_sklearn_reference():
    """With every bucket kept, the model's TF-IDF rows equal sklearn's TfidfTransformer
    (sublinear tf, smoothed idf, l2) on the same hashed counts."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    from riskgraph.embedders.text import normalise_text

    texts = corpus(1, per_template=3)
    s = CharNgramSettings(dim=8, n_features=2**16, min_df=1)
    m = CharNgramTextEmbedder.fit(texts, s)
    counts = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**16, preprocessor=normalise_text,
                               alternate_sign=False, norm=None).transform(texts)
    ref = TfidfTransformer(sublinear_tf=True).fit(counts).transform(counts).toarray()
    assert sorted(set(counts.nonzero()[1])) == m.columns.tolist()
    np.testing.assert_allclose(m.tfidf(texts).toarray(), ref[:, m.columns], rtol=1e-12, atol=1e-12)


def test_min_df_and_max_columns_limit_the_kept_buckets():
    texts = corpus(2, per_template=4) + ["xylophone quartz"]  # n-grams seen once
    full = CharNgramTextEmbedder.fit(texts, CharNgramSettings(dim=8, n_features=2**16, min_df=1))
    df2 = CharNgramTextEmbedder.fit(texts, CharNgramSettings(dim=8, n_features=2**16, min_df=2))
    capped = CharNgramTextEmbedder.fit(texts, CharNgramSettings(dim=8, n_features=2**16, min_df=1, max_columns=100))
    from sklearn.feature_extraction.text import HashingVectorizer

    from riskgraph.embedders.text import normalise_text

    counts = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**16, preprocessor=normalise_text,
                               alternate_sign=False, norm=None).transform(texts)
    df = np.bincount(counts.nonzero()[1], minlength=2**16)
    assert df2.columns.tolist() == np.flatnonzero(df >= 2).tolist()
    assert set(df2.columns) < set(full.columns)
    # the kept buckets are the most frequent ones
    assert len(capped.columns) == 100 and set(capped.columns) <= set(full.columns)
    assert df[capped.columns].min() >= np.sort(df[full.columns])[::-1][99]


def test_fit_is_deterministic_and_vectors_are_unit_rows(model):
    again = CharNgramTextEmbedder.fit(corpus(), CharNgramSettings(dim=32, n_features=2**18))
    assert again.model_version == model.model_version
    assert np.array_equal(again.components, model.components)
    x = model.embed_batch(TEMPLATES)
    assert x.dtype == np.float32 and x.shape == (len(TEMPLATES), 32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(x, again.embed_batch(TEMPLATES))
    other = CharNgramTextEmbedder.fit(corpus(), CharNgramSettings(dim=32, n_features=2**18, seed=1))
    assert other.model_version != model.model_version  # settings enter the version


def test_dim_shrinks_to_the_corpus():
    m = CharNgramTextEmbedder.fit(TEMPLATES[:4] * 2, CharNgramSettings(dim=128, n_features=2**16))
    assert m.dim == 7  # n_texts - 1
    with pytest.raises(ValueError, match="at least 2"):
        CharNgramTextEmbedder.fit(["only one"], CharNgramSettings())


def test_a_text_sharing_no_ngram_with_training_maps_to_zero(model):
    z = model.embed_batch(["qqqq zzzz"])
    assert not np.any(z)  # the embed job reports it as zero_vector and writes nothing


def test_coached_edit_is_nearest_its_template(model):
    """An intermediary's template, edited the way coached applicants do (typo, swapped and
    dropped words, a filler), stays nearer its template than any other template."""
    edits = [
        "i need teh loan to buy stock for my grocery shop before holiday season, please",
        "renovating kitchen and the bathroom of our flat after water damage",
        "paying tuition fees for my daughters university semester abroad thanks",
        "purchasing used delivery van for the courier business urgently",
        "medical treatment for father, the surgery costs are not covered by insurance",
        "consolidate my credit card debts into one monthly payment",
        "我需要这笔贷款给服装店进货，春节销售用",
        "装修新买的房子，厨房和卫生间",
    ]
    sims = model.embed_batch(edits) @ model.embed_batch(TEMPLATES).T
    assert sims.argmax(axis=1).tolist() == list(range(len(TEMPLATES)))
    assert (np.diag(sims) - np.sort(sims, axis=1)[:, -2]).min() > 0.1  # by a margin, not a tie


# ------------------------------------------------------------------------------ save / load
def test_save_load_identity_and_tamper_check(model, tmp_path):
    d = tmp_path / "text-model"
    v = model.save(d)
    assert v == model.model_version
    back = CharNgramTextEmbedder.load(d)
    assert back.model_version == model.model_version and back.dim == model.dim
    assert np.array_equal(back.embed_batch(TEMPLATES), model.embed_batch(TEMPLATES))
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["training"]["n_texts"] == len(corpus())
    with np.load(d / "weights.npz", allow_pickle=False) as w:  # arrays only
        assert sorted(w.files) == ["columns", "components", "idf"]
        arrays = {k: w[k] for k in w.files}
    arrays["idf"] = arrays["idf"] * 1.01
    np.savez_compressed(d / "weights.npz", **arrays)
    with pytest.raises(TextModelError, match="changed after it was saved"):
        CharNgramTextEmbedder.load(d)
    with pytest.raises(TextModelError, match="does not exist"):
        CharNgramTextEmbedder.load(tmp_path / "nope")


def test_model_implements_the_protocol(model):
    assert isinstance(model, Embedder)
    assert (model.model_id, model.modality, model.device) == ("text-char-ngram-svd", "text", "cpu")
    assert model.decode("Loan".encode()) == "Loan"


# ------------------------------------------------------------------------------ transformer
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random-init BERT (real architecture) and a WordPiece tokenizer, saved like a hub folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w for t in TEMPLATES[:6] for w in t.lower().replace(",", "").split()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    fast.save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).eval().save_pretrained(d)
    return d


def test_transformer_mean_pools_real_tokens_only(tiny_bert, monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = TransformerTextEmbedder.from_folder(tiny_bert, max_length=64)
    assert isinstance(emb, Embedder) and emb.dim == 32 and emb.device == "cpu"
    short, long = "buy stock for my shop", TEMPLATES[0]
    both = emb.embed_batch([short, long])
    alone = emb.embed_batch([short])
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)  # padding never enters the mean
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-6)
    # by hand: masked mean of the last hidden states, then L2
    enc = emb.tokenizer([short], return_tensors="pt")
    with torch.inference_mode():
        h = emb.model(**enc).last_hidden_state[0].numpy()
    ref = h.mean(axis=0)
    np.testing.assert_allclose(alone[0], ref / np.linalg.norm(ref), atol=1e-5)
    assert emb.decode(b"\xff") is None


def test_transformer_version_tracks_weights(tiny_bert, tmp_path):
    import shutil

    from transformers import BertModel

    a = TransformerTextEmbedder.from_folder(tiny_bert)
    assert TransformerTextEmbedder.from_folder(tiny_bert).model_version == a.model_version
    d = tmp_path / "changed"
    shutil.copytree(tiny_bert, d)
    m = BertModel.from_pretrained(d, local_files_only=True)
    with __import__("torch").no_grad():
        m.pooler.dense.bias[0] += 1.0
    m.save_pretrained(d)
    assert TransformerTextEmbedder.from_folder(d).model_version != a.model_version
    with pytest.raises(TextModelError):
        TransformerTextEmbedder.from_folder(tmp_path / "missing")


# ------------------------------------------------------------------------------ registry
def test_registry_builds_the_text_models(model, tiny_bert, tmp_path):
    d = tmp_path / "m"
    model.save(d)
    e = build_embedder("text", {"model": "text-char-ngram-svd", "folder": str(d)}, device="cpu")
    assert isinstance(e, CharNgramTextEmbedder) and e.model_version == model.model_version
    t = build_embedder("text", {"model": "text-transformer", "folder": str(tiny_bert), "params": {"max_length": 16}},
                       device="cpu")
    assert isinstance(t, TransformerTextEmbedder) and t.max_length == 16
    with pytest.raises(UnknownModelError, match="unknown modality"):
        build_embedder("smell", {"model": "x"}, device="cpu")
    with pytest.raises(UnknownModelError, match="unknown model"):
        build_embedder("text", {"model": "text-bag-of-words", "folder": str(d)}, device="cpu")
    with pytest.raises(UnknownModelError, match="needs a folder"):
        build_embedder("text", {"model": "text-char-ngram-svd"}, device="cpu")
    with pytest.raises(UnknownModelError, match="unknown settings"):
        build_embedder("text", {"model": "text-char-ngram-svd", "folder": str(d), "colour": "red"}, device="cpu")


def test_choose_device_on_the_driver():
    import torch

    assert choose_device(False) == "cpu"
    assert choose_device(True) == ("cuda:0" if torch.cuda.is_available() else "cpu")
