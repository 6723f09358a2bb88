"""The command line (``rbvit``): ``commands`` (click), ``errors`` (one-line errors and exit codes),
``output`` (tables, TSV, JSON), ``catalog`` (``rbvit ls``)."""
