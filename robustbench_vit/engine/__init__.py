"""The run engine: one model x one suite x one dataset, from loaded model to verified Parquet rows.

- ``options``: ``RunOptions`` (everything besides model and suites that shapes a run) and their checks.
- ``runner``: resolves model, dataset and suite, fills the image cache, runs each condition, resumes.
- ``rows``: the typed long rows every result is written as (one per condition x metric).
- ``multidevice``: one run split over the local GPUs (an executor beside the sweeps' Ray executor).
- ``progress``: progress bars and log lines.

The content identity (:mod:`robustbench_vit.identity`) and device handling (:mod:`robustbench_vit.device`)
sit below every subpackage, beside ``errors`` and ``registry``; the result files it writes are
:mod:`robustbench_vit.storage`.
"""
