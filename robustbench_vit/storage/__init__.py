"""Result files on disk, below the suites and the engine (a suite may read earlier results, e.g. a baseline).

- ``store``: ``RunStore`` (one atomic, resumable Parquet file per condition) and the row schema.
- ``reading``: ``load_results`` / ``load_samples`` (every verified row of a folder) and ``recency``.
- ``verified_parquet``: Parquet files carrying a SHA-256 of their rows, checked on every read.
"""
