"""PRoLoRA (Wang et al. 2024, "PRoLoRA: Partial Rotation Empowers More Parameter-Efficient LoRA", arXiv 2402.16902).

Intra-layer sharing only: every adapted layer has its own parameters. With r = rank, u = ``unshared_r``,
s = r − u shared ranks, m = ``reduce_lora_A_x`` and n = ``reduce_lora_B_x`` (the replication counts):

* A = [A_s ; A_u] (r × in): A_u (u × in) is unshared; A_s (s × in) is the chunk C_A (s × in/m) replicated m times
  along the input, copy i rolled by i·shift_A along the rank axis:
  ``A_s[k, i·in/m + j] = C_A[(k + i·shift_A) mod s, j]``;
* B = [B_s , B_u] (out × r): B_u (out × u) is unshared; B_s (out × s) is the chunk C_B (out/n × s) replicated n times
  along the output, copy i rolled by i·shift_B along the rank axis:
  ``B_s[i·out/n + p, k] = C_B[p, (k + i·shift_B) mod s]``;
* ΔW = (α/r)·B·A.

shift = max(⌊s/m⌋, 1) for A and max(⌊s/n⌋, 1) for B ("rotation enhancement"; the paper's and the authors' code's
default; 0 when rotation is off). The shared ranks come first and the unshared last, as in the authors' code.
Initialisation ("rectified"): C_A and A_u ~ U(±1/√in), i.e. LoRA's kaiming-uniform with the full fan-in ``in``
rather than the chunk's in/m; C_B = 0 and B_u = 0, so ΔW = 0 at the start. The draws come from one generator
seeded with ``ProLoRAConfig.seed`` (as for MoS and Tied-LoRA), layer after layer.
Trainable parameters per module: u·(in + out) + (r − u)·(in/m + out/n).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from peft.tuners.tuners_utils import (
    BaseTuner,
    _get_in_out_features,
)
from torch import nn

from open_instruct.lowrank.config import LowRankAdapterConfig, check_positive_int, default_all_linear
from open_instruct.lowrank.layer import FactorLinear, layer_kwargs
from open_instruct.lowrank.peft_type import ensure_peft_type
from open_instruct.lowrank.pool import lora_a_bound
from open_instruct.lowrank.serving import mixed_batch_hooks
from open_instruct.lowrank.tuner import check_targets_linear, seeded_generator

PROLORA_PEFT_TYPE = ensure_peft_type("PROLORA")


@dataclass
class ProLoRAConfig(LowRankAdapterConfig):
    """Configuration of a PRoLoRA adapter (field names as in the authors' code; u, m, n in the paper's notation)."""

    method_peft_type = PROLORA_PEFT_TYPE

    r: int = field(default=8, metadata={"help": "Rank r of the materialised A (r × in) and B (out × r)."})
    unshared_r: int = field(
        default=1, metadata={"help": "u: ranks that are not shared (0 <= u <= r); the other r − u are built from chunks."}
    )
    reduce_lora_A_x: int = field(
        default=2, metadata={"help": "m: copies of the A chunk along the input; must divide every target's input size."}
    )
    reduce_lora_B_x: int = field(
        default=2,
        metadata={"help": "n: copies of the B chunk along the output; must divide every target's output size."},
    )
    enable_lora_rotation: bool = field(
        default=True, metadata={"help": "Roll copy i of a chunk by i·shift along the rank axis (rotation enhancement)."}
    )
    lora_A_shift_size: int | None = field(
        default=None, metadata={"help": "shift_A; None: max(⌊(r − u)/m⌋, 1) as in the paper."}
    )
    lora_B_shift_size: int | None = field(
        default=None, metadata={"help": "shift_B; None: max(⌊(r − u)/n⌋, 1) as in the paper."}
    )
    init_weights: bool = field(
        default=True,
        metadata={"help": "True: A parts ~ U(±1/√in), B parts = 0 (ΔW = 0). False: B parts random too (for tests)."},
    )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any constraint that does not depend on the model."""
        check_positive_int("ProLoRAConfig", "r", self.r)
        check_positive_int("ProLoRAConfig", "unshared_r", self.unshared_r, minimum=0)
        if self.unshared_r > self.r:
            raise ValueError(f"ProLoRAConfig.unshared_r (u={self.unshared_r}) must be <= r ({self.r}).")
        check_positive_int("ProLoRAConfig", "reduce_lora_A_x", self.reduce_lora_A_x)
        check_positive_int("ProLoRAConfig", "reduce_lora_B_x", self.reduce_lora_B_x)
        for name in ("lora_A_shift_size", "lora_B_shift_size"):
            if getattr(self, name) is not None:
                check_positive_int("ProLoRAConfig", name, getattr(self, name), minimum=0)
        self.validate_common()

    def validate_for_module(self, name: str, in_features: int, out_features: int) -> None:
        """m must divide the module's input size and n its output size."""
        for field_name, copies, size, what in (("reduce_lora_A_x", self.reduce_lora_A_x, in_features, "input"),
                                               ("reduce_lora_B_x", self.reduce_lora_B_x, out_features, "output")):
            if size % copies:
                raise ValueError(
                    f"ProLoRAConfig.{field_name} ({copies}) must divide every target's {what} size, but {name!r} has "
                    f"{what} size {size}. Choose a value that divides {in_features} (A) / {out_features} (B)."
                )

    @property
    def shift_sizes(self) -> tuple[int, int]:
        """(shift_A, shift_B): the rank-axis roll per copy; 0 when rotation is disabled."""
        if not self.enable_lora_rotation:
            return 0, 0
        s = self.r - self.unshared_r
        auto_a, auto_b = max(s // self.reduce_lora_A_x, 1), max(s // self.reduce_lora_B_x, 1)
        return (auto_a if self.lora_A_shift_size is None else self.lora_A_shift_size,
                auto_b if self.lora_B_shift_size is None else self.lora_B_shift_size)

    def trainable_params(self, in_features: int, out_features: int) -> int:
        """u·(in + out) + (r − u)·(in/m + out/n) for one module."""
        u, s = self.unshared_r, self.r - self.unshared_r
        return u * (in_features + out_features) + s * (in_features // self.reduce_lora_A_x
                                                        + out_features // self.reduce_lora_B_x)


def replicate_rotated(chunk: torch.Tensor, copies: int, shift: int, rank_dim: int) -> torch.Tensor:
    """Replicate ``chunk`` ``copies`` times along its non-rank axis, copy i rolled by i·shift along the rank axis.

    ``rank_dim=0``: chunk (s, k) -> (s, copies·k) with ``out[t, i·k + j] = chunk[(t + i·shift) mod s, j]`` (A).
    ``rank_dim=1``: chunk (k, s) -> (copies·k, s) with ``out[i·k + p, t] = chunk[p, (t + i·shift) mod s]`` (B).
    One gather and a reshape.
    """
    s = chunk.shape[rank_dim]
    k = chunk.shape[1 - rank_dim]
    if s == 0:
        return chunk.new_zeros((0, copies * k) if rank_dim == 0 else (copies * k, 0))
    ranks = torch.arange(s, device=chunk.device)
    idx = (ranks[None, :] + shift * torch.arange(copies, device=chunk.device)[:, None]) % s  # (copies, s)
    if rank_dim == 0:
        return chunk[idx].permute(1, 0, 2).reshape(s, copies * k)  # chunk[idx]: (copies, s, k)
    return chunk[:, idx].permute(1, 0, 2).reshape(copies * k, s)  # chunk[:, idx]: (k, copies, s)


class ProLoRALinear(FactorLinear):
    """PRoLoRA around a linear-like base layer: ``y = base(x) + (α/r)·(dropout(x)·Aᵀ)·Bᵀ`` with A, B assembled."""

    adapter_layer_names = ("prolora_A_chunk", "prolora_B_chunk", "prolora_A_unshared", "prolora_B_unshared")
    other_param_names = ("r", "scaling", "prolora_dropout", "prolora_layout")
    dropout_attr = "prolora_dropout"
    method_name = "prolora"

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: ProLoRAConfig,
                 generator: torch.Generator | None = None, **kwargs) -> None:
        super().__init__(base_layer, **kwargs)
        self.prolora_A_chunk = nn.ParameterDict({})
        self.prolora_B_chunk = nn.ParameterDict({})
        self.prolora_A_unshared = nn.ParameterDict({})
        self.prolora_B_unshared = nn.ParameterDict({})
        self.prolora_layout: dict[str, tuple[int, int, int, int]] = {}  # adapter -> (m, n, shift_A, shift_B)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, generator)

    def update_layer(self, adapter_name: str, config: ProLoRAConfig, generator: torch.Generator | None = None) -> None:
        """Register an adapter, its parts drawn from ``generator`` (the tuner's, seeded with ``config.seed``)."""
        r, u, m, n = config.r, config.unshared_r, config.reduce_lora_A_x, config.reduce_lora_B_x
        s, in_f, out_f = r - u, self.in_features, self.out_features
        self.r[adapter_name] = r
        self.scaling[adapter_name] = config.scaling
        self.set_dropout(adapter_name, config.lora_dropout)
        self.prolora_layout[adapter_name] = (m, n, *config.shift_sizes)
        self.clear_factor_cache(adapter_name)
        a_chunk, a_unshared = torch.empty(s, in_f // m), torch.empty(u, in_f)
        b_chunk, b_unshared = torch.empty(out_f // n, s), torch.empty(out_f, u)
        bound = lora_a_bound(in_f)  # rectified: fan-in is the full input size, not the chunk's in/m
        for t in (a_chunk, a_unshared):
            t.uniform_(-bound, bound, generator=generator)
        for t in (b_chunk, b_unshared):
            t.zero_() if config.init_weights else t.uniform_(-bound, bound, generator=generator)
        self.prolora_A_chunk[adapter_name] = nn.Parameter(a_chunk)
        self.prolora_B_chunk[adapter_name] = nn.Parameter(b_chunk)
        self.prolora_A_unshared[adapter_name] = nn.Parameter(a_unshared)
        self.prolora_B_unshared[adapter_name] = nn.Parameter(b_unshared)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def factor_sources(self, adapter_name: str):
        return tuple(getattr(self, name)[adapter_name] for name in self.adapter_layer_names)

    def lora_factors(self, adapter_name: str):
        """``A = [A_s ; A_u]`` (r, in) and ``B = [B_s , B_u]`` (out, r), the shared parts replicated and rolled."""
        m, n, shift_a, shift_b = self.prolora_layout[adapter_name]
        a_s = replicate_rotated(self.prolora_A_chunk[adapter_name], m, shift_a, rank_dim=0)
        b_s = replicate_rotated(self.prolora_B_chunk[adapter_name], n, shift_b, rank_dim=1)
        a = torch.cat([a_s, self.prolora_A_unshared[adapter_name]], dim=0)
        b = torch.cat([b_s, self.prolora_B_unshared[adapter_name]], dim=1)
        return a, b


class ProLoRAModel(BaseTuner):
    """Injects PRoLoRA layers (every layer has its own chunks: no state shared across layers)."""

    prefix: str = "prolora_"
    tuner_layer_cls = ProLoRALinear
    target_module_mapping: dict = {}

    def _prepare_adapter_config(self, peft_config: ProLoRAConfig, model_config: dict) -> ProLoRAConfig:
        return default_all_linear(peft_config)

    def inject_adapter(self, model, adapter_name, **kwargs) -> None:
        """Check every target against m and n first, so that a module that does not fit leaves the model as it was
        (instead of half converted); then draw every layer's initial parts from one generator seeded with
        ``config.seed`` (recorded in the config when it was None)."""
        config = self.peft_config[adapter_name]
        for key, base in check_targets_linear(self, config, model, "PRoLoRA").items():
            config.validate_for_module(key, *_get_in_out_features(base))
        self._init_generator = seeded_generator(config)
        super().inject_adapter(model, adapter_name, **kwargs)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        """``adapter_names=[...]`` in ``PeftModel.forward``/``generate``: one adapter per row (mixed batches)."""
        with mixed_batch_hooks(self, ProLoRALinear, **kwargs):
            yield

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key):
        if isinstance(target, ProLoRALinear):
            target.update_layer(adapter_name, config, self._init_generator)
            return
        new_module = ProLoRALinear(target, adapter_name, config, self._init_generator, **layer_kwargs(target, config))
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)
