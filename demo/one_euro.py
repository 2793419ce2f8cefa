"""One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) for keypoint jitter.

Why this filter: a fixed low-pass either lags on fast motion or jitters at rest. The
One-Euro filter adapts its cutoff to the signal's speed: ``cutoff = min_cutoff +
beta * |speed|``, so a still joint is smoothed hard and a moving one follows with little lag.

Speeds are multiplied by ``value_scale`` before entering the cutoff (as MediaPipe does), so
the demo can pass ``1 / body size``: ``beta`` is then in units of "body sizes per second"
and the same setting works for a person near or far from the camera.

Works element-wise on arrays of any fixed shape (e.g. (K, 2) keypoints), pure numpy.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with the given cutoff (Hz) at step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Adaptive low-pass filter over arrays; call it once per frame with a timestamp.

    min_cutoff: cutoff (Hz) at zero speed: lower = smoother at rest, more lag.
    beta: how fast the cutoff rises with speed: higher = less lag on fast motion.
    d_cutoff: cutoff (Hz) of the low-pass applied to the speed estimate itself.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 10.0, d_cutoff: float = 1.0):
        for name, v in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not v > 0:
                raise ValueError(f"OneEuroFilter: {name} must be > 0 Hz, got {v}")
        if beta < 0:
            raise ValueError(f"OneEuroFilter: beta must be >= 0, got {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next value passes through unchanged (e.g. on track loss)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @property
    def initialized(self) -> bool:
        return self._x is not None

    def __call__(self, t: float, x, value_scale: float = 1.0) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds, increasing).

        A changed shape (e.g. another model) restarts the filter. A non-increasing
        timestamp (duplicate frame) returns the previous output rather than dividing by 0.
        """
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if not dt > 0:
            return self._x.copy()
        dx = (x - self._x) / dt * float(value_scale)
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = self._x + a * (x - self._x)
        self._t = float(t)
        return self._x.copy()
