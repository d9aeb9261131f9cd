"""The fields and checks every low-rank method of this project shares (targeting, scaling, dropout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from peft.config import PeftConfig
from peft.utils import PeftType


def check_positive_int(owner: str, name: str, value, minimum: int = 1) -> None:
    """``ValueError`` naming ``owner.name`` unless ``value`` is an int >= ``minimum`` (bools rejected)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}.{name} must be {kind}, got {value!r}.")


@dataclass
class LowRankAdapterConfig(PeftConfig):
    """Fields shared by the low-rank configs of this project (MoS, Tied-LoRA, PRoLoRA): targeting, scaling,
    dropout, the initialisation seed, and their validation. Each method adds its own fields (``r`` among them) and
    sets its ``peft_type``."""

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
    seed: int | None = field(
        default=None,
        metadata={"help": "Seed of everything the adapter draws at random when it is built (initial factors, index "
                          "lists). None: drawn from torch's global RNG (so transformers.set_seed decides it), then "
                          "recorded here and saved with the adapter."},
    )

    # The method's PEFT type (set by each subclass); every config of it is stamped with it and validated.
    method_peft_type: ClassVar[PeftType | None] = None

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if self.method_peft_type is not None:
            self.peft_type = self.method_peft_type
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any constraint that does not depend on the model; a method
        adds its own checks and calls ``validate_common``."""
        self.validate_common()

    def validate_common(self) -> None:
        """``ValueError`` naming the field for the shared constraints: bias, dropout, layers_pattern."""
        owner = type(self).__name__
        if self.bias != "none":
            raise ValueError(f"{owner}.bias={self.bias!r} is not supported; use 'none'.")
        if not 0.0 <= float(self.lora_dropout) < 1.0:
            raise ValueError(f"{owner}.lora_dropout must be in [0, 1), got {self.lora_dropout!r}.")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError(f"{owner}.layers_pattern is only used together with layers_to_transform.")

    @property
    def scaling(self) -> float:
        """α / r: the factor ΔW = scaling · B · A carries (every method here has an ``r`` field)."""
        return self.lora_alpha / self.r


def default_all_linear(config: LowRankAdapterConfig) -> LowRankAdapterConfig:
    """No ``target_modules`` given: adapt every linear layer but the output head, as the launchers do."""
    if config.target_modules is None:
        config.target_modules = "all-linear"
    return config
