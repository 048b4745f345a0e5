"""Test-suite settings: one torch thread, the Hypothesis profiles, and the CPU in all but the
CUDA tests (so SAC's automatic compile, which pays only on CUDA, stays off there too).

The suite's tensors are small; with several OpenMP threads on a 2-core CI machine (or one shared
with other work) torch spends its time spinning, not computing: a 400-step SAC run measured
5 env steps/s with 2 threads under load against 336 with 1.

Hypothesis (tests/test_properties.py): the default profile ``ci`` is bounded and derandomised,
so CI runs the same examples every time, fast; ``HYPOTHESIS_PROFILE=long`` searches hard (fresh
random examples, 500 per property) when looking for bugs on purpose.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(1)

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, suppress_health_check=_QUIET
)
settings.register_profile("long", max_examples=500, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="module")
def _cpu_unless_the_cuda_tests(request):
    """The suite's numbers are CPU numbers (closed forms on CPU tensors, bit-for-bit runs, CPU
    generator states), so on a CUDA machine ``device="auto"`` means the CPU in every module but
    tests/test_cuda.py (whose tests name their devices), here and in the processes a test
    starts. Module-scoped, so that it is in place before the modules' own module-scoped fixtures
    (tiny training runs shared by a module's tests). On the CPU SAC's automatic ``compile=None``
    stays eager, so no test compiles unless it asks (tests/test_cuda.py's all set ``compile``).
    Nothing changes without CUDA."""
    if request.path.name == "test_cuda.py" or not torch.cuda.is_available():
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        # ebrl's choice for "auto", not torch.cuda.is_available itself: torch caches what that
        # returned (e.g. whether Triton can compile for CUDA) for the rest of the process
        patch.setattr("ebrl.agents.core.auto_device", lambda: "cpu")
        patch.setenv("CUDA_VISIBLE_DEVICES", "")  # the processes a test starts
        yield
