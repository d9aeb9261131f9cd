"""Registering a low-rank method defined outside PEFT as a PEFT type.

PEFT's ``register_peft_method`` only accepts a name that is already a member of the ``PeftType`` enum, so a
method of this project (MoS, Tied-LoRA, PRoLoRA) adds its member first. ``register_method`` does both, once.
"""

from __future__ import annotations

from peft.utils import PeftType


def ensure_peft_type(name: str) -> PeftType:
    """Add ``name`` (upper case, e.g. ``"MOS"``) to PEFT's ``PeftType`` enum and return the member. Idempotent.

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


def register_method(peft_type: PeftType, config_cls, model_cls, prefix: str) -> None:
    """Register ``config_cls`` / ``model_cls`` under ``peft_type`` with PEFT (once per process)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import register_peft_method

    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(name=peft_type.value.lower(), config_cls=config_cls, model_cls=model_cls, prefix=prefix)
