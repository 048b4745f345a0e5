"""Test-suite settings: one torch thread, and the Hypothesis profiles.

The suite's tensors are small; with several OpenMP threads on a 2-core CI machine (or one shared
with other work) torch spends its time spinning, not computing: a 400-step SAC run measured
5 env steps/s with 2 threads under load against 336 with 1.

Hypothesis (tests/test_properties.py): the default profile ``ci`` is bounded and derandomised,
so CI runs the same examples every time, fast; ``HYPOTHESIS_PROFILE=long`` searches hard (fresh
random examples, 500 per property) when looking for bugs on purpose.
"""

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, suppress_health_check=_QUIET
)
settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
