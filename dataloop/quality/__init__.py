"""Quality: suites as data (assets/quality), run with great-expectations and DuckDB, per-drive
verdicts and the hour's fitness."""
