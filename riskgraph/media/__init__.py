"""Renderers of simulated media: photos (places), call recordings (speakers) and
loan-purpose texts. Pure functions of a seed; no Spark."""
