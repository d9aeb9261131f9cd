"""Batched log-likelihood scoring against an unbatched float64 computation and HF's own loss."""

import pytest
import torch

from eval.loglik import continuation_logprobs, example_losses, mean_loss


@pytest.fixture
def model_and_tok(tiny_llama, tiny_tokenizer):
    tiny_llama.eval()
    tiny_tokenizer.padding_side = "right"
    return tiny_llama, tiny_tokenizer


def _reference(model, tok, context, continuation):
    ctx = tok(context).input_ids
    full = tok(context + continuation).input_ids
    n = len(ctx)
    while full[:n] != ctx[:n]:
        n -= 1
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return sum(logp[i - 1, full[i]].item() for i in range(n, len(full))), len(full) - n


def test_continuation_logprobs_match_unbatched_float64(model_and_tok):
    model, tok = model_and_tok
    pairs = [("The capital of France is", " Paris"), ("Q: 2+2?\nA:", " 4"), ("a", " much longer continuation here"),
             ("Question: why?\nAnswer:", " because")]
    got = continuation_logprobs(model, tok, pairs, batch_size=3, disable_tqdm=True)
    for (ctx, cont), (total, count) in zip(pairs, got):
        ref_total, ref_count = _reference(model, tok, ctx, cont)
        assert count == ref_count and total == pytest.approx(ref_total, abs=1e-4)


def test_example_losses_match_hf_loss(model_and_tok):
    model, tok = model_and_tok
    examples = [{"messages": [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": f"{w} {w}!"}]}
                for w in ("hello", "a much longer reply than the others", "ok")]
    from open_instruct.data.encoding import encode_example

    got = example_losses(model, tok, examples, 64, "tokenizer", batch_size=2, disable_tqdm=True)
    for ex, (total, count) in zip(examples, got):
        enc = encode_example(ex, tok, 64, "tokenizer")
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([enc["input_ids"]]), labels=torch.tensor([enc["labels"]])).loss
        assert count == sum(x != -100 for x in enc["labels"][1:])
        assert total / count == pytest.approx(ref.item(), abs=1e-5)
    assert mean_loss(got) == pytest.approx(sum(t for t, _ in got) / sum(c for _, c in got))
    with pytest.raises(ValueError, match="no label tokens"):
        mean_loss([(0.0, 0)])


def test_only_the_scored_positions_are_projected_and_the_numbers_do_not_change(model_and_tok, monkeypatch):
    """The vocabulary projection is asked for the scored positions only (``logits_to_keep``); a model without that
    argument gets the full logits, with the same numbers."""
    import functools

    import eval.loglik

    model, tok = model_and_tok
    pairs = [("A long context " * 6, " yes"), ("short", " no"), ("mid length context", " maybe so")]
    seen = []
    forward = model.forward

    @functools.wraps(forward)  # keeps forward's signature, which the scorer inspects
    def spy(*args, **kwargs):
        seen.append(kwargs.get("logits_to_keep"))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    kept = continuation_logprobs(model, tok, pairs, batch_size=3, disable_tqdm=True)
    width = max(len(tok(c + x).input_ids) for c, x in pairs)
    assert len(seen) == 1 and seen[0] is not None and 0 < len(seen[0]) < width - 1
    monkeypatch.setattr(eval.loglik, "accepts_argument", lambda m, name: False)
    seen.clear()
    full = continuation_logprobs(model, tok, pairs, batch_size=3, disable_tqdm=True)
    assert seen == [None]
    for (a, n), (b, m) in zip(kept, full):
        assert n == m and a == pytest.approx(b, abs=1e-5)
    for (ctx, cont), (total, count) in zip(pairs, kept):
        ref_total, ref_count = _reference(model, tok, ctx, cont)
        assert count == ref_count and total == pytest.approx(ref_total, abs=1e-4)
