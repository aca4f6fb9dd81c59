"""Training: samples from curated drive logs, a small driving policy, its model bundle."""
