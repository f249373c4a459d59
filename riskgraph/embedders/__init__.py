"""Embedding models for media: backgrounds (photos), voiceprints (calls) and texts.

Each model implements :class:`riskgraph.embedders.base.Embedder`: it is built once per Python
worker from a local folder or a package's shipped weights (never a model hub), takes a batch of
decoded items and returns L2-normalised float32 vectors. ``features/embeddings.py`` runs them
inside Spark; ``bench/`` measures their quality on held-out places / speakers / templates.
"""
