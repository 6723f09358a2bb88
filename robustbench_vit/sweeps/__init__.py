"""Sweeps: models x suites x datasets from one TOML file.

- ``file``: the sweep file's format and validation.
- ``run``: planning the cells (skipping those whose identity is unchanged), running them locally.
- ``ray_executor``: the same cells as Ray tasks (multi-GPU, multi-node).
"""
