"""dataloop: the vehicle-cloud data loop of an autonomous-driving team, on Dagster."""

__version__ = "0.1.0"
