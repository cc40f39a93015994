"""What strategies remember of each target's latency: a peak-EWMA cost, and recent samples for
a percentile.

Peak-EWMA (Finagle, linkerd): a new sample above the current cost replaces it at once, so one
slow answer moves traffic away immediately; below it, the cost moves toward the sample with a
weight that decays with the time since the last one (``decay_s``). Read between samples, the
cost decays toward zero, so a target nobody asks any more (because it was slow) is tried again
after a while, and gets its traffic back if it has recovered.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["LatencyWindow", "PeakEwma"]


class PeakEwma:
    """One target's latency cost in seconds, per the module's rules. O(1) to read and update."""

    __slots__ = ("_cost", "_stamp", "decay_s")

    def __init__(self, decay_s: float) -> None:
        self.decay_s = decay_s
        self._cost = 0.0
        self._stamp = 0.0

    def cost(self, now: float) -> float:
        """The cost as of ``now``: the last value, decayed by the time since."""
        if self._cost == 0.0:
            return 0.0
        return self._cost * math.exp(-max(now - self._stamp, 0.0) / self.decay_s)

    def observe(self, latency_s: float, now: float) -> None:
        """Fold in one latency measured at ``now``."""
        if latency_s > self._cost:
            self._cost = latency_s
        else:
            weight = math.exp(-max(now - self._stamp, 0.0) / self.decay_s)
            self._cost = self._cost * weight + latency_s * (1.0 - weight)
        self._stamp = now


class LatencyWindow:
    """The last ``size`` latencies of a target and their ``quantile``, recomputed every
    ``size // 8`` samples (a sort of at most ``size`` floats), so a read is O(1)."""

    __slots__ = ("_every", "_samples", "_since", "_value", "quantile")

    def __init__(self, quantile: float, size: int = 512) -> None:
        self.quantile = quantile
        self._samples: deque[float] = deque(maxlen=size)
        self._every = max(size // 8, 1)
        self._since = 0
        self._value: float | None = None

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, latency_s: float) -> None:
        self._samples.append(latency_s)
        self._since += 1
        # Every sample while there are few, then every ``size // 8``.
        if self._since >= self._every or len(self._samples) <= self._every:
            self._since = 0
            ordered = sorted(self._samples)
            self._value = ordered[min(int(self.quantile * len(ordered)), len(ordered) - 1)]

    def value(self) -> float | None:
        """The quantile of the recent samples; None before the first."""
        return self._value
