import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from open_instruct.tiny import TINY_ARCHS, build_tiny_model, build_tiny_tokenizer


def test_tokenizer_roundtrip_through_autotokenizer(tmp_path, tiny_tokenizer):
    text = "Passage: Helsinki is in Suomi — ääkköset, русский, 한국어.\nAnswer: B"
    tiny_tokenizer.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    ids = tiny_tokenizer(text)["input_ids"]
    assert tok2(text)["input_ids"] == ids
    assert tok2.decode(ids) == text  # byte-level: any text survives
    assert tok2.eos_token == "</s>" and tok2.pad_token == "<pad>"
    chat = tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_tiny_model_save_reload_same_logits(tmp_path, arch):
    tok = build_tiny_tokenizer()
    model = build_tiny_model(arch, tokenizer=tok)
    assert model.config.model_type == arch
    ids = tok(["The quick brown fox", "Answer: B"], return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = model(**ids).logits
    assert ref.shape[-1] == len(tok)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        out = reloaded(**ids).logits
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_tiny_archs_differ_in_shape():
    tok = build_tiny_tokenizer()
    shapes = set()
    for arch in TINY_ARCHS:
        m = build_tiny_model(arch, tokenizer=tok)
        layer = m.model.layers[0]
        shapes.add((arch, layer.self_attn.q_proj.in_features, layer.self_attn.k_proj.out_features))
    assert len({s[1:] for s in shapes}) == len(TINY_ARCHS)
    llama = build_tiny_model("llama", tokenizer=tok)
    assert llama.config.num_key_value_heads < llama.config.num_attention_heads  # grouped-query attention
