"""Each method's materialised ΔW against an independent float64 computation from the method's formula.

The reference is computed from the raw trainable (and frozen) tensors with the formulas written out here, not with
the project's assembly code: loops and ``torch.roll`` for PRoLoRA, explicit shard concatenation for MoS.
"""

import pytest
import torch
from baselines_helpers import METHODS, adapted, tuner_layers
from peft.tuners.vera import VeraLayer

from open_instruct.baselines import ProLoRALinear, TiedLoRALinear
from open_instruct.lowrank.export import layer_factors
from open_instruct.mos import MoSLayer

D = torch.float64


def reference_delta(layer, method: str) -> torch.Tensor:
    """ΔW (out, in) in float64 from the method's formula."""
    a = "default"
    if method == "lora":
        A, B = layer.lora_A[a].weight.to(D), layer.lora_B[a].weight.to(D)
        return layer.scaling[a] * B @ A
    if method == "vera":  # ΔW = Λb · B · Λd · A (frozen A, B sliced to the layer's size, no scaling)
        A = layer.vera_A[a][:, : layer.in_features].to(D)
        B = layer.vera_B[a][: layer.out_features, :].to(D)
        return torch.diag(layer.vera_lambda_b[a].to(D)) @ B @ torch.diag(layer.vera_lambda_d[a].to(D)) @ A
    if method == "tied_lora":  # ΔW = (α/r) · Λv · B_t · Λu · A_t
        pool = layer.pool(a)
        A, B = pool.A[a].to(D), pool.B[a].to(D).t()
        u, v = layer.tied_lora_u[a].to(D), layer.tied_lora_v[a].to(D)
        return layer.scaling[a] * torch.diag(v) @ B @ torch.diag(u) @ A
    if method == "prolora":
        return layer.scaling[a] * prolora_b(layer) @ prolora_a(layer)
    if method == "mos":  # rank vector j = concatenation of shards idx[j·c:(j+1)·c]; vec folded into A
        pool = layer.pool(a)
        r, c = layer.r[a], layer.in_features // pool.A[a].shape[1]  # shards of length in/c
        ia, ib = layer.mos_index_A[a].tolist(), layer.mos_index_B[a].tolist()
        A = torch.stack([torch.cat([pool.A[a][ia[j * c + t]].to(D) for t in range(c)]) for j in range(r)])
        Bt = torch.stack([torch.cat([pool.B[a][ib[j * c + t]].to(D) for t in range(c)]) for j in range(r)])
        A = A * layer.mos_vec[a].to(D)[:, None]
        return layer.scaling[a] * Bt.t() @ A
    raise ValueError(method)


def prolora_a(layer) -> torch.Tensor:
    """A = [A_s ; A_u]: column block i of A_s is the chunk rolled by i·shift_A along the rank axis (copy i)."""
    m, _, shift_a, _ = layer.prolora_layout["default"]
    chunk = layer.prolora_A_chunk["default"].to(D)
    blocks = [torch.roll(chunk, shifts=-i * shift_a, dims=0) for i in range(m)]  # row t <- row (t + i·shift) mod s
    a_s = torch.cat(blocks, dim=1) if chunk.shape[0] else chunk.new_zeros(0, layer.in_features)
    return torch.cat([a_s, layer.prolora_A_unshared["default"].to(D)], dim=0)


def prolora_b(layer) -> torch.Tensor:
    """B = [B_s , B_u]: row block i of B_s is the chunk rolled by i·shift_B along the rank axis (copy i)."""
    _, n, _, shift_b = layer.prolora_layout["default"]
    chunk = layer.prolora_B_chunk["default"].to(D)
    b_s = torch.empty(layer.out_features, chunk.shape[1], dtype=D)
    rows = chunk.shape[0]
    for i in range(n):
        for p in range(rows):
            for t in range(chunk.shape[1]):
                b_s[i * rows + p, t] = chunk[p, (t + i * shift_b) % chunk.shape[1]]
    return torch.cat([b_s, layer.prolora_B_unshared["default"].to(D)], dim=1)


LAYER_TYPES = {"vera": VeraLayer, "tied_lora": TiedLoRALinear, "prolora": ProLoRALinear, "mos": MoSLayer}


@pytest.mark.parametrize("method", METHODS)
def test_delta_weight_matches_formula(tiny_model, method):
    model = adapted(tiny_model, method)
    layers = tuner_layers(model)
    assert len(layers) == 7 * tiny_model.config.num_hidden_layers
    for path, layer in layers.items():
        if method in LAYER_TYPES:
            assert isinstance(layer, LAYER_TYPES[method]), path
        ref = reference_delta(layer, method)
        assert ref.shape == (layer.out_features, layer.in_features) and ref.abs().max() > 0, path
        with torch.no_grad():
            torch.testing.assert_close(layer.get_delta_weight("default").to(D), ref, rtol=1e-5, atol=1e-6)
            a, b, scaling = layer_factors(layer, "default")  # what export_lora writes
            assert a.shape == (layer.r["default"], layer.in_features) and b.shape == (layer.out_features, a.shape[0])
            torch.testing.assert_close(scaling * b.to(D) @ a.to(D), ref, rtol=1e-5, atol=1e-6)
            if "mlp.down_proj" in path or "self_attn.k_proj" in path:  # the forward uses the same ΔW
                base = layer.get_base_layer()
                x = torch.randn(2, 3, layer.in_features)
                out = layer(x).to(D) - base(x).to(D)
                torch.testing.assert_close(out, x.to(D) @ ref.t(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(enable_lora_rotation=False), dict(unshared_r=0), dict(unshared_r=5),
                                dict(lora_A_shift_size=3, lora_B_shift_size=0, reduce_lora_B_x=4)])
def test_prolora_variants_match_formula(tiny_llama, kw):
    model = adapted(tiny_llama, "prolora", **kw)
    for layer in tuner_layers(model).values():
        with torch.no_grad():
            torch.testing.assert_close(layer.get_delta_weight("default").to(D), reference_delta(layer, "prolora"),
                                       rtol=1e-5, atol=1e-6)


def test_prolora_rotation_layout(tiny_llama):
    """The shared ranks of A repeat the chunk m times, copy i rolled by i·shift; without rotation, plain copies."""
    model = adapted(tiny_llama, "prolora", r=4, unshared_r=0, reduce_lora_A_x=2, reduce_lora_B_x=2)
    layer = tuner_layers(model)["model.layers.0.self_attn.q_proj"]
    a, b = layer.lora_factors("default")
    chunk_a, chunk_b = layer.prolora_A_chunk["default"], layer.prolora_B_chunk["default"]
    assert layer.prolora_layout["default"] == (2, 2, 2, 2)  # shift = max(⌊(r−u)/m⌋, 1) = 2
    torch.testing.assert_close(a[:, :32], chunk_a, rtol=0, atol=0)
    torch.testing.assert_close(a[:, 32:], chunk_a[[2, 3, 0, 1]], rtol=0, atol=0)
    torch.testing.assert_close(b[32:], chunk_b[:, [2, 3, 0, 1]], rtol=0, atol=0)


def test_tied_lora_ties_across_layers_and_zero_init(tiny_llama):
    import copy

    import peft

    from open_instruct.baselines import TiedLoRAConfig

    model = adapted(copy.deepcopy(tiny_llama), "tied_lora")
    layers = tuner_layers(model)
    q0, q1 = layers["model.layers.0.self_attn.q_proj"], layers["model.layers.1.self_attn.q_proj"]
    assert q0.pool("default") is q1.pool("default") and q0.pool("default") is not layers[
        "model.layers.0.self_attn.k_proj"].pool("default")
    assert q0.tied_lora_u["default"] is not q1.tied_lora_u["default"]
    for zero_init in ("B", "v"):
        fresh = peft.get_peft_model(copy.deepcopy(tiny_llama), TiedLoRAConfig(r=4, zero_init=zero_init, seed=1))
        deltas = [m.get_delta_weight("default") for m in tuner_layers(fresh).values()]
        assert all(torch.count_nonzero(d) == 0 for d in deltas), zero_init
        q = tuner_layers(fresh)["model.layers.0.self_attn.q_proj"]
        assert torch.all(q.tied_lora_u["default"] == 1)
        assert bool(torch.all(q.pool("default").B["default"] == 0)) == (zero_init == "B")
        assert bool(torch.all(q.tied_lora_v["default"] == 0)) == (zero_init == "v")
