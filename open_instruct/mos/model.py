"""MoSModel: the PEFT tuner of Mixture of Shards, on the shared-pool tuner of ``open_instruct.lowrank``."""

from __future__ import annotations

import torch

from open_instruct.lowrank.grouping import group_same_shape
from open_instruct.lowrank.tuner import POOLS_ATTR, SharedPoolTuner

from .config import MoSConfig
from .layer import INDEX_DTYPE, MoSLayer, MoSPool
from .routing import build_index_lists, compact_index_dtype, num_pool_shards


def plan_pools(config: MoSConfig, shapes: dict[str, tuple[int, int]]) -> dict[str, tuple[list[str], int, int]]:
    """Validate a MoS configuration against target modules ``{name: (in, out)}``, before anything is built.

    Returns ``{type_key: (module names in layer order, in, out)}``; raises ``ValueError`` naming the field and the
    constraint: no target, modules of one type with different shapes, c not dividing a size, too few shared shards.
    """
    c = config.num_chunk_per_vec
    plan = group_same_shape(shapes, "MoS")
    for type_key, (names, in_f, out_f) in plan.items():
        for size_name, size in (("input", in_f), ("output", out_f)):
            if size % c:
                raise ValueError(
                    f"num_chunk_per_vec (c={c}) must divide every target's input and output size, but "
                    f"{type_key!r} has {size_name} size {size}. Choose a c that divides {in_f} and {out_f}."
                )
        config.validate_for_layers(len(names), type_key)
    return plan


class MoSModel(SharedPoolTuner):
    """Injects MoS layers into a model; holds the shard pools (``shared_pools``), one ``MoSPool`` per module type."""

    prefix: str = "mos_"
    method_label = "MoS"
    tuner_layer_cls = MoSLayer

    def plan_types(self, config: MoSConfig, shapes):
        return plan_pools(config, shapes)

    def _build_pools(self, adapter_name: str) -> None:
        """Group the new layers by module type, validate shapes, create each type's pools and index lists."""
        config, layers, plan, generator = self.pool_plan(adapter_name)
        r, e, p, c = config.r, config.valid_param_lora_r, config.valid_param_private_r, config.num_chunk_per_vec
        for type_key, (members, in_f, out_f) in plan.items():
            num_layers = len(members)
            if type_key not in self.shared_pools:
                self.shared_pools[type_key] = MoSPool(in_f, out_f)
            pool = self.shared_pools[type_key]
            device = layers[members[0]].mos_index_A[adapter_name].device
            pool.add_adapter(adapter_name, num_pool_shards(e, num_layers, c), c, config.init_weights, generator,
                             device=device)  # a base on the meta device gets meta pools (accounting only)
            routing = build_index_lists(num_layers, r, e, p, c, generator, subset_selection=config.subset_selection,
                                        pair_dissociation=config.pair_dissociation)
            for position, name in enumerate(members):
                vec = torch.full((r,), float(config.init_lora_A_vec_value))
                if config.init_lora_A_vec_std:
                    vec = vec + float(config.init_lora_A_vec_std) * torch.randn(r, generator=generator)
                layers[name].assign_routing(adapter_name, type_key, *routing[position], vec)
            pool.set_members(adapter_name, [layers[name] for name in members])

    # ------------------------------------------------------------------ checkpoints: compact index lists
    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        out = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        num_shards = max(v.shape[0] for k, v in out.items() if f".{POOLS_ATTR}." in k)
        small = compact_index_dtype(num_shards)
        return {k: (v.to(small) if ".mos_index_" in k else v) for k, v in out.items()}

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        return {k: (v.to(INDEX_DTYPE) if ".mos_index_" in k else v) for k, v in remapped.items()}
