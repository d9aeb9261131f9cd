"""Loading the base model for training (optional 4-bit QLoRA, gradient checkpointing) and the tokenizer for training
and evaluation (one pad-token policy, no new tokens)."""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

logger = logging.getLogger("finetune_trainer")


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def cpu_native_bf16() -> bool:
    """Whether this CPU has native bfloat16 matmuls (oneDNN reports avx512_bf16 / AMX support); without them a
    bf16 matmul runs many times slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def print_notice(message: str) -> None:
    print(f"[notice] {message}")


def load_tokenizer(name: str, *, padding_side: str, use_fast: bool = True, notice=print_notice,
                   flag: str = "--model_name_or_path", **kwargs):
    """The tokenizer at ``name`` for training (``padding_side="right"``) and evaluation (``"left"``) alike.

    ``use_fast=False`` asks for the slow tokenizer; when ``name`` has none the fast one is used and ``notice`` says
    so. A tokenizer without a pad token pads with an existing one (``set_pad_token``). ``kwargs`` go to
    ``AutoTokenizer.from_pretrained``; a tokenizer that cannot load is one line naming ``flag`` and ``name``.
    """
    from transformers import AutoTokenizer

    from open_instruct.errors import one_line
    from open_instruct.run_dir import load_checked

    def load(**fast):
        return load_checked("tokenizer", name, AutoTokenizer.from_pretrained, flag=flag, **kwargs, **fast)

    if use_fast:
        tokenizer = load()
    else:
        try:
            tokenizer = load(use_fast=False)
        except (ValueError, ImportError) as err:  # UsageError (from load_checked) is a ValueError
            notice(f"no slow tokenizer for {name} ({one_line(err)}); using the fast tokenizer instead.")
            tokenizer = load()
        else:
            if getattr(tokenizer, "is_fast", False):
                notice(f"no slow tokenizer for {name}; using the fast tokenizer instead.")
    tokenizer.padding_side = padding_side
    return set_pad_token(tokenizer, name)


def set_pad_token(tokenizer, name: str = "the model"):
    """The one pad-token policy: keep the tokenizer's pad token; without one pad with its unk token, else its eos
    token; never add a token (an exported adapter must fit the unchanged base vocabulary).

    Which token pads changes no number: training pads on the right with attention mask 0 and label -100 (labels are
    built by the data encoders, never from pad ids), evaluation pads on the left with attention mask 0 and positions
    counted over real tokens, so no real token attends to a pad and no pad is a target
    (``tests/test_tokenizer_policy.py`` checks losses, gradients and evaluation outputs bit for bit). Unk comes
    before eos to keep the pad id apart from eos, which ends every training reply, for any tool that masks labels
    by pad id."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
        if fallback is None:
            from open_instruct.run_dir import UsageError

            raise UsageError(f"the tokenizer of {name} has no pad, unk or eos token to pad batches with; give it a "
                             "pad token (tokenizer_config.json) or pass another tokenizer")
        tokenizer.pad_token = fallback
        logger.info("tokenizer has no pad token; padding with %r (attention mask 0, labels -100)", fallback)
    return tokenizer


def load_model(model_args, mos_args, training_args):
    from transformers import AutoModelForCausalLM

    dtype = "auto" if model_args.torch_dtype == "auto" else getattr(torch, model_args.torch_dtype)
    kw = dict(dtype=dtype, token=model_args.token, trust_remote_code=model_args.trust_remote_code)
    if model_args.use_flash_attn:
        kw["attn_implementation"] = "flash_attention_2"
    if mos_args.use_qlora:
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if dtype in ("auto", torch.bfloat16) else dtype)
        kw["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kw)
    model.config.use_cache = False
    if mos_args.use_qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=training_args.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif training_args.gradient_checkpointing:
        model.enable_input_require_grads()
    return model
