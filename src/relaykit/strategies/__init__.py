"""Strategies over targets: how a Relay turns its list of targets into one answer.

- ``LoadBalance``: spread calls by weight, latency or load (``load_balance``).
- ``Hedge``: ask the next target too when the first is slow; the first answer wins (``hedge``).
- ``Fallback`` (in ``relaykit.strategies.fallback`` for now): the first target that answers.

They share the rules in ``_route`` (which failures move on, which targets a call skips) and
nest through ``relaykit.Group``: a strategy over groups that are strategies over targets.
"""

from relaykit.strategies.hedge import Hedge, HedgeStats
from relaykit.strategies.load_balance import BalanceMode, LoadBalance

__all__ = ["BalanceMode", "Hedge", "HedgeStats", "LoadBalance"]
