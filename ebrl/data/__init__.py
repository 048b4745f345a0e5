"""Datasets: demonstrations to clone anchors from (:mod:`ebrl.data.demos`), 2-D toy densities
(:mod:`ebrl.data.toy2d`) and small real data (:mod:`ebrl.data.digits`, scikit-learn's bundled
8x8 digits, imported lazily)."""

from ebrl.data import toy2d

__all__ = ["toy2d"]
