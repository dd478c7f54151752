"""Insight rollups: stage spans, production files, predictions, refreshed by beat."""
