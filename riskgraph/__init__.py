"""riskgraph: fraud gangs and a point-in-time feature store for credit risk, on Spark."""

__version__ = "0.1.0"
