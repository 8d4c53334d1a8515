"""One module per scenario, each with `run(opts) -> dict`."""

ORDER = ("precision", "burst", "overhead", "sync", "footprint", "scale", "postgres")
