"""Loading the base model and tokenizer for training: optional 4-bit QLoRA, gradient checkpointing, no new tokens."""

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


def load_tokenizer(model_args):
    from transformers import AutoTokenizer

    name = model_args.tokenizer_name or model_args.model_name_or_path
    kw = dict(token=model_args.token, trust_remote_code=model_args.trust_remote_code, padding_side="right")
    try:
        tok = AutoTokenizer.from_pretrained(name, use_fast=model_args.use_fast_tokenizer, **kw)
    except (ValueError, OSError, ImportError) as err:
        if model_args.use_fast_tokenizer:
            raise
        logger.warning("no slow tokenizer for %s (%s); using the fast one", name, err)
        tok = AutoTokenizer.from_pretrained(name, use_fast=True, **kw)
    if tok.pad_token is None:  # never add tokens: the exported adapter must fit the unchanged base vocabulary
        tok.pad_token = tok.unk_token or tok.eos_token
        logger.info("tokenizer has no pad token; padding with %r (labels are masked with -100)", tok.pad_token)
    return tok


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
