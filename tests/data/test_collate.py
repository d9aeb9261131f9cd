"""Training batches: padding-free and supervised-only logits give the loss and gradients of the examples run one
by one, through the Trainer's own target counting and training step, with gradient accumulation.

The models run in float64; transformers' causal-LM loss computes the cross-entropy in float32 whatever the
model's dtype, so loss and gradients agree to float32 precision (1e-6 relative), while a token attending across
an example boundary, or a target counted twice, moves them by orders of magnitude more."""

import peft
import pytest
import torch
from mos_helpers import ALL_PROJ, mos_model
from transformers import Trainer, TrainingArguments

from open_instruct.data.collate import SupervisedLogits, build_collator
from open_instruct.data.encoding import encode_example
from open_instruct.tiny import build_tiny_model

EXAMPLES = [
    {"messages": [{"role": "user", "content": "Translate to French: hello"}, {"role": "assistant", "content": "bonjour"}]},
    {"messages": [{"role": "user", "content": "What is the capital of Finland? Answer briefly, please."},
                  {"role": "assistant", "content": "Helsinki is the capital of Finland."}]},
    {"prompt": "Reverse the words: a b c", "completion": "c b a"},
    {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2 + 2 ="},
                  {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3 + 3?"},
                  {"role": "assistant", "content": "6, which is twice three."}]},
    {"prompt": "The quick brown fox", "completion": "jumps over the lazy dog."},
    {"prompt": "numbers 0 1 2", "completion": "3 4 5 6 7 8 9 10 11 12"},
]


def adapted(arch, method, tokenizer):
    base = build_tiny_model(arch, tokenizer=tokenizer, seed=1)
    if method == "mos":
        model = mos_model(base, lora_dropout=0.0)
    else:
        model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=16, target_modules=ALL_PROJ,
                                                          lora_dropout=0.0, init_lora_weights=False))
    model = model.double()
    with torch.no_grad():  # B starts at zero: move it so that every adapter parameter has a gradient
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return model.train()


def features(tokenizer):
    return [encode_example(e, tokenizer, 64, "tokenizer") for e in EXAMPLES]


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def one_by_one(model, feats):
    """Reference: each example alone, no padding, full logits; token-weighted mean over all targets."""
    n = sum(sum(x != -100 for x in f["labels"][1:]) for f in feats)
    model.zero_grad()
    total = 0.0
    for f in feats:
        ids, labels = torch.tensor([f["input_ids"]]), torch.tensor([f["labels"]])
        logits = model(input_ids=ids).logits[0, :-1]
        loss = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum") / n
        loss.backward()
        total += loss.item()
    return total, grads(model)


def through_trainer(model, tokenizer, feats, tmp_path, padding_free, supervised, accumulation):
    collator = build_collator(tokenizer, model, padding_free=padding_free, supervised_logits=supervised)
    assert isinstance(collator, SupervisedLogits) == supervised
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=2,
                             gradient_accumulation_steps=accumulation)
    trainer = Trainer(model=model, args=args, data_collator=collator)
    size = len(feats) // accumulation
    batches = [collator(feats[i:i + size]) for i in range(0, len(feats), size)]
    if supervised:  # the vocabulary projection runs at fewer positions than the batch holds
        assert all(b["logits_to_keep"].numel() < b["input_ids"].shape[-1] for b in batches)
    if padding_free:
        assert all(b["input_ids"].shape[0] == 1 and "attention_mask" not in b for b in batches)
    n_items = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
    model.zero_grad()
    total = sum(trainer.training_step(model, b, n_items).item() for b in batches)
    return total, grads(model)


CASES = [  # (arch, method, padding_free, supervised_logits, gradient accumulation steps)
    ("llama", "mos", False, False, 1),  # today's path: the reference itself is right
    *[("llama", m, *c) for m in ("mos", "lora") for c in [(False, True, 1), (True, False, 1), (True, True, 1),
                                                           (True, True, 3), (False, True, 2)]],
    ("qwen2", "mos", True, True, 1), ("mistral", "mos", True, True, 1), ("qwen2", "lora", True, False, 2),
]


@pytest.mark.parametrize("arch, method, padding_free, supervised, accumulation", CASES)
def test_batches_equal_examples_one_by_one(arch, method, padding_free, supervised, accumulation, tiny_tokenizer,
                                           tmp_path):
    model = adapted(arch, method, tiny_tokenizer)
    feats = features(tiny_tokenizer)
    ref_loss, ref = one_by_one(model, feats)
    loss, got = through_trainer(model, tiny_tokenizer, feats, tmp_path, padding_free, supervised, accumulation)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert set(got) == set(ref) and len(ref) > 0
    for name in ref:
        assert ref[name].abs().max() > 0, name  # every adapter parameter is exercised
        assert (got[name] - ref[name]).norm() <= 1e-5 * ref[name].norm(), name


def test_padding_free_attention_would_leak_without_position_restarts(tiny_tokenizer):
    """The check can fail: the same row with positions that do not restart lets the examples attend to each
    other, and the loss moves."""
    model = adapted("llama", "lora", tiny_tokenizer)
    feats = features(tiny_tokenizer)[:3]
    batch = build_collator(tiny_tokenizer, model, padding_free=True, supervised_logits=False)(feats)
    apart = model(**batch).loss
    leaky = {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1])[None]}
    assert abs(model(**leaky).loss.item() - apart.item()) > 1e-6


def test_supervised_logits_keep_only_target_positions(tiny_tokenizer):
    model = adapted("llama", "mos", tiny_tokenizer)
    feats = features(tiny_tokenizer)
    batch = build_collator(tiny_tokenizer, model, supervised_logits=True)(feats)
    labels = batch["labels"]
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    expected = (shifted != -100).any(0).nonzero().squeeze(-1)
    assert torch.equal(batch["logits_to_keep"], expected)
    assert int((batch["shift_labels"] != -100).sum()) == int((labels[:, 1:] != -100).sum())
    out = model(**batch)
    assert out.logits.shape[1] == expected.numel() < labels.shape[1]
