"""MoSConfig: the hyperparameters of Mixture of Shards, validated, as a PEFT config.

Notation used across the package (the paper's and the original code's):

* ``r``  = ``r`` / ``lora_r``: rank of the materialised adapter (sets compute and the α/r scaling)
* ``e``  = ``valid_param_lora_r``: parameter-equivalent rank (pools hold e·L rank-vectors per module type)
* ``p``  = ``valid_param_private_r``: private rank vectors per layer
* ``c``  = ``num_chunk_per_vec``: shards per rank vector (vector sharding)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from open_instruct.lowrank.config import LowRankAdapterConfig, check_positive_int
from open_instruct.lowrank.peft_type import ensure_peft_type

MOS_PEFT_TYPE = ensure_peft_type("MOS")


@dataclass
class MoSConfig(LowRankAdapterConfig):
    """Configuration of a MoS (Mixture of Shards) adapter.

    Per target module type (q, k, v, o, gate, up, down, … — discovered from the model) MoS keeps one pool of
    A-shards and one of B-shards shared by all L layers: e·L·c shards of length in/c (A) and out/c (B). Each
    layer owns an A index list and an independent B index list of r·c shards: (r−p)·c distinct shared shards
    drawn at random plus its own p·c private shards. Rank vector j is the concatenation of shards
    ``idx[j·c:(j+1)·c]``; ΔW = (α/r)·B·diag(vec)·A. Trainable parameters = e × (LoRA parameters per unit rank).
    """

    method_peft_type = MOS_PEFT_TYPE

    # Defaults: r=8 e=2 p=1 c=4, the proportions of the original's example run (r=16 e=4 p=2 c=4: a quarter of a
    # rank-r LoRA's parameters, half of them private, four shards per vector) at PEFT LoRA's default rank 8, and the
    # setting of this project's demo and benchmarks. (r−p)·c <= (e−p)·L·c then asks for L >= 7 layers.
    r: int = field(default=8, metadata={"help": "Rank r of the materialised adapter (original: lora_r)."})
    valid_param_lora_r: int = field(
        default=2,
        metadata={"help": "Parameter-equivalent rank e: the pools hold as many parameters as a rank-e LoRA."},
    )
    valid_param_private_r: int = field(
        default=1, metadata={"help": "Private rank vectors per layer p (0 <= p <= e, p <= r)."}
    )
    num_chunk_per_vec: int = field(
        default=4, metadata={"help": "Shards per rank vector c; must divide every target's in and out size."}
    )
    init_lora_A_vec_value: float = field(
        default=1.0, metadata={"help": "Mean of the frozen per-rank scaling vector vec (1 = off)."}
    )
    init_lora_A_vec_std: float = field(
        default=0.0, metadata={"help": "Std of the frozen per-rank scaling vector vec (0 = constant)."}
    )
    subset_selection: bool = field(
        default=True,
        metadata={"help": "Ablation switch (docs/ABLATIONS.md). True (the method): each layer draws its own subset "
                  "of shared shards. False: one draw per module type, used by every layer."},
    )
    pair_dissociation: bool = field(
        default=True,
        metadata={"help": "Ablation switch (docs/ABLATIONS.md). True (the method): A and B draw their index lists "
                  "independently. False: B uses A's index list."},
    )
    init_weights: bool = field(
        default=True,
        metadata={"help": "True: A pool U(±1/√in), B pool zeros (ΔW = 0 at start). False: both random (tests)."},
    )

    def validate(self) -> None:
        """Check the constraints that do not depend on the model; raise ``ValueError`` naming the field."""
        r, e, p = self.r, self.valid_param_lora_r, self.valid_param_private_r
        for name in ("r", "valid_param_lora_r", "num_chunk_per_vec"):
            check_positive_int("MoSConfig", name, getattr(self, name))
        check_positive_int("MoSConfig", "valid_param_private_r", p, minimum=0)
        if p > e:
            raise ValueError(
                f"MoSConfig.valid_param_private_r (p={p}) must be <= valid_param_lora_r (e={e}): the private "
                "shards are part of the parameter budget."
            )
        if p > r:
            raise ValueError(
                f"MoSConfig.valid_param_private_r (p={p}) must be <= r ({r}): each layer uses its p private "
                "rank vectors as the last p of its r rank vectors."
            )
        if e > r:
            raise ValueError(
                f"MoSConfig.valid_param_lora_r (e={e}) must be <= r ({r}): each layer draws only r-p = {r - p} shared "
                f"rank vectors, so with e > r at least (e-r)·L·c shards of every pool could never be used by any "
                f"layer while still counted as trainable. Raise r to at least {e} or lower valid_param_lora_r."
            )
        if p == e and r != e:
            raise ValueError(
                f"With valid_param_private_r == valid_param_lora_r (p = e = {e}) nothing is shared, so r must "
                f"equal e (plain LoRA); got r={r}. Lower p or set r={e}."
            )
        self.validate_common()
        if self.init_lora_A_vec_std is None:
            self.init_lora_A_vec_std = 0.0
        if float(self.init_lora_A_vec_std) < 0:
            raise ValueError(f"MoSConfig.init_lora_A_vec_std must be >= 0, got {self.init_lora_A_vec_std!r}.")

    def validate_for_layers(self, num_layers: int, type_key: str) -> None:
        """The constraint that needs L, the number of layers holding a module of this type."""
        r, e, p, c = self.r, self.valid_param_lora_r, self.valid_param_private_r, self.num_chunk_per_vec
        n_shared = (e - p) * num_layers * c
        if (r - p) * c > n_shared:
            raise ValueError(
                f"Module type {type_key!r}: each layer needs (r-p)·c = ({r}-{p})·{c} = {(r - p) * c} distinct "
                f"shared shards but the pool has only (e-p)·L·c = ({e}-{p})·{num_layers}·{c} = {n_shared}. "
                "Raise valid_param_lora_r, lower r, or lower valid_param_private_r."
            )
