"""Batched closed-loop simulation (#13): thousands of scenarios stepped as NumPy arrays,
validated against highway-env. See docs/batched-simulation.md."""
