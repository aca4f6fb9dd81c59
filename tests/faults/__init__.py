"""Fault injection for the reliability tests (issue #12)."""
