"""Typed configuration, loaded and validated once at the edge.

``conf/base.yaml`` holds every setting; ``conf/<env>.yaml`` overrides what differs for an
environment (``RISKGRAPH_ENV`` or ``--env`` picks it, default ``local``); an optional
extra file (``RISKGRAPH_CONF`` or ``--conf``) and ``--set a.b=c`` overrides come last.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"
ENV_VAR = "RISKGRAPH_ENV"
EXTRA_CONF_VAR = "RISKGRAPH_CONF"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Paths(_Frozen):
    root: str
    checkpoint_dir: str

    def table(self, *parts: str) -> str:
        """Location of a table under the root, e.g. ``paths.table("bronze", "applications")``."""
        return "/".join([self.root.rstrip("/"), *parts])


class SparkSettings(_Frozen):
    master: str | None = "local[2]"
    app_name: str = "riskgraph"
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, v: dict[str, Any]) -> dict[str, str]:
        return {k: str(x).lower() if isinstance(x, bool) else str(x) for k, x in (v or {}).items()}


class SimulatedMedia(_Frozen):
    """Knobs of the simulator's media layer (riskgraph/simulator/media.py); see conf/base.yaml."""

    enabled: bool = False
    from_date: dt.date | None = None  # media for applications on/after this date (None: all)
    photo_size: int = Field(default=224, ge=32, le=2048)
    call_seconds: float = Field(default=3.5, gt=0.5, le=30)
    stealth_gang_share: float = Field(default=0.0, ge=0, le=1)
    chain_store_share: float = Field(default=0.05, ge=0, le=1)
    n_chain_stores: int = Field(default=3, ge=1)
    lobby_share: float = Field(default=0.05, ge=0, le=1)
    n_lobbies: int = Field(default=20, ge=1)
    workplace_share: float = Field(default=0.2, ge=0, le=1)
    gang_rooms_max: int = Field(default=3, ge=1)
    gang_voice_share: float = Field(default=0.8, ge=0, le=1)
    gang_template_share: float = Field(default=0.8, ge=0, le=1)
    blacklist_share: float = Field(default=0.3, ge=0, le=1)
    defect_rate: float = Field(default=0.003, ge=0, lt=0.1)
    workers: int = Field(default=2, ge=1)


class SimulatedTransfers(_Frozen):
    """Knobs of the simulator's money layer (riskgraph/simulator/transfers.py); see conf/base.yaml."""

    enabled: bool = False
    from_date: dt.date | None = None  # loans (applications) on/after this date are disbursed (None: all)
    background_days: int = Field(default=30, ge=0)  # borrowers' everyday traffic starts this long before from_date
    n_retail: int = Field(default=300, ge=1)
    n_utilities: int = Field(default=12, ge=1)
    n_payroll_providers: int = Field(default=3, ge=1)
    payroll_share: float = Field(default=0.3, ge=0, le=1)  # employers paying salaries through a payroll provider (hub)
    n_developers: int = Field(default=40, ge=1)
    n_brokers: int = Field(default=20, ge=1)
    card_per_month: float = Field(default=6.0, ge=0)
    bills_per_month: float = Field(default=1.5, ge=0)
    family_per_month: float = Field(default=1.0, ge=0)
    loan_spend_share: float = Field(default=0.6, ge=0, le=1)
    diversion_gang_share: float = Field(default=0.4, ge=0, le=1)
    diversion_honest_share: float = Field(default=0.004, ge=0, le=1)
    busy_intermediary_share: float = Field(default=0.2, ge=0, le=1)
    deposit_decoy_share: float = Field(default=0.03, ge=0, le=1)
    patterns_per_kind: int = Field(default=10, ge=0)
    cycles: int = Field(default=60, ge=0)
    cycle_len_max: int = Field(default=6, ge=2)
    decoy_cycles: int = Field(default=30, ge=0)
    busy_main_share: float = Field(default=0.5, ge=0, le=1)
    dirty_rate: float = Field(default=0.001, ge=0, lt=0.1)


class Simulation(_Frozen):
    seed: int
    n_applications: int = Field(gt=0)
    start_date: dt.date
    end_date: dt.date
    gang_share: float = Field(ge=0, lt=1)
    gang_size_min: int = Field(ge=2)
    gang_size_max: int
    gang_size_alpha: float = Field(gt=0)
    gang_burst_days: int = Field(gt=0)
    household_share: float = Field(ge=0, le=1)
    nat_ip_share: float = Field(ge=0, le=1)
    n_nat_ips: int = Field(gt=0)
    default_device_share: float = Field(ge=0, le=1)
    n_employers: int = Field(gt=0)
    employer_zipf: float = Field(gt=1)
    referral_share: float = Field(ge=0, le=1)
    honest_bad_rate: float = Field(gt=0, lt=1)
    gang_bad_rate: float = Field(gt=0, lt=1)
    gang_fraud_share: float = Field(ge=0, le=1)
    performance_days: int = Field(gt=0)
    hub_noise: float = Field(ge=0)
    shared_dealer_share: float = Field(default=0.0, ge=0, le=1)
    dirty_rate: float = Field(ge=0, lt=0.1)
    media: SimulatedMedia = Field(default_factory=SimulatedMedia)
    transfers: SimulatedTransfers = Field(default_factory=SimulatedTransfers)

    @model_validator(mode="after")
    def _check(self) -> "Simulation":
        if self.end_date < self.start_date:
            raise ValueError(f"simulation.end_date {self.end_date} is before start_date {self.start_date}")
        if self.gang_size_max < self.gang_size_min:
            raise ValueError("simulation.gang_size_max must be >= gang_size_min")
        t = self.transfers
        if t.enabled and t.from_date is not None and not self.start_date <= t.from_date <= self.end_date:
            raise ValueError(f"simulation.transfers.from_date {t.from_date} is outside the world's dates "
                             f"{self.start_date}..{self.end_date}: no loan of it would be disbursed and traced; set it "
                             f"within them (e.g. --set simulation.transfers.from_date={self.end_date.replace(day=1)})")
        return self


class Ingest(_Frozen):
    future_tolerance_minutes: int = Field(ge=0)
    gps_grid_m: float = Field(gt=0)
    # a landing file whose header is not the declared columns (any order): quarantine its
    # rows (reason bad_header) or fail the run naming the file (riskgraph/landing.py)
    bad_header: Literal["quarantine", "fail"] = "quarantine"


class MediaIngest(_Frozen):
    """Rules a media item must pass to reach bronze/media (features/media_validation.py)."""

    max_bytes: dict[str, int]  # per modality: background, voice, text
    min_image_px: int = Field(gt=0)  # shorter side
    max_image_px: int = Field(gt=0)  # longer side
    min_audio_seconds: float = Field(gt=0)
    max_audio_seconds: float = Field(gt=0)
    silence_dbfs: float = Field(lt=0)  # RMS below this is a silent recording
    min_text_chars: int = Field(ge=1)

    @model_validator(mode="after")
    def _check(self) -> "MediaIngest":
        missing = {"background", "voice", "text"} - set(self.max_bytes)
        if missing:
            raise ValueError(f"media.max_bytes lacks a limit for {sorted(missing)}")
        if self.max_image_px < self.min_image_px or self.max_audio_seconds < self.min_audio_seconds:
            raise ValueError("media: a max limit is below its min")
        return self


class SuperNodeSettings(_Frozen):
    robust_k: float = Field(gt=0)
    min_log_scale: float = Field(gt=0)
    min_degree: int = Field(ge=2)


MIN_MODULARITY_RESOLUTION = 0.25  # below this, modularity merges whole components


class CommunitySettings(_Frozen):
    objective: Literal["CPM", "modularity"]
    resolution: float = Field(gt=0)
    min_component_size: int = Field(ge=2)
    leiden_max_edges: int = Field(ge=0)
    leiden_iterations: int = Field(gt=0)
    lpa_max_iter: int = Field(gt=0)
    seed: int

    @model_validator(mode="after")
    def _resolution_fits_objective(self):
        # Modularity's resolution is a multiplier around 1 (Reichardt & Bornholdt's gamma);
        # CPM's is a link density, typically 0.01-0.3. A CPM-sized gamma with modularity makes
        # every component one community: refuse it instead of silently finding no gangs.
        if self.objective == "modularity" and self.resolution < MIN_MODULARITY_RESOLUTION:
            raise ValueError(f"graph.communities.resolution={self.resolution} is a CPM density; with objective: modularity "
                             f"use a resolution around 1 (>= {MIN_MODULARITY_RESOLUTION}), or objective: CPM")
        return self


class GpsBurstLinks(_Frozen):
    enabled: bool
    radius_m: float = Field(gt=0)
    window_hours: float = Field(gt=0)
    min_apps: int = Field(ge=2)
    weight: float = Field(gt=0)


class GraphSettings(_Frozen):
    sources: tuple[str, ...]  # enabled link sources (riskgraph/link_sources.py)
    link_types: tuple[str, ...]
    max_degree: dict[str, int]
    super_nodes: SuperNodeSettings
    communities: CommunitySettings
    gps_burst_links: GpsBurstLinks
    gang_min_size: int = Field(ge=2)
    link_window_days: float | None = Field(default=None, gt=0)
    cc_max_iter: int = Field(gt=0)
    cc_checkpoint_every: int = Field(gt=0)
    cc_reliable_checkpoint: bool = False

    @model_validator(mode="after")
    def _check(self) -> "GraphSettings":
        from riskgraph.link_sources import SOURCES

        unknown = set(self.sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"graph.sources has unknown link sources {sorted(unknown)}; registered (riskgraph/link_sources.py): {sorted(SOURCES)}")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"graph.sources lists a source twice: {list(self.sources)}")
        if not set(self.link_types) <= set(self.sources):
            raise ValueError(f"graph.link_types {sorted(set(self.link_types) - set(self.sources))} are not in graph.sources")
        missing = set(self.sources) - set(self.max_degree)
        if missing:
            raise ValueError(f"graph.max_degree lacks a cap for {sorted(missing)}")
        return self


class FeatureSettings(_Frozen):
    windows_days: tuple[int, ...]
    burst_hours: int = Field(gt=0)
    gps_burst_radius_m: float = Field(gt=0)
    gps_burst_hours: float = Field(gt=0)
    sweep_buckets: int = Field(gt=0)
    sweep_events_per_bucket: int = Field(gt=0)
    # link types shared neighbours are counted over (features/shared_neighbours.py); [] = off
    shared_neighbour_types: tuple[str, ...] = ()
    # attribute reuse (reuse_* features; graph/vertices.applicants): a value already used by this
    # many other applicants is counted as reused
    reuse_min_applicants: int = Field(default=5, gt=0)


class LgbmParams(_Frozen):
    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    early_stopping_rounds: int = 30
    num_threads: int = 1
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.9
    bagging_freq: int = 1


class EvaluateSettings(_Frozen):
    target_days: int = Field(gt=0)
    train_until: dt.date
    valid_until: dt.date
    seeds: tuple[int, ...]
    lgbm: LgbmParams


class MlflowSettings(_Frozen):
    tracking_uri: str
    artifact_root: str
    experiment: str


class MoneyCycles(_Frozen):
    max_len: int = Field(default=4, ge=2, le=8)
    window_days: float = Field(default=7.0, gt=0)
    amount_band: tuple[float, float] = (0.9, 1.0)
    truncation_k: int = Field(default=10, ge=1)
    lookback_days: int = Field(default=30, ge=1)  # cycles whose first transfer is this recent are (re)reported


class MoneySettings(_Frozen):
    """riskgraph trace_funds: fund-flow tracing and temporal cycles (features/fund_flow.py, docs/money.md)."""

    flagged_sectors: tuple[str, ...] = ("real_estate", "securities")
    max_hops: int = Field(default=3, ge=1, le=8)
    window_days: float = Field(default=14.0, gt=0)
    amount_band: tuple[float, float] = (0.9, 1.0)
    truncation_k: int = Field(default=10, ge=1)
    truncation_order: Literal["largest", "earliest", "latest"] = "largest"
    monitor_days: int = Field(default=90, ge=1)
    diversion_share: float = Field(default=0.5, gt=0, le=1)
    top_paths: int = Field(default=3, ge=1)
    cycles: MoneyCycles = Field(default_factory=MoneyCycles)

    @model_validator(mode="after")
    def _check(self) -> "MoneySettings":
        from riskgraph.schemas import ACCOUNT_SECTORS

        unknown = set(self.flagged_sectors) - set(ACCOUNT_SECTORS)
        if unknown:
            raise ValueError(f"money.flagged_sectors: unknown sector(s) {sorted(unknown)}; sectors: {ACCOUNT_SECTORS}")
        for name, (lo, hi) in (("money.amount_band", self.amount_band), ("money.cycles.amount_band", self.cycles.amount_band)):
            if not 0 < lo <= hi:
                raise ValueError(f"{name} {[lo, hi]}: need 0 < low <= high (share of the previous hop's amount)")
        return self


class RelationshipSettings(_Frozen):
    """Relationship inference (features/relationships.py, docs/relationships.md) and where it
    is used: links a relationship explains do not make a gang on their own."""

    enabled: bool = True
    home_radius_m: float = Field(default=30.0, gt=0)  # two fixes this close: one building
    household_max: int = Field(default=4, ge=2)  # a home IP / family device serves at most this many applicants
    friends_max: int = Field(default=5, ge=2)  # a friends' referral code serves at most this many applicants
    # a related pair that applied within this many hours of each other keeps its gang link (None: time not used)
    together_hours: float | None = Field(default=72.0, gt=0)
    # relation -> the gang link types it explains (graph.link_types, gps_burst)
    explains: dict[str, tuple[str, ...]] = Field(default_factory=lambda: {
        "family": ("ip", "device", "background"), "flatmate": ("ip", "device", "background"),
        "colleague": ("background",), "friend": ("referrer",)})

    @model_validator(mode="after")
    def _check(self) -> "RelationshipSettings":
        from riskgraph.schemas import RELATIONS

        unknown = set(self.explains) - (set(RELATIONS) - {"none"})
        if unknown:
            raise ValueError(f"relationships.explains: unknown relation(s) {sorted(unknown)}; relations: {RELATIONS[:-1]}")
        return self


class StoreSettings(_Frozen):
    backend: Literal["auto", "delta-spark", "delta-rs"]
    # riskgraph vacuum: files older than this that no table version within it needs go
    # (Delta's VACUUM semantics); time travel reaches back this far
    vacuum_retention_hours: int = Field(default=168, gt=0)


class QualitySettings(_Frozen):
    """Quality gates on the feature store's writes (features/quality_gates.py); every
    setting is explained in conf/base.yaml."""

    fail_on_breach: bool = True
    max_null_rate: float = Field(ge=0, le=1)
    null_rate_overrides: dict[str, float] = Field(default_factory=dict)
    baseline_days: int = Field(gt=0)
    row_count_max_drop: float = Field(ge=0, le=1)
    row_count_max_rise: float = Field(ge=0)
    psi_bins: int = Field(ge=2)
    psi_min_rows: int = Field(ge=1)
    psi_warn: float = Field(gt=0)
    psi_fail: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> "QualitySettings":
        if self.psi_fail < self.psi_warn:
            raise ValueError(f"quality.psi_fail ({self.psi_fail}) must be >= quality.psi_warn ({self.psi_warn})")
        bad = {k: v for k, v in self.null_rate_overrides.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"quality.null_rate_overrides must be rates in [0, 1]; got {bad}")
        return self


class EmbedModel(_Frozen):
    """One modality's embedding model (riskgraph/embedders/registry.py)."""

    enabled: bool = True
    model: str
    folder: str | None = None  # None: <paths.root>/models/<modality>/<model>
    params: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(default=32, gt=0)


class EmbedGpu(_Frozen):
    """Stage-level scheduling of the embedding stage on GPU executors (a cluster's setting)."""

    enabled: bool = False
    executor_gpus: int = Field(default=1, ge=1)
    task_gpus: float = Field(default=1.0, gt=0)
    discovery_script: str | None = None
    executor_cores: int | None = Field(default=None, ge=1)
    executor_memory: str | None = None
    task_cpus: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "EmbedGpu":
        if self.enabled and not self.discovery_script:
            raise ValueError("embed.gpu.discovery_script is required when embed.gpu.enabled")
        return self


class TextFit(_Frozen):
    """How `riskgraph embed` fits the char n-gram text model when its folder is missing."""

    min_texts: int = Field(default=200, ge=2)
    max_texts: int = Field(default=50000, ge=2)
    ngram_min: int = 3
    ngram_max: int = 5
    n_features: int = 1048576
    dim: int = 128
    min_df: int = 2
    max_columns: int = 200000
    svd_iter: int = 7
    seed: int = 0


class EmbedSettings(_Frozen):
    prefer_gpu: bool = False
    torch_threads: int = Field(default=1, ge=1)
    partitions: int | None = Field(default=None, ge=1)
    gpu: EmbedGpu = Field(default_factory=EmbedGpu)
    background: EmbedModel = EmbedModel(model="background-fused", batch_size=32)
    voice: EmbedModel = EmbedModel(model="voice-cnn", batch_size=32)
    text: EmbedModel = EmbedModel(model="text-char-ngram-svd", batch_size=256)
    text_fit: TextFit = Field(default_factory=TextFit)


class ModalitySimilarity(_Frozen):
    """How one modality's embeddings become links (features/similarity.py)."""

    enabled: bool = True
    false_match_rate: float = Field(gt=0, lt=0.5)  # the operating point: share of impostor pairs above the threshold
    # where the threshold at that rate comes from: "model" = the model folder's operating points
    # (labelled development data: pairs of different places / speakers), "data" = the quantile of
    # cross-applicant pairs in the calibration period (no labels; gangs and households in them
    # push it up)
    calibration: Literal["model", "data"] = "data"
    search_k: int = Field(ge=2, le=1024)  # neighbours searched per item
    hub_min_applicants: int = Field(ge=2)  # an item resembling earlier items of this many applicants is a hub ...
    hub_window_days: float = Field(gt=0)
    # ... and spread out: taken a median of more than hub_spread_km away or more than
    # hub_age_days earlier (both None: the count alone decides)
    hub_spread_km: float | None = Field(default=None, gt=0)
    hub_age_days: float | None = Field(default=None, gt=0)
    max_link_km: float | None = Field(default=None, gt=0)  # a link between applications farther apart than this is kept as evidence, not as a graph link
    max_link_days: float | None = Field(default=None, gt=0)  # ... and one to an anchor more than this many days earlier (None: no time limit)
    # where a side has no GPS fix, the pair must pass the threshold at this (stricter) rate instead (None: no stricter rule)
    unknown_distance_fmr: float | None = Field(default=None, gt=0, lt=0.5)

    @model_validator(mode="after")
    def _stricter_without_distance(self) -> "ModalitySimilarity":
        if self.unknown_distance_fmr is not None and self.unknown_distance_fmr >= self.false_match_rate:
            raise ValueError(f"unknown_distance_fmr ({self.unknown_distance_fmr:g}) must be below false_match_rate "
                             f"({self.false_match_rate:g}): pairs without a distance need stronger evidence")
        return self


class SimilaritySettings(_Frozen):
    """riskgraph link_media: thresholds, hubs and the vector index (features/similarity.py,
    features/vector_search.py); every setting is explained in conf/base.yaml."""

    background: ModalitySimilarity
    voice: ModalitySimilarity
    text: ModalitySimilarity
    calibration_sample: int = Field(ge=100)  # items (bounded, collected) scored pairwise for the threshold
    calibration_min_items: int = Field(ge=50)  # fewer in the training period: calibrate on the earliest items (logged)
    exact_max_vectors: int = Field(ge=0)  # flat (exact) index up to this many vectors, IVF beyond
    nprobe: int = Field(ge=1)
    shards: int = Field(ge=1)
    seed: int = 0


class Config(_Frozen):
    env: str = "local"
    paths: Paths
    spark: SparkSettings
    simulation: Simulation
    ingest: Ingest
    graph: GraphSettings
    features: FeatureSettings
    evaluate: EvaluateSettings
    mlflow: MlflowSettings
    store: StoreSettings
    quality: QualitySettings
    media: MediaIngest
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    similarity: SimilaritySettings
    money: MoneySettings = Field(default_factory=MoneySettings)
    relationships: RelationshipSettings = Field(default_factory=RelationshipSettings)
    graph_backend: Literal["auto", "graphframes", "dataframe"]

    def fingerprint(self) -> dict[str, Any]:
        """The config as plain JSON types, for run records and MLflow params."""
        return json.loads(self.model_dump_json())


def _deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in (override or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = d
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise KeyError(f"--set {dotted}: '{k}' is not a section of the config")
        node = node[k]
    if keys[-1] not in node and keys[0] != "spark":
        raise KeyError(f"--set {dotted}: unknown setting '{keys[-1]}'; known here: {sorted(node)}")
    node[keys[-1]] = value


ROOT_TOKEN = "${paths.root}"


def _substitute_root(node: Any, root: str) -> Any:
    """Replace ``${paths.root}`` in every string of the raw config with the (unresolved) root,
    so that moving the root (``--set paths.root=...``, an environment file) moves everything
    defined under it: checkpoints, the MLflow store and its artifacts."""
    if isinstance(node, dict):
        return {k: _substitute_root(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_root(v, root) for v in node]
    if isinstance(node, str) and ROOT_TOKEN in node:
        if ROOT_TOKEN in str(root):
            raise ValueError(f"paths.root cannot refer to itself: {root!r}")
        return node.replace(ROOT_TOKEN, str(root).rstrip("/"))
    return node


def _resolve(path: str | None) -> str | None:
    if path is None or "://" in path or path.startswith("/"):
        return path
    return str((PROJECT_ROOT / path).resolve())


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"config file {path} not found")
    return yaml.safe_load(path.read_text()) or {}


def load_config(
    env: str | None = None,
    extra_file: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load ``base.yaml`` + ``<env>.yaml`` + optional extra file + dotted overrides."""
    env = env or os.environ.get(ENV_VAR, "local")
    env_file = CONF_DIR / f"{env}.yaml"
    if not env_file.exists():
        known = sorted(p.stem for p in CONF_DIR.glob("*.yaml") if p.stem != "base")
        raise FileNotFoundError(f"no config for environment '{env}' ({env_file}); known: {known}")
    raw = _deep_merge(_read_yaml(CONF_DIR / "base.yaml"), _read_yaml(env_file))
    extra_file = extra_file or os.environ.get(EXTRA_CONF_VAR)
    if extra_file:
        raw = _deep_merge(raw, _read_yaml(Path(extra_file)))
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, yaml.safe_load(value) if isinstance(value, str) else value)
    raw["env"] = env
    raw = _substitute_root(raw, raw["paths"]["root"])
    raw["paths"] = {k: _resolve(v) for k, v in raw["paths"].items()}
    raw["mlflow"]["artifact_root"] = _resolve(raw["mlflow"]["artifact_root"])
    for modality in ("background", "voice", "text"):  # model folders: relative to the project root
        m = (raw.get("embed") or {}).get(modality)
        if isinstance(m, dict) and m.get("folder"):
            m["folder"] = _resolve(m["folder"])
    uri = raw["mlflow"]["tracking_uri"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        raw["mlflow"]["tracking_uri"] = "sqlite:///" + _resolve(uri[len("sqlite:///"):])
    return Config.model_validate(raw)
