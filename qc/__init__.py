"""The `qc` command line: the one place that composes `inspection`, `serving` and `training`."""
