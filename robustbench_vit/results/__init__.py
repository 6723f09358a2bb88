"""Results: what is read back from the Parquet files for people.

- ``leaderboard``: ranked tables per suite and dataset (``build_leaderboard``).
- ``analysis``: relative-to-clean, McNemar and other comparisons of runs.
- ``worst_case``: per-image worst case over conditions.
- ``report``: the HTML report.
- ``figures``: plots registered by suite name (``figures.base``), drawn by ``figures.plots`` and
  ``figures.analysis``.
"""
