"""The fleet simulator: vehicles that drive in highway-env traffic under a driving policy,
with a safety driver, and record drive logs in the contract."""
