"""Result files on disk, below the suites and the engine (a suite may read earlier results, e.g. a baseline).

- ``store``: ``RunStore`` (one atomic, resumable Parquet file per condition), the row schema,
  ``load_results`` / ``load_samples``.
- ``verified_parquet``: Parquet files carrying a SHA-256 of their rows, checked on every read.
"""
