"""Shared-prefix evaluation equals the uncached path: next-token probabilities (MMLU), greedy generations (BBH,
GSM8K, TyDiQA) and continuation log-likelihoods (cloze), through a MoS and a LoRA adapter, in float32."""

import numpy as np
import pandas as pd
import peft
import pytest
import torch
from mos_helpers import ALL_PROJ, mos_model

from eval.loglik import continuation_logprobs
from eval.mmlu import run_eval as mmlu
from eval.prefix_cache import shared_prefix_length
from eval.utils import generate_completions, get_next_word_predictions, prefix_plan
from open_instruct.tiny import build_tiny_model

HEADER = ("The following are multiple choice questions (with answers) about physics.\n\n"
          "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\nColour of the sky?\nA. red\nB. blue\nC. green\n"
          "D. black\nAnswer: B\n\n")
TASK_B = "Question: reverse the words. Example: a b c -> c b a. Example: x y -> y x.\nNow: "
PROMPTS = ([HEADER + f"Which number is {'very ' * i}big: {i}?\nA. {i}\nB. {i + 1}\nC. 0\nD. 1\nAnswer:"
            for i in range(7)] + [TASK_B + " ".join("pqrs"[: 1 + i % 4]) for i in range(5)]
           + ["A lone prompt", "Another lone one, longer than the first"])


def adapted(method, arch, tokenizer):
    base = build_tiny_model(arch, tokenizer=tokenizer, seed=5)
    if method == "mos":
        model = mos_model(base)
    else:
        model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=16, target_modules=ALL_PROJ))
    with torch.no_grad():  # a trained-looking adapter: B away from zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=[("mos", "llama"), ("lora", "qwen2")], ids=lambda x: "-".join(x))
def model(request, tiny_tokenizer):
    return adapted(*request.param, tiny_tokenizer)


def test_prompts_are_grouped_by_their_shared_prefix(model, tiny_tokenizer):
    tiny_tokenizer.padding_side = "left"
    plan = prefix_plan(model, tiny_tokenizer, PROMPTS)
    assert [(cache is not None, indices) for cache, indices, _ in plan] == [
        (True, list(range(7))), (True, list(range(7, 12))), (False, [12, 13])]
    ids = tiny_tokenizer(PROMPTS[:7]).input_ids
    assert plan[0][0].mask.shape[1] == shared_prefix_length(ids) > len(tiny_tokenizer(HEADER).input_ids) - 2


def test_next_token_probabilities_equal_the_uncached_path(model, tiny_tokenizer):
    tiny_tokenizer.padding_side = "left"
    kw = dict(candidate_token_ids=None, batch_size=3, disable_tqdm=True)
    ref_pred, ref = get_next_word_predictions(model, tiny_tokenizer, PROMPTS, shared_prefix=False, **kw)
    pred, got = get_next_word_predictions(model, tiny_tokenizer, PROMPTS, shared_prefix=True, **kw)
    assert pred == ref_pred
    assert np.abs(np.log(np.array(got)) - np.log(np.array(ref))).max() <= 1e-4


def test_greedy_generations_equal_the_uncached_path(model, tiny_tokenizer):
    tiny_tokenizer.padding_side = "left"
    kw = dict(batch_size=4, max_new_tokens=10, stop_sequences=["\n\n"], disable_tqdm=True)
    assert generate_completions(model, tiny_tokenizer, PROMPTS, shared_prefix=True, **kw) == \
        generate_completions(model, tiny_tokenizer, PROMPTS, shared_prefix=False, **kw)


def test_cloze_log_likelihoods_equal_the_uncached_path(model, tiny_tokenizer):
    tiny_tokenizer.padding_side = "right"
    pairs = [(f"Question: which animal is {'quite ' * i}quick?\nAnswer:", " " + c)
             for i in range(5) for c in ("the fox", "a dog", "none of them at all", "x")] + [("Alone:", " yes")]
    ref = continuation_logprobs(model, tiny_tokenizer, pairs, batch_size=6, shared_prefix=False, disable_tqdm=True)
    got = continuation_logprobs(model, tiny_tokenizer, pairs, batch_size=6, shared_prefix=True, disable_tqdm=True)
    assert [n for _, n in got] == [n for _, n in ref]
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, ref)) <= 1e-4


def test_mmlu_few_shot_command_with_a_mos_adapter(tmp_path, tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "mos_adapter"
    mos_model(AutoModelForCausalLM.from_pretrained(tiny_checkpoint)).save_pretrained(adapter)
    data = tmp_path / "mmlu"
    for split, n in (("dev", 3), ("test", 6)):
        (data / split).mkdir(parents=True)
        rows = [[f"Question {i} about {'waves ' * i}?", "one", "two", "three", "four", "ABCD"[i % 4]] for i in range(n)]
        pd.DataFrame(rows).to_csv(data / split / f"physics_{split}.csv", header=False, index=False)
    common = ["--ntrain", "3", "--data_dir", str(data), "--model_name_or_path", str(tiny_checkpoint),
              "--adapter_path", str(adapter), "--eval_batch_size", "4"]
    mmlu.main([*common, "--save_dir", str(tmp_path / "cached")])
    mmlu.main([*common, "--save_dir", str(tmp_path / "plain"), "--no_shared_prefix"])
    cols = [f"choice{c}_probs" for c in "ABCD"]
    got, ref = (pd.read_csv(tmp_path / d / "physics.csv") for d in ("cached", "plain"))
    assert np.abs(np.log(got[cols].to_numpy()) - np.log(ref[cols].to_numpy())).max() <= 1e-4
    assert got["correct"].tolist() == ref["correct"].tolist()
