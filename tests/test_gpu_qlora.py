"""Every method on a 4-bit (QLoRA, bitsandbytes NF4) base: training steps, then the exact export to plain LoRA.

For each method: a small random Llama saved in bf16 and reloaded in NF4, ``prepare_model_for_kbit_training``, the
method's adapter from the launcher's arguments (``open_instruct.methods.adapter_config``), steps on one fixed batch
(loss finite and falling), ``export_lora``, and the export loaded as a stock PEFT LoRA on a fresh 4-bit copy of
the base: its logits must match the method's. The ``gpu`` cases skip with the reason on a machine without CUDA or
bitsandbytes; the ``cpu`` cases run the same steps on an unquantized fp32 base, so the check itself stays tested.

    python -m pytest -m gpu tests/test_gpu_qlora.py      # on the GPU machine (bench/gpu_check.sh runs this)
"""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace

import peft
import pytest
import torch

from open_instruct.lowrank import export_lora
from open_instruct.methods import adapter_config

SETTINGS = {  # launcher arguments and learning rate per method
    "mos": (dict(r=8, valid_param_lora_r=4, valid_param_private_r=1, num_chunk_per_vec=4), 3e-3),
    "vera": (dict(r=64), 2e-2),
    "tied_lora": (dict(r=8), 3e-3),
    "prolora": (dict(r=8, valid_param_private_r=1, num_chunk_per_vec=4), 3e-3),
}
GPU = SimpleNamespace(hidden=512, layers=4, vocab=1024, steps=30, batch=4, seq=64, quantize=True, tol=5e-2)
CPU = SimpleNamespace(hidden=128, layers=3, vocab=256, steps=8, batch=2, seq=32, quantize=False, tol=1e-4)


def gpu_skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device (torch.cuda.is_available() is False)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "needs bitsandbytes (pip install -r requirements-gpu.txt)"
    return None


def save_base(path, size) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=size.hidden, intermediate_size=size.hidden * 5 // 2, num_hidden_layers=size.layers,
                      num_attention_heads=8, num_key_value_heads=4, vocab_size=size.vocab,
                      max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16 if size.quantize else torch.float32).save_pretrained(path)


def load_base(path, size):
    """The saved base, NF4 on the GPU (double quant, bf16 compute) or fp32 on the CPU, prepared for k-bit training
    either way (it upcasts norms/embeddings/head to fp32), so both models compared differ only in the adapter."""
    from transformers import AutoModelForCausalLM

    if size.quantize:
        from transformers import BitsAndBytesConfig

        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=qcfg, dtype=torch.bfloat16,
                                                     device_map={"": 0})
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def check_method(method: str, size, tmp_path) -> None:
    save_base(tmp_path / "base", size)
    settings, lr = SETTINGS[method]
    model = peft.get_peft_model(load_base(tmp_path / "base", size),
                                adapter_config(method, lora_dropout=0.0, seed=0, **settings))
    if size.quantize:
        wrapped = {type(m.get_base_layer()).__name__ for m in model.modules()
                   if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)}
        assert wrapped == {"Linear4bit"}, f"{method} wraps {wrapped}, expected only 4-bit layers"
    device = "cuda" if size.quantize else "cpu"
    ids = torch.randint(3, size.vocab, (size.batch, size.seq), generator=torch.Generator().manual_seed(0)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(size.steps):
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0] - 0.05, f"{method}: loss did not fall ({losses[0]:.4f} -> {losses[-1]:.4f})"
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids).logits.float()
    export_lora(model, tmp_path / "export")
    lora = peft.PeftModel.from_pretrained(load_base(tmp_path / "base", size), str(tmp_path / "export")).eval()
    with torch.no_grad():
        got = lora(input_ids=ids).logits.float()
    diff, tol = (got - ref).abs().max().item(), size.tol * max(ref.abs().max().item(), 1.0)
    assert diff <= tol, f"{method}: exported LoRA logits differ by {diff:.3e} > {tol:.1e}"


@pytest.mark.gpu
@pytest.mark.parametrize("method", list(SETTINGS))
def test_method_on_4bit_base_trains_and_exports_exactly(method, tmp_path):
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
    import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)

    check_method(method, GPU, tmp_path)


@pytest.mark.parametrize("method", list(SETTINGS))
def test_same_check_on_an_unquantized_cpu_base(method, tmp_path):
    check_method(method, CPU, tmp_path)
