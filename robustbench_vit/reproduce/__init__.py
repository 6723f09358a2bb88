"""``rbvit reproduce``: rerun a paper card (:mod:`robustbench_vit.published`) and compare.

- ``compare``: run a card's protocols through the normal runner and set every published value beside
  rbvit's, with its interval, difference and verdict.
"""
