"""The digits loader: shapes, range, a seeded disjoint split, bad input."""

import pytest
import torch

from ebrl.data import digits


def test_split_shapes_range_and_seed():
    train, held_out = digits.load(seed=0)
    assert train.shape == (1438, 64) and held_out.shape == (359, 64)
    assert train.dtype == torch.float32
    assert train.min() == 0 and train.max() == 1
    again, _ = digits.load(seed=0)
    other, _ = digits.load(seed=1)
    assert torch.equal(train, again) and not torch.equal(train, other)
    # the split is a partition of the 1797 images (the bundled set has duplicates, so compare
    # multisets of rows rather than sets)
    both = torch.cat([train, held_out]).double()
    full = torch.cat(digits.load(seed=1, dtype=torch.float64))
    rows_a, counts_a = torch.unique(both, dim=0, return_counts=True)
    rows_b, counts_b = torch.unique(full, dim=0, return_counts=True)
    assert torch.equal(rows_a, rows_b) and torch.equal(counts_a, counts_b)


def test_bad_input():
    with pytest.raises(ValueError, match="seed"):
        digits.load(seed=-1)
    with pytest.raises(ValueError, match="held_out_fraction"):
        digits.load(held_out_fraction=1.0)
    with pytest.raises(TypeError, match="dtype"):
        digits.load(dtype=torch.int64)
