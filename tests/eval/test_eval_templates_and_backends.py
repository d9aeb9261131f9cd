"""Chat formats, --chat_formatting_function resolution, tokenizer loading and the optional backends."""

import pytest
import torch

from eval import templates
from eval.utils import generate_completions, load_hf_lm_and_tokenizer, load_tokenizer, load_vllm_model


def test_tulu_format_character_for_character():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": " Hello! "}, {"role": "user", "content": "Bye"}]
    assert templates.create_prompt_with_tulu_chat_format(messages) == (
        "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!</s>\n<|user|>\nBye\n<|assistant|>\n")
    assert templates.create_prompt_with_tulu_chat_format(messages[1:2], add_bos=True) == "<s><|user|>\nHi\n<|assistant|>\n"
    with pytest.raises(ValueError, match="'tool'"):
        templates.create_prompt_with_tulu_chat_format([{"role": "tool", "content": "x"}])


def test_tokenizer_chat_template(tiny_tokenizer):
    got = templates.create_prompt_with_tokenizer_chat_template([{"role": "user", "content": "Hi"}], tiny_tokenizer)
    assert got == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_formatting_function_names():
    tulu = templates.create_prompt_with_tulu_chat_format
    assert templates.get_chat_formatting_function("tulu") is tulu
    assert templates.get_chat_formatting_function("eval.templates.create_prompt_with_tulu_chat_format") is tulu
    assert templates.get_chat_formatting_function("tokenizer") is templates.create_prompt_with_tokenizer_chat_template
    for bad in ("nonsense", "eval.templates.nope", "no_such_module.fn"):
        with pytest.raises(ValueError, match="chat"):
            templates.get_chat_formatting_function(bad)
    # a function without tokenizer/add_bos parameters is called with the messages only
    assert templates.format_chat_prompt(lambda messages: messages[0]["content"], [{"content": "x"}]) == "x"


def test_tokenizer_loading_slow_notice_and_pad_fallback(tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path), use_fast=False)
    assert "no slow tokenizer" in capsys.readouterr().out
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"
    (tmp_path / "tokenizer_config.json").write_text((tmp_path / "tokenizer_config.json").read_text()
                                                    .replace('"pad_token": "<pad>"', '"pad_token": null'))
    tok = load_tokenizer(str(tmp_path))
    assert tok.pad_token == tok.unk_token == "<unk>"  # the training's policy: unk, else eos


def test_generation_returns_only_new_text_cut_at_stop(tiny_checkpoint):
    model, tok = load_hf_lm_and_tokenizer(str(tiny_checkpoint))
    prompts = ["Question: What is the capital of France?\nAnswer:", "Hi"]
    plain = generate_completions(model, tok, prompts, batch_size=2, max_new_tokens=20, disable_tqdm=True)
    for prompt, out in zip(prompts, plain):
        ids = tok(prompt, return_tensors="pt").input_ids
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        assert out == tok.decode(ref[0, ids.shape[1]:], skip_special_tokens=True).strip()
    stopped = generate_completions(model, tok, prompts, batch_size=2, max_new_tokens=20, disable_tqdm=True,
                                   stop_sequences=["e"])
    assert any("e" in full for full in plain), plain
    for full, cut in zip(plain, stopped):
        assert cut == full.split("e")[0].strip()


def test_vllm_missing_falls_back_with_a_warning(tiny_checkpoint):
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed")
    except ImportError:
        pass
    with pytest.warns(UserWarning, match="vLLM is not installed"):
        assert load_vllm_model(str(tiny_checkpoint)) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="8-bit loading is real on a GPU")
def test_load_in_8bit_on_cpu_warns_and_loads(tiny_checkpoint):
    with pytest.warns(UserWarning, match="load_in_8bit"):
        model, _ = load_hf_lm_and_tokenizer(str(tiny_checkpoint), load_in_8bit=True)
    assert next(model.parameters()).dtype == torch.float32
