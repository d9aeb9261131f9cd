"""Accounting of a MoS model: trainable parameters, their LoRA-rank equivalent, checkpoint sizes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layer import MoSLayer
from .routing import compact_index_dtype


@dataclass
class MoSReport:
    trainable_params: int
    lora_params_per_rank: int
    equivalent_lora_rank: float
    checkpoint_bytes: int
    dense_lora_bytes: int

    def __str__(self) -> str:
        return (f"trainable params {self.trainable_params:,} = {self.equivalent_lora_rank:g} x LoRA rank-1 "
                f"({self.lora_params_per_rank:,}); compact checkpoint {self.checkpoint_bytes / 2**20:.2f} MiB "
                f"(dense LoRA export {self.dense_lora_bytes / 2**20:.2f} MiB)")


def mos_report(model, adapter_name: str = "default") -> MoSReport:
    """Trainable parameters, their LoRA-rank equivalent, and checkpoint sizes (compact vs dense export)."""
    layers = [m for m in model.modules() if isinstance(m, MoSLayer) and adapter_name in m.mos_index_A]
    per_rank = sum(m.in_features + m.out_features for m in layers)
    pools = {id(p): p for m in layers for p in (m.pool(adapter_name).A[adapter_name], m.pool(adapter_name).B[adapter_name])}
    trainable = sum(p.numel() for p in pools.values())
    num_shards = max(p.shape[0] for p in pools.values())
    idx_bytes = torch.empty(0, dtype=compact_index_dtype(num_shards)).element_size()
    ckpt = sum(p.numel() * p.element_size() for p in pools.values())
    ckpt += sum((m.mos_index_A[adapter_name].numel() + m.mos_index_B[adapter_name].numel()) * idx_bytes
                + m.mos_vec[adapter_name].numel() * 4 for m in layers)
    dense = sum(m.r[adapter_name] * (m.in_features + m.out_features) * 4 for m in layers)
    return MoSReport(trainable, per_rank, trainable / per_rank if per_rank else 0.0, ckpt, dense)
