"""How often the sensors evaluate: each sensor's own minimum interval, or
``DATALOOP_SENSOR_INTERVAL_S`` for all of them (the demo's daemon sets a few seconds, so one
turn of the loop does not wait minutes between stages)."""

import os

INTERVAL_ENV = "DATALOOP_SENSOR_INTERVAL_S"


def sensor_interval(default_s: int) -> int:
    """Seconds between a sensor's evaluations: ``DATALOOP_SENSOR_INTERVAL_S`` or the default."""
    value = os.environ.get(INTERVAL_ENV, "").strip()
    if not value:
        return default_s
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{INTERVAL_ENV}={value!r}: a whole number of seconds, at least 1")
    return int(value)
