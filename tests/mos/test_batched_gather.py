"""Training gathers each module type's factors once for all its layers; same losses and gradients as per layer."""

import copy

import peft
import pytest
import torch
from baselines_helpers import method_config
from torch.profiler import profile

from open_instruct.mos import MoSPool
from open_instruct.tiny import build_tiny_model

NUM_LAYERS, NUM_TYPES = 4, 7


def model_pair():
    """Two identical MoS models (non-zero ΔW); the second gathers per layer (MoSPool.batched_gather off)."""
    model = peft.get_peft_model(build_tiny_model("llama", num_hidden_layers=NUM_LAYERS), method_config("mos"))
    model.train()
    per_layer = copy.deepcopy(model)
    for pool in per_layer.base_model.shared_pools.values():
        pool.batched_gather = False
    return model, per_layer


def pool_params(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def batches(n):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 300, (2, 9), generator=g) for _ in range(n)]


def test_training_matches_the_per_layer_gather():
    """Two optimizer steps of two accumulated micro-batches each (forward, backward, forward, backward: the
    second forward must gather again); losses, gradients and pools agree with the per-layer gather."""
    model, per_layer = model_pair()
    opts = [torch.optim.AdamW(pool_params(m).values(), lr=1e-2) for m in (model, per_layer)]
    for step_batches in (batches(2), batches(2)[::-1]):
        losses = [[], []]
        for k, m in enumerate((model, per_layer)):
            for ids in step_batches:
                loss = m(ids, labels=ids).loss
                loss.backward()
                losses[k].append(loss.item())
        assert losses[0] == pytest.approx(losses[1], abs=1e-6)
        grads = [{n: p.grad.clone() for n, p in pool_params(m).items()} for m in (model, per_layer)]
        assert grads[0].keys() == grads[1].keys() and grads[0]
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)
        for opt in opts:
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(pool_params(model).items(), pool_params(per_layer).values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_gradient_checkpointing_gives_the_same_gradients():
    model, reference = model_pair()
    for pool in reference.base_model.shared_pools.values():
        pool.batched_gather = True
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    ids = batches(1)[0]
    for m in (model, reference):
        m(ids, labels=ids).loss.backward()
    for (name, a), b in zip(pool_params(model).items(), pool_params(reference).values()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def count_index_selects(model, backward: bool = True) -> int:
    ids = batches(1)[0]
    with profile() as prof:
        loss = model(ids, labels=ids).loss
        if backward:
            loss.backward()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::index_select")


def test_one_gather_per_module_type_and_pool():
    model, per_layer = model_pair()
    assert all(isinstance(p, MoSPool) for p in model.base_model.shared_pools.values())
    with model.disable_adapter():
        base = count_index_selects(model, backward=False)  # the embedding lookup (index_add in backward)
    assert count_index_selects(per_layer) == base + 2 * NUM_TYPES * NUM_LAYERS  # A and B of every layer
    assert count_index_selects(model) == base + 2 * NUM_TYPES  # A and B of every module type


@pytest.mark.parametrize("grad", [True, False])
def test_changed_index_lists_are_gathered_again(grad):
    """assign_routing (a new routing for an adapter) must not reuse factors gathered with the old index lists."""
    model, _ = model_pair()
    ids = batches(1)[0]
    with torch.set_grad_enabled(grad):
        model(ids)
    layers = [m for m in model.modules() if hasattr(m, "mos_index_A")]
    for layer in layers:  # reverse every layer's index list, as a new routing would
        index_a, index_b = layer.mos_index_A["default"], layer.mos_index_B["default"]
        layer.assign_routing("default", layer.mos_type_key["default"], index_a.flip(0), index_b.flip(0),
                             layer.mos_vec["default"])
    with torch.set_grad_enabled(grad):
        out = model(ids).logits.detach()
    fresh = copy.deepcopy(model)
    for pool in fresh.base_model.shared_pools.values():
        pool.batched_gather = False
    for layer in fresh.modules():
        if hasattr(layer, "factor_cache_size"):
            layer.factor_cache_size = 0
    torch.testing.assert_close(out, fresh(ids).logits.detach(), atol=1e-5, rtol=0)
