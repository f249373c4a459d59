"""The feature catalog is declared once and docs/features.md is rendered from it."""
from __future__ import annotations

from pathlib import Path

from riskgraph.cli import main
from riskgraph.config import PROJECT_ROOT, load_config
from riskgraph.schemas import feature_schema, feature_specs, render_catalog_markdown


def test_docs_features_md_is_current():
    current = (PROJECT_ROOT / "docs" / "features.md").read_text()
    assert current == render_catalog_markdown(load_config("local")), "run: riskgraph features doc > docs/features.md"


def test_every_column_documented_and_unique():
    cfg = load_config("local")
    specs = feature_specs(cfg)
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert all(s.description and s.entity and s.source_job and s.as_of for s in specs)
    assert [f.name for f in feature_schema(cfg)] == names
    assert all(f.metadata["comment"] for f in feature_schema(cfg))


def test_features_cli(capsys):
    assert main(["features", "describe", "pit_component_size", "--env", "local"]) == 0
    assert '"as_of": "strictly before the application time"' in capsys.readouterr().out
    assert main(["features", "describe", "nope", "--env", "local"]) == 2
