"""Ingest: decode committed drive uploads into Parquet tables, quarantine what cannot be."""
