"""Retrieval evaluation: metrics (pure) and benchmark datasets."""
