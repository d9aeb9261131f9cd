"""The trainable tensors a shared-pool method keeps once per module type, on the tuner rather than on each layer."""

from __future__ import annotations

import math

import torch
from torch import nn


def lora_a_bound(in_features: int) -> float:
    """LoRA's A initialisation, ``kaiming_uniform_(a=√5)`` with fan-in ``in``: U(−1/√in, 1/√in)."""
    return 1.0 / math.sqrt(in_features)


class FactorPool(nn.Module):
    """Row pools of one module type: ``A[adapter]`` (rows, in/c) and ``B[adapter]`` (rows, out/c).

    A method's layer reads its A (r, in) and Bᵀ (r, out) from these rows, through the pool's ``forward`` so that
    engines that shard parameters per module (DeepSpeed ZeRO-3, FSDP) gather the pool exactly when it is used.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.A = nn.ParameterDict({})
        self.B = nn.ParameterDict({})

    def add_adapter(self, adapter_name: str, num_rows: int, c: int, init_weights: bool,
                    generator: torch.Generator, device=None) -> None:
        """A rows ~ U(±1/√in) (LoRA's A: the fan-in is the full input size, (in/c)·c = in); B rows 0, or drawn
        from the same distribution when ``init_weights`` is False (tests)."""
        pool_a = torch.empty(num_rows, self.in_features // c)
        pool_b = torch.empty(num_rows, self.out_features // c)
        bound = lora_a_bound(self.in_features)
        pool_a.uniform_(-bound, bound, generator=generator)
        if init_weights:
            pool_b.zero_()
        else:
            pool_b.uniform_(-bound, bound, generator=generator)
        self.A[adapter_name] = nn.Parameter(pool_a.to(device) if device is not None else pool_a)
        self.B[adapter_name] = nn.Parameter(pool_b.to(device) if device is not None else pool_b)

    def remove_adapter(self, adapter_name: str) -> None:
        for params in (self.A, self.B):  # ParameterDict.pop takes no default
            if adapter_name in params:
                del params[adapter_name]
