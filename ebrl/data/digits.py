"""scikit-learn's bundled 8x8 handwritten digits (1797 images, no download) as 64-D vectors.

Pixels are scaled from ``{0, ..., 16}`` to ``[0, 1]``; :func:`load` splits them into train and
held-out sets with a seeded permutation. scikit-learn is imported lazily (it is in ebrl's ``dev``
extra, not a core dependency).

Example:
    >>> from ebrl.data import digits
    >>> train, held_out = digits.load(seed=0)
    >>> train.shape, held_out.shape
    (torch.Size([1438, 64]), torch.Size([359, 64]))
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["IMAGE_SHAPE", "load"]

IMAGE_SHAPE = (8, 8)


def _load_sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ebrl.data.digits needs scikit-learn (bundled 8x8 digits): pip install scikit-learn "
            "(or ebrl[dev])"
        ) from err
    return load_digits()


def load(
    seed: int = 0, held_out_fraction: float = 0.2, *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``(train [n_train, 64], held_out [n_held_out, 64])``, pixels in ``[0, 1]``.

    Args:
        seed: seeds the train / held-out permutation.
        held_out_fraction: fraction of the 1797 images held out, in ``(0, 1)``.
        dtype: floating dtype of the result.
    """
    owner = "digits.load"
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{owner}: seed must be an int >= 0, got {seed!r}")
    if not isinstance(held_out_fraction, int | float) or not 0 < held_out_fraction < 1:
        raise ValueError(f"{owner}: held_out_fraction must be in (0, 1), got {held_out_fraction!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating dtype, got {dtype}")
    data = torch.as_tensor(_load_sklearn_digits().data, dtype=torch.float64) / 16.0
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    n_held_out = round(held_out_fraction * len(data))
    data = data[perm].to(dtype)
    return data[n_held_out:], data[:n_held_out]
