"""Plant analytics: the computations behind defect-rate dashboards, SPC alarms and drift reports.

Example::

    >>> import numpy as np
    >>> from inspection.analytics.spc import ChartKind, baseline_limits, western_electric
    >>> limits = baseline_limits(ChartKind.P, counts=[1, 0, 2, 1, 1], sizes=[50] * 5)
    >>> [alarm.rule.value for alarm in western_electric(limits.standardise([9], [50]))]
    ['WE1']

Pure functions over numpy arrays and typed values: no database, no web framework. The store
queries that feed them and the pages and alarms that show them are built on top.

- `spc`: p- and u-charts with frozen baseline limits, Western Electric and trend rules, EWMA
  and CUSUM for small shifts.
- `image_stats`: cheap per-frame statistics (brightness, contrast, sharpness, colour) and a
  per-frame image-quality check.
- `drift`: a recent window against a reference window (PSI, KS) and a diagnosis in words.
- `shifts`: plant shifts in a time zone; a UTC instant to (plant-local date, shift).
"""
