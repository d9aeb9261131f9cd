"""MoSConfig: the hyperparameters of Mixture of Shards, validated, as a PEFT config.

Notation used across the package (the paper's and the original code's):

* ``r``  = ``r`` / ``lora_r``: rank of the materialised adapter (sets compute and the α/r scaling)
* ``e``  = ``valid_param_lora_r``: parameter-equivalent rank (pools hold e·L rank-vectors per module type)
* ``p``  = ``valid_param_private_r``: private rank vectors per layer
* ``c``  = ``num_chunk_per_vec``: shards per rank vector (vector sharding)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig
from peft.utils import PeftType

MOS_PEFT_TYPE_NAME = "MOS"


def ensure_peft_type(name: str) -> PeftType:
    """Add ``name`` (upper case, e.g. ``"MOS"``) to PEFT's ``PeftType`` enum and return the member.

    PEFT's ``register_peft_method`` only registers methods whose name is already a member, so a method defined
    outside PEFT (MoS, and the baselines in ``open_instruct.baselines``) adds its member first. Idempotent.

    This leans on ``enum.Enum`` internals (``_member_map_``, ``_value2member_map_``, ``_member_names_``); a test
    guards it, so a PEFT/Python upgrade that breaks it fails loudly.
    """
    if not name or not name.isupper() or not name.replace("_", "").isalnum():
        raise ValueError(f"PEFT type names are upper-case identifiers like 'MOS', got {name!r}.")
    if name in PeftType.__members__:
        return PeftType[name]
    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    type.__setattr__(PeftType, name, member)  # bypasses EnumType's "cannot reassign member"
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    PeftType._member_names_.append(name)
    return member


def ensure_mos_peft_type() -> PeftType:
    """Add ``MOS`` to PEFT's ``PeftType`` enum (see ``ensure_peft_type``)."""
    return ensure_peft_type(MOS_PEFT_TYPE_NAME)


MOS_PEFT_TYPE = ensure_mos_peft_type()


@dataclass
class LowRankAdapterConfig(PeftConfig):
    """Fields shared by the LoRA-family configs of this project (MoS, Tied-LoRA, PRoLoRA): targeting, scaling,
    dropout, and their validation. Each method adds its own fields and sets its ``peft_type``."""

    lora_alpha: float = field(default=16, metadata={"help": "Scaling numerator: ΔW is scaled by lora_alpha / r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the adapter's input."})
    target_modules: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Module names (suffix match), a regex string, or 'all-linear'. Default: 'all-linear' "
            "(every linear layer but the output head), i.e. q/k/v/o/gate/up/down on LLaMA-style models."
        },
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or a regex of modules to leave alone."}
    )
    layers_to_transform: list[int] | int | None = field(
        default=None, metadata={"help": "Only adapt these layer indices (as in LoRA)."}
    )
    layers_pattern: list[str] | str | None = field(
        default=None, metadata={"help": "Name of the layer list, used with layers_to_transform."}
    )
    fan_in_fan_out: bool = field(
        default=False, metadata={"help": "True for layers storing weights as (in, out), e.g. GPT-2's Conv1D."}
    )
    bias: str = field(default="none", metadata={"help": "Only 'none' is supported (as in the original)."})
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Extra modules to train and save in full (e.g. a classifier head)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)

    def validate_common(self) -> None:
        """``ValueError`` naming the field for the shared constraints: bias, dropout, layers_pattern."""
        owner = type(self).__name__
        if self.bias != "none":
            raise ValueError(f"{owner}.bias={self.bias!r} is not supported; use 'none'.")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ValueError(f"{owner}.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError(f"{owner}.layers_pattern is only used together with layers_to_transform.")


@dataclass
class MoSConfig(LowRankAdapterConfig):
    """Configuration of a MoS (Mixture of Shards) adapter.

    Per target module type (q, k, v, o, gate, up, down, … — discovered from the model) MoS keeps one pool of
    A-shards and one of B-shards shared by all L layers: e·L·c shards of length in/c (A) and out/c (B). Each
    layer owns an A index list and an independent B index list of r·c shards: (r−p)·c distinct shared shards
    drawn at random plus its own p·c private shards. Rank vector j is the concatenation of shards
    ``idx[j·c:(j+1)·c]``; ΔW = (α/r)·B·diag(vec)·A. Trainable parameters = e × (LoRA parameters per unit rank).
    """

    r: int = field(default=8, metadata={"help": "Rank r of the materialised adapter (original: lora_r)."})
    valid_param_lora_r: int = field(
        default=1,
        metadata={"help": "Parameter-equivalent rank e: the pools hold as many parameters as a rank-e LoRA."},
    )
    valid_param_private_r: int = field(
        default=1, metadata={"help": "Private rank vectors per layer p (0 <= p <= e, p <= r)."}
    )
    num_chunk_per_vec: int = field(
        default=1, metadata={"help": "Shards per rank vector c; must divide every target's in and out size."}
    )
    init_lora_A_vec_value: float = field(
        default=1.0, metadata={"help": "Mean of the frozen per-rank scaling vector vec (1 = off)."}
    )
    init_lora_A_vec_std: float = field(
        default=0.0, metadata={"help": "Std of the frozen per-rank scaling vector vec (0 = constant)."}
    )
    init_weights: bool = field(
        default=True,
        metadata={"help": "True: A pool U(±1/√in), B pool zeros (ΔW = 0 at start). False: both random (tests)."},
    )
    seed: int | None = field(
        default=None,
        metadata={
            "help": "Seed of the index lists, initial pools and vec. None: drawn from torch's global RNG "
            "(so transformers.set_seed decides it), then recorded here and saved with the adapter."
        },
    )
    def __post_init__(self):
        super().__post_init__()
        self.peft_type = MOS_PEFT_TYPE
        self.validate()

    def validate(self) -> None:
        """Check the constraints that do not depend on the model; raise ``ValueError`` naming the field."""
        r, e, p, c = self.r, self.valid_param_lora_r, self.valid_param_private_r, self.num_chunk_per_vec
        for name, value in (("r", r), ("valid_param_lora_r", e), ("num_chunk_per_vec", c)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"MoSConfig.{name} must be a positive integer, got {value!r}.")
        if not isinstance(p, int) or isinstance(p, bool) or p < 0:
            raise ValueError(f"MoSConfig.valid_param_private_r must be an integer >= 0, got {p!r}.")
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

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r
