"""Tied-LoRA (Renduchintala et al. 2023, the "TL-LoRA" variant with trainable u and v) as a PEFT tuner.

Per target module type t (q, k, v, o, gate, up, down, … discovered from the model) one ``A_t`` (r × in) and one
``B_t`` (out × r) are shared by all L layers; each layer ℓ owns two trainable scaling vectors, u_ℓ ∈ ℝ^r and
v_ℓ ∈ ℝ^out:

    ΔW_ℓ = (α/r) · Λ(v_ℓ) · B_t · Λ(u_ℓ) · A_t

Initialisation (``zero_init="B"``, the default, as LoRA and the MoS authors' code): A_t ~ U(±1/√in), B_t = 0,
u = v = 1. ``zero_init="v"`` (VeRA-style): A_t ~ U(±1/√in), B_t ~ U(±1/√r), u = 1, v = 0. Either way ΔW = 0 at
the start. Trainable parameters per type: r·(in + out) + L·(r + out).

This is the core's shared-pool tuner (``open_instruct.lowrank.tuner``) with trivial routing: the tied A_t and B_t
live in a per-type pool on the tuner (``shared_pools``, a ``TiedPool`` whose forward returns the whole pool: every
layer uses all r rank vectors), so they are gathered by ZeRO-3/FSDP when used and saved once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from open_instruct.lowrank.config import LowRankAdapterConfig, check_positive_int
from open_instruct.lowrank.layer import FactorLinear
from open_instruct.lowrank.peft_type import ensure_peft_type
from open_instruct.lowrank.pool import FactorPool, lora_a_bound
from open_instruct.lowrank.tuner import SharedPoolTuner

TIED_LORA_PEFT_TYPE = ensure_peft_type("TIED_LORA")
ZERO_INIT_CHOICES = ("B", "v")


@dataclass
class TiedLoRAConfig(LowRankAdapterConfig):
    """Configuration of a Tied-LoRA adapter: ΔW_ℓ = (α/r)·Λ(v_ℓ)·B_t·Λ(u_ℓ)·A_t, A_t and B_t shared per module type."""

    method_peft_type = TIED_LORA_PEFT_TYPE

    r: int = field(default=8, metadata={"help": "Rank r of the tied A (r × in) and B (out × r) of each module type."})
    zero_init: str = field(
        default="B",
        metadata={"help": "Which factor starts at zero so that ΔW = 0: 'B' (B = 0, u = v = 1; LoRA-style, default) "
                          "or 'v' (v = 0, u = 1, B ~ U(±1/√r); VeRA-style)."},
    )
    init_weights: bool = field(
        default=True,
        metadata={"help": "True: ΔW = 0 at start (see zero_init). False: A, B, u and v all random (for tests)."},
    )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any constraint that does not depend on the model."""
        check_positive_int("TiedLoRAConfig", "r", self.r)
        if self.zero_init not in ZERO_INIT_CHOICES:
            raise ValueError(f"TiedLoRAConfig.zero_init must be one of {ZERO_INIT_CHOICES}, got {self.zero_init!r}.")
        self.validate_common()

    @staticmethod
    def trainable_params(r: int, in_features: int, out_features: int, num_layers: int) -> int:
        """Trainable parameters of one module type: r·(in + out) shared + L·(r + out) per-layer vectors."""
        return r * (in_features + out_features) + num_layers * (r + out_features)


class TiedPool(FactorPool):
    """The tied ``A`` (r, in) and ``Bᵀ`` (r, out) of one module type; every layer uses the whole pool."""

    def forward(self, adapter_name: str):
        """``(A, Bᵀ)`` as a module call, so that ZeRO-3/FSDP hooks gather the pool first."""
        return self.gather(adapter_name)

    def gather(self, adapter_name: str):
        """``(A, Bᵀ)`` without module hooks (export, merge, the inference factor cache)."""
        return self.A[adapter_name], self.B[adapter_name]


class TiedLoRALinear(FactorLinear):
    """Tied-LoRA around a linear-like base layer: ``y = base(x) + (α/r)·(((dropout(x)·A_tᵀ) ⊙ u)·B_tᵀ) ⊙ v``."""

    adapter_layer_names = ("tied_lora_u", "tied_lora_v")
    other_param_names = ("r", "scaling", "tied_lora_dropout", "tied_lora_type_key")
    dropout_attr = "tied_lora_dropout"
    method_name = "tied_lora"

    def __init__(self, base_layer: nn.Module, adapter_name: str, config: TiedLoRAConfig, pools: nn.ModuleDict,
                 **kwargs) -> None:
        super().__init__(base_layer, **kwargs)
        self.tied_lora_u = nn.ParameterDict({})
        self.tied_lora_v = nn.ParameterDict({})
        self.tied_lora_type_key: dict[str, str] = {}
        object.__setattr__(self, "_shared_pools", pools)  # a reference, deliberately not a registered submodule
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config, pools)

    def update_layer(self, adapter_name: str, config: TiedLoRAConfig, pools: nn.ModuleDict) -> None:
        """Register an adapter: u = 1 and v = 1 (v = 0 with zero_init='v'); its pool is assigned by the tuner."""
        self.r[adapter_name] = config.r
        self.scaling[adapter_name] = config.scaling
        self.set_dropout(adapter_name, config.lora_dropout)
        self.clear_factor_cache(adapter_name)
        device = self.base_device()
        self.tied_lora_u[adapter_name] = nn.Parameter(torch.ones(config.r, device=device))
        v_init = torch.zeros if config.zero_init == "v" else torch.ones
        self.tied_lora_v[adapter_name] = nn.Parameter(v_init(self.out_features, device=device))
        object.__setattr__(self, "_shared_pools", pools)
        self.set_adapter(self.active_adapters)

    def pool(self, adapter_name: str) -> TiedPool:
        return self._shared_pools[self.tied_lora_type_key[adapter_name]]

    def factor_sources(self, adapter_name: str):
        pool = self.pool(adapter_name)
        return pool.A[adapter_name], pool.B[adapter_name], self.tied_lora_u[adapter_name], self.tied_lora_v[adapter_name]

    def lora_factors(self, adapter_name: str):
        """``A = Λ(u)·A_t`` (r, in) and ``B = Λ(v)·B_t`` (out, r), on this layer's device."""
        a, b_t = self.pool(adapter_name).gather(adapter_name)
        u, v = self.tied_lora_u[adapter_name], self.tied_lora_v[adapter_name]
        a, b_t = a.to(u.device), b_t.to(u.device)
        return a * u.to(a.dtype)[:, None], b_t.t() * v.to(a.dtype)[:, None]

    def adapter_output(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        a, b_t = self.pool(adapter_name)(adapter_name)
        u, v = self.tied_lora_u[adapter_name], self.tied_lora_v[adapter_name]
        if a.device != x.device:  # a layer on another device than its pool (device_map)
            a, b_t = a.to(x.device), b_t.to(x.device)
        h = nn.functional.linear(self.dropout(adapter_name)(self._cast_input_dtype(x, a.dtype)), a)
        h = h * (u.to(h.dtype) * self.scaling[adapter_name])
        return (h @ b_t) * v.to(h.dtype)


class TiedLoRAModel(SharedPoolTuner):
    """Injects Tied-LoRA layers; holds the tied A and B of each module type in ``shared_pools`` (saved once)."""

    prefix: str = "tied_lora_"
    method_label = "Tied-LoRA"
    tuner_layer_cls = TiedLoRALinear

    def _build_pools(self, adapter_name: str) -> None:
        """One tied A and B per module type (all its layers must share one shape); every layer uses all of it."""
        config, layers, plan, generator = self.pool_plan(adapter_name)
        for type_key, (members, in_f, out_f) in plan.items():
            if type_key not in self.shared_pools:
                self.shared_pools[type_key] = TiedPool(in_f, out_f)
            pool = self.shared_pools[type_key]
            device = layers[members[0]].tied_lora_u[adapter_name].device
            # The core pool's init with c = 1 and r rows: A ~ U(±1/√in), B = 0 (or random when init_weights=False).
            pool.add_adapter(adapter_name, config.r, 1, config.init_weights and config.zero_init == "B", generator,
                             device=device)
            if config.zero_init == "v" and device.type != "meta":
                with torch.no_grad():  # B ~ U(±1/√r): kaiming-uniform with B's own fan-in r
                    bound = lora_a_bound(config.r)
                    pool.B[adapter_name].copy_(torch.empty(config.r, out_f).uniform_(-bound, bound, generator=generator))
            for name in members:
                layer = layers[name]
                layer.tied_lora_type_key[adapter_name] = type_key
                if not config.init_weights and device.type != "meta":
                    with torch.no_grad():
                        for vec in (layer.tied_lora_u[adapter_name], layer.tied_lora_v[adapter_name]):
                            vec.copy_(torch.empty(vec.shape).uniform_(0.5, 1.5, generator=generator))
