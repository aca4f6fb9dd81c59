"""Lineage: from a dataset, model or release back to the exact drives and their versions,
and from a drive or vehicle forward to everything that used it."""
