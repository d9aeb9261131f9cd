"""One tokenizer policy for training and evaluation, and why the pad token it picks changes no number."""

import copy
import json

import peft
import pytest
import torch

from eval.utils import generate_completions, get_next_word_predictions
from eval.utils import load_tokenizer as load_eval_tokenizer
from open_instruct.data import encode_example
from open_instruct.data.collate import build_collator
from open_instruct.errors import UserError
from open_instruct.model_loading import load_tokenizer
from open_instruct.mos import MoSConfig
from open_instruct.tiny import build_tiny_model

PADS = ("<unk>", "</s>", "<pad>")
CHATS = [[{"role": "user", "content": "Say it."}, {"role": "assistant", "content": "The quick brown fox."}],
         [{"role": "user", "content": "Reverse the order of its words: a b c d e f"},
          {"role": "assistant", "content": "f e d c b a"}],
         [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, how are you today?"}]]
PROMPTS = ["Question: What is the capital of France?\nAnswer:", "Hi", "numbers 0 1 2 3 and symbols , . ;"]


def _without(tokenizer_dir, *names):
    """Drop ``names`` (e.g. pad_token) from the saved tokenizer's config."""
    path = tokenizer_dir / "tokenizer_config.json"
    config = json.loads(path.read_text())
    for name in names:
        config[name] = None
    path.write_text(json.dumps(config))
    return str(tokenizer_dir)


def test_training_and_evaluation_load_the_same_pad_token(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path)
    kept = load_tokenizer(str(tmp_path), padding_side="right")
    assert kept.pad_token == "<pad>" and kept.padding_side == "right"
    path = _without(tmp_path, "pad_token")
    train, evaluation = load_tokenizer(path, padding_side="right"), load_eval_tokenizer(path)
    assert train.pad_token == evaluation.pad_token == "<unk>"  # unk first: eos and pad stay distinct
    assert (train.padding_side, evaluation.padding_side) == ("right", "left")
    assert len(train) == len(tiny_tokenizer)  # no token added
    path = _without(tmp_path, "unk_token")
    assert load_tokenizer(path, padding_side="right").pad_token == load_eval_tokenizer(path).pad_token == "</s>"
    path = _without(tmp_path, "eos_token")
    with pytest.raises(UserError, match="no pad, unk or eos token"):
        load_eval_tokenizer(path)


def _with_pad(tokenizer, pad, side):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token, tokenizer.padding_side = pad, side
    return tokenizer


def test_pad_token_changes_no_training_loss_or_gradient(tiny_tokenizer):
    """Right padding, attention mask 0, labels -100 from the encoders: the pad id never reaches a number."""
    model = peft.get_peft_model(build_tiny_model("llama", tokenizer=tiny_tokenizer), MoSConfig(
        r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, init_weights=False, seed=0))
    features = [encode_example({"messages": chat}, tiny_tokenizer, 64) for chat in CHATS]
    results = []
    for pad in PADS:
        tokenizer = _with_pad(tiny_tokenizer, pad, "right")
        batch = build_collator(tokenizer, model)(copy.deepcopy(features))
        assert (batch["input_ids"] == tokenizer.pad_token_id).any() and (batch["attention_mask"] == 0).any()
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    for loss, grads in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert all(torch.equal(g, g0) for g, g0 in zip(grads, results[0][1]))


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_pad_token_changes_no_evaluation_output(tiny_tokenizer, shared_prefix):
    """Left padding, attention mask 0, positions over real tokens: the same probabilities and generations."""
    model = build_tiny_model("llama", tokenizer=tiny_tokenizer)
    prompts = PROMPTS + [PROMPTS[0] + " Paris.\n" + p for p in PROMPTS]  # a shared prefix for the cached path
    outputs = []
    for pad in PADS:
        tokenizer = _with_pad(tiny_tokenizer, pad, "left")
        scores = get_next_word_predictions(model, tokenizer, prompts, batch_size=3, disable_tqdm=True,
                                           shared_prefix=shared_prefix)
        texts = generate_completions(model, tokenizer, prompts, batch_size=3, max_new_tokens=8, disable_tqdm=True,
                                     shared_prefix=shared_prefix)
        outputs.append((scores, texts))
    assert all(out == outputs[0] for out in outputs[1:])
