"""Loan-purpose texts as vectors: character n-gram LSA (the offline default) and transformers.

Two :class:`~riskgraph.embedders.base.Embedder` implementations for the ``text`` modality:

* :class:`CharNgramTextEmbedder` (``text-char-ngram-svd``): Unicode NFKC + lower-casing ->
  character 3..5-grams inside word boundaries (padded with a space at each end of a word) ->
  hashed into ``n_features`` buckets (scikit-learn's ``HashingVectorizer``, MurmurHash3, no
  alternating signs) -> sublinear TF-IDF with the IDF fitted on a training corpus -> a
  truncated SVD to ``dim`` dimensions (latent semantic analysis: Deerwester et al., JASIS 1990)
  -> L2. Character n-grams survive what coached applicants do to a template: re-ordered
  clauses, swapped words, typos, other scripts (Chinese has no spaces between words, so word
  n-grams would see one token per clause). No weights to download; fitted by :meth:`fit`,
  stored as ``config.json`` + ``weights.npz`` (arrays only, nothing pickled).
* :class:`TransformerTextEmbedder` (``text-transformer``): any Hugging Face encoder from a
  local folder (``AutoTokenizer`` / ``AutoModel`` with ``local_files_only=True``: never a hub),
  mean pooling of the last hidden states over real tokens (Reimers & Gurevych,
  Sentence-BERT, EMNLP 2019), L2.

Both decode a file's bytes as UTF-8 (a byte-order mark is dropped); bytes that are not UTF-8,
or hold only whitespace, decode to None and are skipped by the embed job.
"""
from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from riskgraph.embedders.base import l2_normalise, version_digest

log = logging.getLogger("riskgraph.embedders.text")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
CHAR_NGRAM_MODEL_ID = "text-char-ngram-svd"
TRANSFORMER_MODEL_ID = "text-transformer"


class TextModelError(FileNotFoundError):
    """A text model folder is missing or does not hold what its model needs."""


def decode_text(data: bytes) -> str | None:
    """UTF-8 bytes -> str (BOM dropped); None when not UTF-8 or only whitespace."""
    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return text if text.strip() else None


def normalise_text(text: str) -> str:
    """NFKC (full-width Latin, ligatures and compatibility forms fold to their plain letters,
    so 'ＬＯＡＮ' and 'loan' share n-grams) then lower-case. Whitespace runs are collapsed by
    the word-boundary analyzer itself."""
    return unicodedata.normalize("NFKC", text).lower()


# --------------------------------------------------------------------------------------------
# character n-grams -> TF-IDF -> SVD


@dataclass(frozen=True)
class CharNgramSettings:
    """Hyper-parameters of the char n-gram model (all of them enter its version)."""

    ngram_min: int = 3
    ngram_max: int = 5
    n_features: int = 2**20  # hash buckets; collisions are rare at this size for a corpus of loan purposes
    dim: int = 128  # SVD dimensions (fewer when the corpus is smaller)
    min_df: int = 2  # an n-gram seen in one training text only says nothing about reuse
    max_columns: int = 200_000  # most frequent hashed n-grams kept (bounds the stored matrix: dim x this)
    svd_iter: int = 7  # randomized SVD power iterations (Halko et al., SIAM Review 2011)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise ValueError(f"need 1 <= ngram_min <= ngram_max, got {self.ngram_min}..{self.ngram_max}")
        if self.n_features < 2 or self.dim < 1 or self.min_df < 1 or self.max_columns < 2:
            raise ValueError(f"invalid char n-gram settings {self}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CharNgramSettings":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown char n-gram settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _hashing_vectorizer(s: CharNgramSettings):
    from sklearn.feature_extraction.text import HashingVectorizer

    # norm=None + alternate_sign=False: raw counts per bucket; TF-IDF and L2 are applied here
    # so the IDF can be fitted (HashingVectorizer is stateless) and stored with the model.
    return HashingVectorizer(analyzer="char_wb", ngram_range=(s.ngram_min, s.ngram_max), n_features=s.n_features,
                             preprocessor=normalise_text, alternate_sign=False, norm=None, dtype=np.float64)


def char_ngrams(text: str, settings: CharNgramSettings = CharNgramSettings()) -> list[str]:
    """The n-grams the model counts for ``text`` (before hashing), in order: for each word,
    its n-grams with the word padded by one space on each side."""
    return _hashing_vectorizer(settings).build_analyzer()(text)


def _sublinear_tfidf_rows(counts, idf: np.ndarray):
    """In place: tf -> 1 + ln(tf), times IDF, rows scaled to unit L2 (sklearn's TfidfTransformer
    with sublinear_tf=True, norm='l2'). ``counts`` is CSR restricted to the model's columns."""
    from sklearn.preprocessing import normalize

    counts.data = 1.0 + np.log(counts.data)
    counts.data *= idf[counts.indices]
    return normalize(counts, norm="l2", copy=False)


@dataclass
class CharNgramTextEmbedder:
    """Character n-gram LSA text embedder (``text-char-ngram-svd``); see the module docstring.

    Build with :meth:`fit` (texts of the training period) or :meth:`load` (a folder written by
    :meth:`save`). ``columns`` are the hashed n-gram buckets kept (sorted), ``idf`` their IDF,
    ``components`` the ``(dim, len(columns))`` SVD basis. ``embed_batch`` of str -> ``(n, dim)``
    float32, L2-normalised; a text sharing no n-gram with the training corpus maps to a zero
    row (no evidence), which the embed job reports and skips.
    """

    settings: CharNgramSettings
    columns: np.ndarray
    idf: np.ndarray
    components: np.ndarray
    training: dict[str, Any] = field(default_factory=dict)  # facts about the fit; not part of the version
    model_id: str = CHAR_NGRAM_MODEL_ID
    modality: str = "text"
    device: str = "cpu"
    model_version: str = field(init=False)
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.columns = np.asarray(self.columns, dtype=np.int64)
        self.idf = np.asarray(self.idf, dtype=np.float64)
        self.components = np.asarray(self.components, dtype=np.float32)
        k, n = self.components.shape
        if self.columns.shape != (n,) or self.idf.shape != (n,):
            raise ValueError(f"columns {self.columns.shape} / idf {self.idf.shape} do not match components {self.components.shape}")
        if n and (np.any(np.diff(self.columns) <= 0) or self.columns[0] < 0 or self.columns[-1] >= self.settings.n_features):
            raise ValueError("columns must be strictly increasing bucket indices below n_features")
        self.dim = int(k)
        self.model_version = version_digest(asdict(self.settings), self.columns, self.idf.astype(np.float32), self.components)
        self._vectorizer = _hashing_vectorizer(self.settings)
        # bucket -> position among the kept columns (-1: not kept); 4 bytes x n_features
        self._position = np.full(self.settings.n_features, -1, dtype=np.int32)
        self._position[self.columns] = np.arange(n, dtype=np.int32)

    # -- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(cls, texts: Sequence[str], settings: CharNgramSettings | dict | None = None,
            training: dict[str, Any] | None = None) -> "CharNgramTextEmbedder":
        """Fit IDF and SVD on ``texts`` (the training period's loan purposes).

        Keeps buckets seen in at least ``min_df`` texts (the ``max_columns`` most frequent,
        ties by bucket index), IDF = ln((1 + n) / (1 + df)) + 1 (smoothed, as sklearn), and a
        randomized truncated SVD of the sublinear TF-IDF rows with ``dim`` components (fewer
        when the corpus has fewer texts or columns). Deterministic for the same texts and seed.
        """
        from sklearn.decomposition import TruncatedSVD

        s = settings if isinstance(settings, CharNgramSettings) else CharNgramSettings.from_dict(settings or {})
        texts = [t for t in texts if t is not None and t.strip()]
        if len(texts) < 2:
            raise ValueError(f"need at least 2 non-empty texts to fit a char n-gram model, got {len(texts)}")
        counts = _hashing_vectorizer(s).transform(texts).tocsr()
        counts.sum_duplicates()
        df = np.bincount(counts.indices, minlength=s.n_features)
        keep = np.flatnonzero(df >= s.min_df)
        if len(keep) > s.max_columns:
            order = np.lexsort((keep, -df[keep]))  # most frequent first, then bucket index
            keep = np.sort(keep[order[: s.max_columns]])
        if len(keep) < 2:
            raise ValueError(f"only {len(keep)} n-gram bucket(s) occur in >= {s.min_df} texts: the corpus is too small or "
                             "too uniform to fit a text model")
        n = len(texts)
        idf = np.log((1.0 + n) / (1.0 + df[keep])) + 1.0
        model = cls(s, keep, idf, np.zeros((0, len(keep)), dtype=np.float32))  # the basis comes next
        x = _sublinear_tfidf_rows(model._restrict(counts), idf)
        k = max(1, min(s.dim, n - 1, len(keep) - 1))
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=s.svd_iter, random_state=s.seed)
        svd.fit(x)
        facts = {"n_texts": n, "n_columns": int(len(keep)), "explained_variance": float(svd.explained_variance_ratio_.sum()),
                 **(training or {})}
        log.info("fitted %s on %d texts: %d n-gram buckets, %d dims (%.1f%% of TF-IDF variance)", CHAR_NGRAM_MODEL_ID, n,
                 len(keep), k, 100 * facts["explained_variance"])
        return cls(s, keep, idf, svd.components_.astype(np.float32), training=facts)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> str:
        """Write ``config.json`` (settings, version, training facts) and ``weights.npz``
        (columns, idf, components: plain arrays, loaded with ``allow_pickle=False``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS_FILE + ".tmp.npz")
        np.savez_compressed(tmp, columns=self.columns, idf=self.idf, components=self.components)
        tmp.replace(folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(
            {"model_id": self.model_id, "settings": asdict(self.settings), "dim": self.dim,
             "model_version": self.model_version, "training": self.training}, indent=2, sort_keys=True))
        return self.model_version

    @classmethod
    def load(cls, folder: str | Path) -> "CharNgramTextEmbedder":
        """Load a folder written by :meth:`save`; the version is recomputed from the arrays and
        must equal the recorded one (a corrupted or hand-edited folder is refused)."""
        folder = Path(folder)
        missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
        if missing:
            raise TextModelError(f"text model folder {str(folder)!r} " + ("does not exist" if not folder.is_dir() else
                                 f"lacks {', '.join(missing)}") + "; fit one with CharNgramTextEmbedder.fit(...).save(dir) "
                                 "(the embed job does this on its first run)")
        config = json.loads((folder / CONFIG_FILE).read_text())
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as w:
            model = cls(CharNgramSettings.from_dict(config["settings"]), w["columns"], w["idf"], w["components"],
                        training=config.get("training", {}))
        if config.get("model_version") != model.model_version:
            raise TextModelError(f"{folder}: recorded model_version {config.get('model_version')} != {model.model_version} "
                                 "computed from its weights; the folder was changed after it was saved")
        return model

    # -- inference -----------------------------------------------------------------------------
    def _restrict(self, counts):
        """CSR counts over all hash buckets -> CSR over the kept columns only."""
        import scipy.sparse as sp

        counts = counts.tocsr()
        pos = self._position[counts.indices]
        keep = pos >= 0
        row_of = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        out = sp.csr_matrix((counts.data[keep], (row_of[keep], pos[keep])), shape=(counts.shape[0], len(self.columns)))
        out.sum_duplicates()
        return out

    def tfidf(self, texts: Sequence[str]):
        """Sparse sublinear TF-IDF rows (unit L2) over the kept columns: the SVD's input."""
        return _sublinear_tfidf_rows(self._restrict(self._vectorizer.transform(list(texts))), self.idf)

    def decode(self, data: bytes) -> str | None:
        return decode_text(data)

    def embed_batch(self, items: Sequence[str]) -> np.ndarray:
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self.tfidf(items)
        return l2_normalise(np.asarray(x @ self.components.T.astype(np.float64), dtype=np.float64))


# --------------------------------------------------------------------------------------------
# transformers from a local folder


def _tensor_bytes(t) -> bytes:
    """Raw bytes of any tensor dtype (bf16 has no numpy type), for the version digest."""
    import torch

    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


class TransformerTextEmbedder:
    """A Hugging Face encoder loaded from a local folder (``text-transformer``).

    ``embed_batch``: tokenise (padding to the batch's longest text, truncation at
    ``max_length`` tokens), run the encoder, average the last hidden states over real tokens
    (attention mask; padding never enters), L2. Deterministic (eval mode, no dropout).
    ``model_version`` digests the model config, the tokenizer files and every weight tensor.
    """

    modality = "text"

    def __init__(self, tokenizer, model, *, version: str, device: str = "cpu", max_length: int = 256,
                 model_id: str = TRANSFORMER_MODEL_ID):
        self.tokenizer, self.model = tokenizer, model
        self.model_version, self.device, self.max_length, self.model_id = version, device, int(max_length), model_id
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_folder(cls, folder: str | Path, *, device: str = "cpu", max_length: int = 256,
                    model_id: str = TRANSFORMER_MODEL_ID) -> "TransformerTextEmbedder":
        """Load tokenizer and encoder from ``folder`` (what ``save_pretrained`` wrote); never
        touches the network."""
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise TextModelError(f"transformer text model folder {str(folder)!r} has no config.json (save_pretrained output expected)")
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        model.eval()
        state = model.state_dict()
        tok_files = sorted(p for p in folder.iterdir() if p.is_file() and ("token" in p.name or p.name.startswith("vocab")
                                                                              or p.suffix == ".model"))
        version = version_digest(model.config.to_dict() | {"_pooling": "mean", "_max_length": int(max_length)},
                                 *[p.read_bytes() for p in tok_files],
                                 *[k.encode() + _tensor_bytes(state[k]) for k in sorted(state)])
        model.to(device)
        log.info("text transformer %s version %s on %s (%d-d)", folder, version, device, model.config.hidden_size)
        return cls(tokenizer, model, version=version, device=device, max_length=max_length, model_id=model_id)

    def decode(self, data: bytes) -> str | None:
        return decode_text(data)

    def embed_batch(self, items: Sequence[str]) -> np.ndarray:
        import torch

        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        enc = self.tokenizer([normalise_unicode(t) for t in items], padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # (n, tokens, hidden)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return l2_normalise(pooled.float().cpu().numpy())


def normalise_unicode(text: str) -> str:
    """NFKC only: the tokenizer decides about case (a cased model must see capitals)."""
    return unicodedata.normalize("NFKC", text)
