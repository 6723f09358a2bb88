"""Published numbers as data, below the results layer so the leaderboard can point at them.

- ``cards``: paper cards (``cards/*.toml``): citation, protocols and published cells; loading, validation.
- ``matching``: which leaderboard rows follow a card's protocol on its image set.
"""
