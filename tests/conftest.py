"""Test-suite settings: one torch thread.

The suite's tensors are small; with several OpenMP threads on a 2-core CI machine (or one shared
with other work) torch spends its time spinning, not computing: a 400-step SAC run measured
5 env steps/s with 2 threads under load against 336 with 1.
"""

import torch

torch.set_num_threads(1)
