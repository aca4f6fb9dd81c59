"""Offboard auto-labelling: hindsight tracks from onboard perception, scored against truth."""
