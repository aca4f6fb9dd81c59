"""The control plane: Dagster definitions only, one folder per stage of the loop."""
