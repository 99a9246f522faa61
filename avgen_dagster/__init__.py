"""avgen: personal AI media as Dagster software-defined assets partitioned by ``user_id``."""

__version__ = "0.1.0"
