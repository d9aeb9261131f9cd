"""What the baseline tuners share: the factor layer (from ``open_instruct.mos.factor``, which MoS's layer also
builds on), LoRA's A initialisation bound, and a config validation helper (the shared config fields and
their checks are ``open_instruct.mos.config.LowRankAdapterConfig``)."""

from __future__ import annotations

import math

from open_instruct.mos.factor import FactorLinear, layer_kwargs

__all__ = ["FactorLinear", "check_positive_int", "layer_kwargs", "lora_a_bound"]


def lora_a_bound(in_features: int) -> float:
    """LoRA's A initialisation, ``kaiming_uniform_(a=√5)`` with fan-in ``in``: U(−1/√in, 1/√in)."""
    return 1.0 / math.sqrt(in_features)


def check_positive_int(owner: str, name: str, value, minimum: int = 1) -> None:
    """``ValueError`` naming ``owner.name`` unless ``value`` is an int >= ``minimum`` (bools rejected)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}.{name} must be {kind}, got {value!r}.")
