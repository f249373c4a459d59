"""riskgraph: nightly Spark jobs that turn lending data into fraud gangs and a
point-in-time-correct Delta feature store for credit models.

The brief asks for top-level ``jobs/`` and ``features/`` folders; they install as
``riskgraph.jobs`` and ``riskgraph.features`` so nothing lands in site-packages under a
generic top-level name.
"""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


setup(
    name="riskgraph",
    version="0.1.0",
    description="Fraud-gang detection and a point-in-time feature store for credit risk, on Spark",
    python_requires=">=3.11,<3.12",
    packages=["riskgraph", "riskgraph.simulator", "riskgraph.media", "riskgraph.embedders", "riskgraph.jobs",
              "riskgraph.features"],
    package_dir={"riskgraph": "riskgraph", "riskgraph.jobs": "jobs", "riskgraph.features": "features"},
    install_requires=_requirements("requirements.txt"),
    extras_require={"airflow": _requirements("requirements-airflow.txt"), "dev": _requirements("requirements-dev.txt")},
    entry_points={"console_scripts": ["riskgraph=riskgraph.cli:main"]},
)
