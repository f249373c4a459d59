"""Where each table lives under ``paths.root``, and how it is partitioned. Declared once."""
from __future__ import annotations

from dataclasses import dataclass

from riskgraph import schemas as S


@dataclass(frozen=True)
class Table:
    key: str
    parts: tuple[str, ...]
    partition_col: str
    description: str

    def uri(self, cfg) -> str:
        return cfg.paths.table(*self.parts)


BRONZE_APPLICATIONS = Table("bronze_applications", ("bronze", "applications"), S.DT, "validated, typed, pseudonymised applications")
BRONZE_APPLICANTS = Table("bronze_applicants", ("bronze", "applicants"), S.DT, "validated, pseudonymised applicants")
BRONZE_OUTCOMES = Table("bronze_outcomes", ("bronze", "outcomes"), S.DT, "validated outcomes with the time each became known")
QUARANTINE = Table("quarantine", ("bronze", "quarantine"), S.DT, "rejected raw rows with the reason, PII pseudonymised")
BRONZE_MEDIA = Table("bronze_media", ("bronze", "media"), S.DT,
                     "validated media items (photos, calls, texts, blacklist samples): size, SHA-256, media key, format")
BRONZE_BLACKLISTS = Table("bronze_blacklists", ("bronze", "blacklists"), S.DT,
                          "validated blacklist entries, phones pseudonymised, samples' media keys")
# Its own table, not bronze/quarantine: a write replaces whole dt partitions, so sharing one
# table would let media ingest erase the structured ingest's quarantine rows of a date (and
# the reverse). Same QUARANTINE layout, source = media or blacklists.
MEDIA_QUARANTINE = Table("media_quarantine", ("bronze", "media_quarantine"), S.DT,
                         "rejected media items and blacklist rows with the reason, PII pseudonymised, no file contents")
# One table per modality (their vectors differ in length and model); a row per (media key,
# model id, model version), partitioned by the media item's landing date.
EMBEDDINGS_BACKGROUND = Table("embeddings_background", ("embeddings", "background"), S.DT,
                              "background (photo) embeddings per media item and model version")
EMBEDDINGS_VOICE = Table("embeddings_voice", ("embeddings", "voice"), S.DT, "voiceprint (call) embeddings per media item and model version")
EMBEDDINGS_TEXT = Table("embeddings_text", ("embeddings", "text"), S.DT, "loan-purpose text embeddings per media item and model version")
EMBEDDINGS = {"background": EMBEDDINGS_BACKGROUND, "voice": EMBEDDINGS_VOICE, "text": EMBEDDINGS_TEXT}
MEDIA_LINKS = Table("media_links", ("graph", "media_links"), S.RUN_DATE,
                    "media similarity links to earlier items and blacklist hits, point in time, with hub flags (link_media)")
BRONZE_TRANSFERS = Table("bronze_transfers", ("bronze", "transfers"), S.DT,
                         "validated transfers (disbursements included), account numbers pseudonymised")
# Own table for the same reason as MEDIA_QUARANTINE (a write replaces whole dt partitions).
TRANSFER_QUARANTINE = Table("transfer_quarantine", ("bronze", "transfer_quarantine"), S.DT,
                            "rejected transfer rows with the reason, account numbers pseudonymised")
LOAN_MONEY = Table("loan_money", ("money", "loans"), S.RUN_DATE,
                   "post-loan monitoring per disbursed loan as of the run date: fund-flow shares, hops, cycles (trace_funds)")
MONEY_PATHS = Table("money_paths", ("money", "paths"), S.RUN_DATE,
                    "evidence: the top traced paths of each loan into a flagged sector, hop by hop (trace_funds)")
MONEY_CYCLES = Table("money_cycles", ("money", "cycles"), S.RUN_DATE,
                     "evidence: short time-ordered cycles of money, each once, hop by hop (trace_funds)")
SHARED_NEIGHBOURS = Table("shared_neighbours", ("graph", "shared_neighbours"), S.RUN_DATE,
                          "every application of the run with each earlier partner sharing non-hub attribute values, point in time (shared_neighbours)")
RELATIONSHIPS = Table("relationships", ("graph", "relationships"), S.RUN_DATE,
                      "each shared-neighbour pair's inferred relation (family, flatmate, colleague, friend, none) with its evidence (shared_neighbours)")
VERTICES = Table("graph_vertices", ("graph", "vertices"), S.RUN_DATE, "application-attribute graph vertices (GraphFrames layout)")
EDGES = Table("graph_edges", ("graph", "edges"), S.RUN_DATE, "application-attribute graph edges (GraphFrames layout)")
GANG_MEMBERS = Table("gang_members", ("gangs", "members"), S.RUN_DATE, "application → gang")
GANGS = Table("gangs", ("gangs", "summary"), S.RUN_DATE, "one row per gang with size, known-bad count and the evidence linking it")
SUPER_NODES = Table("super_nodes", ("gangs", "super_nodes"), S.RUN_DATE, "attribute values capped as super-nodes (hubs)")
FEATURES = Table("application_network_features", ("features", "application_network"), S.RUN_DATE,
                 "point-in-time network features per application (riskgraph feature store)")

BRONZE = {"applications": BRONZE_APPLICATIONS, "applicants": BRONZE_APPLICANTS, "outcomes": BRONZE_OUTCOMES}
# Every Delta table riskgraph writes (maintenance walks them all).
ALL = (BRONZE_APPLICATIONS, BRONZE_APPLICANTS, BRONZE_OUTCOMES, QUARANTINE, BRONZE_MEDIA, BRONZE_BLACKLISTS,
       MEDIA_QUARANTINE, EMBEDDINGS_BACKGROUND, EMBEDDINGS_VOICE, EMBEDDINGS_TEXT, MEDIA_LINKS, BRONZE_TRANSFERS,
       TRANSFER_QUARANTINE, LOAN_MONEY, MONEY_PATHS, MONEY_CYCLES, SHARED_NEIGHBOURS, RELATIONSHIPS, VERTICES, EDGES,
       GANG_MEMBERS, GANGS, SUPER_NODES, FEATURES)


def raw_dir(cfg, table: str) -> str:
    return cfg.paths.table("raw", table)


def staged_features_dir(cfg, run_id: str) -> str:
    """Parquet hand-off from assemble_features to write_feature_store (one folder per run)."""
    return cfg.paths.table("work", "features_staged", run_id)


class HandOffError(RuntimeError):
    """An upstream step's output that a step needs is not there."""


def find_staged_features(cfg, ctx) -> str:
    """The staged features write_feature_store should commit: this run id's folder, or, when
    the step runs on its own without ``--run-id``, the newest complete folder that
    assemble_features wrote for the same window (default run ids start with
    ``<from>_<to>_`` and end with a sortable UTC stamp). Complete = Spark's ``_SUCCESS``."""
    from pyarrow import fs as pafs

    from riskgraph.io import fs_path as _fs_path

    own = staged_features_dir(cfg, ctx.run_id)
    fs, own_p = _fs_path(own)
    if fs.get_file_info(f"{own_p}/_SUCCESS").type == pafs.FileType.File:
        return own
    def hint(extra: str = "") -> str:
        return (f"run `riskgraph assemble-features --from-date {ctx.from_date} --run-date {ctx.run_date}{extra}` first, "
                "or both steps in one process: `riskgraph run --steps assemble-features,write-feature-store ...`")

    if ctx.run_id_given:
        raise HandOffError(f"no staged features for run id {ctx.run_id} at {own}; {hint(f' --run-id {ctx.run_id}')}")
    parent = own_p.rsplit("/", 1)[0]
    prefix = f"{ctx.from_date.isoformat()}_{ctx.run_date.isoformat()}_"
    found = []
    if fs.get_file_info(parent).type == pafs.FileType.Directory:
        for info in fs.get_file_info(pafs.FileSelector(parent)):
            if (info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)
                    and fs.get_file_info(f"{info.path}/_SUCCESS").type == pafs.FileType.File):
                found.append(info.base_name)
    if not found:
        raise HandOffError(f"no staged features for {ctx.from_date}..{ctx.run_date} under {staged_features_dir(cfg, '')}; {hint()}")
    return staged_features_dir(cfg, max(found))


def truth_dir(cfg) -> str:
    return cfg.paths.table("truth")


def runs_dir(cfg) -> str:
    return cfg.paths.table("runs")


def models_dir(cfg, *parts: str) -> str:
    """Model folders the jobs fit or load (e.g. ``models/text/text-char-ngram-svd``)."""
    return cfg.paths.table("models", *parts)


def quality_dir(cfg) -> str:
    """Quality-gate reports of the feature-store writes, one .md + .json per run id."""
    return cfg.paths.table("quality")
