"""Figures: ``base`` holds the registries (by suite name), ``plots`` the per-suite figures, ``analysis``
the cross-run figures (CKA, attention distance, shape bias)."""
