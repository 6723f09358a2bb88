"""Published numbers as data, and the command that reruns them (``rbvit reproduce``).

- ``cards``: paper cards (TOML in ``cards/``): citation, protocols (suite, condition, metric,
  preprocessing, image set, tolerance and its reason) and the published cells; loading and validation.
- ``compare``: run a card's protocols through the normal runner and set every published value beside
  rbvit's, with its interval, difference and verdict.
"""
