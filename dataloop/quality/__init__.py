"""Quality: suites as data (assets/quality), run with great-expectations and DuckDB, per-drive
verdicts and the hour's fitness (``hour.check_hour``), and the hour's approved drives
(``approved.approve_hour``)."""
