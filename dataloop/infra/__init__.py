"""Deployment: bucket bootstrap (zones, versioning, lifecycle, per-vehicle identities) and
Dagster concurrency pools. The compose stack, dagster.yaml and Helm values live in infra/."""
