"""Many adapters on one base: mixed-adapter batches, load/set/delete, and the inference factor cache.

References are independent of the code under test: each row of a mixed batch is run alone with its adapter
set (or with adapters disabled for "__base__"), and the cached inference path is compared with the gather
that runs whenever gradients are enabled (no cache).
"""

import peft
import pytest
import torch
from baselines_helpers import method_config

from open_instruct.tiny import build_tiny_model

TUNERS = ("mos", "tied_lora", "prolora")
ATOL = 1e-5


def seeded_config(method: str, seed: int):
    torch.manual_seed(seed)  # PRoLoRA draws its init from the global RNG
    return method_config(method, **({"seed": seed} if method != "prolora" else {}))


def three_adapters(method: str, base=None):
    """``base`` (a tiny Llama by default) with adapters default, b, c of different seeds; ``default`` active."""
    base = base if base is not None else build_tiny_model("llama", num_hidden_layers=3)
    model = peft.get_peft_model(base, seeded_config(method, 0))
    for seed, name in ((1, "b"), (2, "c")):
        model.add_adapter(name, seeded_config(method, seed))
    model.eval()
    return model


def logits_alone(model, ids, name):
    if name == "__base__":
        with model.disable_adapter():
            return model(ids).logits
    model.set_adapter(name)
    return model(ids).logits


@pytest.mark.parametrize("method", TUNERS)
@torch.no_grad()
def test_mixed_batch_equals_each_row_alone(method):
    model = three_adapters(method)
    names = ["b", "__base__", "default", "c", "b"]
    ids = torch.randint(0, 300, (len(names), 7), generator=torch.Generator().manual_seed(0))
    mixed = model(ids, adapter_names=names).logits
    for i, name in enumerate(names):
        torch.testing.assert_close(mixed[i], logits_alone(model, ids[i:i + 1], name)[0], atol=ATOL, rtol=0)
    # every row really differs from the others' adapters (a forward that ignored adapter_names would fail)
    assert (mixed[0] - mixed[1]).abs().max() > 1e-3 and (mixed[0] - mixed[2]).abs().max() > 1e-3
    assert (mixed[3] - mixed[2]).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["mos", "prolora"])
def test_mixed_batch_generate_equals_each_row_alone(method):
    model = three_adapters(method)
    names = ["c", "__base__", "default"]
    ids = torch.randint(0, 300, (3, 5), generator=torch.Generator().manual_seed(1))
    kw = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    mixed = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_names=names, **kw)
    for i, name in enumerate(names):
        row = ids[i:i + 1]
        if name == "__base__":
            with model.disable_adapter():
                alone = model.generate(input_ids=row, attention_mask=torch.ones_like(row), **kw)
        else:
            model.set_adapter(name)
            alone = model.generate(input_ids=row, attention_mask=torch.ones_like(row), **kw)
        assert torch.equal(mixed[i], alone[0]), (i, name)


def test_adapter_names_are_checked():
    model = three_adapters("mos")
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="non-existing adapter.*typo"):
        model(ids, adapter_names=["default", "typo"])
    with pytest.raises(ValueError, match="Length of `adapter_names`"):
        model(ids, adapter_names=["default"])
    model.train()
    with pytest.raises(ValueError, match="training mode"):
        model(ids, adapter_names=["default", "b"])


@pytest.mark.parametrize("method", ["mos", "tied_lora"])
@torch.no_grad()
def test_load_and_delete_keep_the_other_adapters(tmp_path, method):
    model = three_adapters(method)
    ids = torch.randint(0, 300, (2, 6), generator=torch.Generator().manual_seed(2))
    expected = {name: logits_alone(model, ids, name) for name in ("default", "b", "c")}
    model.save_pretrained(tmp_path)  # default in tmp_path, b and c in tmp_path/b, tmp_path/c

    loaded = peft.PeftModel.from_pretrained(build_tiny_model("llama", num_hidden_layers=3), tmp_path)
    for name in ("b", "c"):
        loaded.load_adapter(tmp_path / name, adapter_name=name)
    loaded.eval()
    for name, logits in expected.items():
        torch.testing.assert_close(logits_alone(loaded, ids, name), logits, atol=ATOL, rtol=0)

    before = {id(t) for t in loaded.parameters()}
    loaded.delete_adapter("b")
    assert "b" not in loaded.peft_config
    assert not any("b" in pool.A or "b" in pool.B for pool in loaded.base_model.shared_pools.values())
    assert {id(t) for t in loaded.parameters()} < before  # b's tensors are gone, nothing new appeared
    for name in ("default", "c"):
        torch.testing.assert_close(logits_alone(loaded, ids, name), expected[name], atol=ATOL, rtol=0)
    loaded.save_pretrained(tmp_path / "after_delete", selected_adapters=["c"])
    again = peft.PeftModel.from_pretrained(build_tiny_model("llama", num_hidden_layers=3), tmp_path / "after_delete" / "c")
    torch.testing.assert_close(again.eval()(ids).logits, expected["c"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("method", TUNERS)
def test_a_second_adapter_can_target_all_linear(method):
    """PEFT resolves "all-linear" on an adapted model through the layer class name (it must contain "Linear")."""
    model = three_adapters(method)
    model.add_adapter("d", method_config(method, target_modules="all-linear"))
    layers = [m for m in model.modules() if hasattr(m, "has_adapter") and m.has_adapter("d")]
    assert len(layers) == 7 * 3  # q, k, v, o, gate, up, down in each of the 3 layers; not lm_head


def adapter_tensor_bytes(model, base_ids):
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
               if id(t) not in base_ids)


def test_an_extra_mos_adapter_costs_its_compact_size():
    """Pools + int32 index lists + vec, nothing dense: at r = 6, e = 2 about a third of a rank-6 LoRA."""
    from open_instruct.mos import mos_report

    base = build_tiny_model("llama", num_hidden_layers=6)
    base_ids = {id(t) for t in list(base.parameters()) + list(base.buffers())}
    kw = dict(r=6, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2)
    model = peft.get_peft_model(base, method_config("mos", seed=0, **kw))
    one = adapter_tensor_bytes(model, base_ids)
    model.add_adapter("b", method_config("mos", seed=1, **kw))
    extra = adapter_tensor_bytes(model, base_ids) - one
    report = mos_report(model, "b")
    num_layers = 7 * 6
    expected = report.trainable_params * 4 + num_layers * (2 * 6 * 2 * 4 + 6 * 4)  # pools, A/B indices, vec
    assert extra == expected
    assert extra < 1.15 * report.dense_lora_bytes / 3  # e/r = 1/3, plus index lists (large at width 64)


# ---------------------------------------------------------------------------------------------------- no stale factors
def fresh(model, ids):
    """The logits through the gather path (gradients enabled: no cache is read or written)."""
    with torch.enable_grad():
        return model(ids).logits.detach()


def cached(model, ids):
    with torch.no_grad():
        return model(ids).logits


def check_fresh(model, ids, what):
    torch.testing.assert_close(cached(model, ids), fresh(model, ids), atol=ATOL, rtol=0, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("method", TUNERS)
def test_cached_factors_are_never_stale(tmp_path, method):
    model = three_adapters(method)
    ids = torch.randint(0, 300, (2, 6), generator=torch.Generator().manual_seed(3))
    model.set_adapter("default")
    check_fresh(model, ids, "first use")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for step in range(2):  # train, evaluate, train again, evaluate
        model.train()
        before = cached(model, ids)
        model(ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        model.eval()
        check_fresh(model, ids, f"after training step {step}")
        assert (cached(model, ids) - before).abs().max() > 1e-4, "the step should change the outputs"
    model.set_adapter("b")
    check_fresh(model, ids, "set_adapter")
    model.save_pretrained(tmp_path)
    model.load_adapter(tmp_path, adapter_name="b")  # b's tensors overwritten in place by default's
    model.set_adapter("b")
    check_fresh(model, ids, "load_adapter over an existing name")
    model.delete_adapter("c")
    check_fresh(model, ids, "delete_adapter")
    model.merge_adapter()
    torch.testing.assert_close(cached(model, ids), fresh(model, ids), atol=1e-4, rtol=0)
    model.unmerge_adapter()
    check_fresh(model, ids, "merge + unmerge")
    model.to(torch.float64)
    out = cached(model, ids)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, fresh(model, ids), atol=1e-9, rtol=0)


# ---------------------------------------------------------------------------------------------------- device_map
class OneDevicePerOp(torch.overrides.TorchFunctionMode):
    """A CPU + meta split standing in for two GPUs: any op whose tensor arguments (0-dim ones aside) sit on
    different devices is refused, as CUDA does across GPUs; explicit moves are allowed, and a move out of meta
    (which has no data) gives zeros of the right shape, dtype and device."""

    MOVES = {torch.Tensor.to, torch.Tensor.cpu}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.MOVES and args[0].device.type == "meta":
            try:  # a move that stays on meta (e.g. a dtype change) runs as it is
                func(torch.empty(0, dtype=args[0].dtype, device="meta"), *args[1:], **kwargs)
            except NotImplementedError:  # "Cannot copy out of meta tensor": the move leaves meta
                target = func(torch.empty(0, dtype=args[0].dtype), *args[1:], **kwargs)
                return torch.zeros(args[0].shape, dtype=target.dtype, device=target.device)
        if func not in self.MOVES:
            leaves = torch.utils._pytree.tree_leaves((args, kwargs))
            devices = {t.device for t in leaves if isinstance(t, torch.Tensor) and t.dim() > 0}
            if len(devices) > 1:
                raise RuntimeError(f"{getattr(func, '__name__', func)} got tensors on {sorted(map(str, devices))}")
        return func(*args, **kwargs)


@pytest.mark.parametrize("method", ["mos", "tied_lora"])
def test_layers_on_another_device_than_their_pool(method):
    """A pool lives on its first layer's device; a later layer on another device (device_map) must still work."""
    model = three_adapters(method)
    layer = model.base_model.model.model.layers[2]
    layer.to("meta")  # the pools stay on the CPU with layer 0
    q_proj = layer.self_attn.q_proj
    x = torch.randn(2, 3, q_proj.in_features, device="meta")
    with OneDevicePerOp():
        assert q_proj(x).device.type == "meta"  # training path (gather with gradients)
        with torch.no_grad():
            assert q_proj(x).device.type == "meta"  # inference path (factor cache)
            assert q_proj(x, adapter_names=["b", "__base__"]).device.type == "meta"
        q_proj.merge(adapter_names=["c"])
        q_proj.unmerge()
    with OneDevicePerOp(), pytest.raises(RuntimeError, match="got tensors on"):  # the mode does catch a mix
        torch.randn(2) + torch.randn(2, device="meta")


@torch.no_grad()
def test_factor_cache_size_bounds_the_cached_adapters():
    from open_instruct.lowrank import FactorLinear, clear_factor_cache, set_factor_cache_size

    model = three_adapters("mos")
    ids = torch.randint(0, 300, (3, 4), generator=torch.Generator().manual_seed(4))
    layers = [m for m in model.modules() if isinstance(m, FactorLinear)]
    expected = model(ids, adapter_names=["default", "b", "c"]).logits
    assert all(len(m.factor_cache_tensors()) == 2 for m in layers)  # default 1 adapter: its A and B
    set_factor_cache_size(model, 3)
    torch.testing.assert_close(model(ids, adapter_names=["default", "b", "c"]).logits, expected, atol=ATOL, rtol=0)
    assert all(len(m.factor_cache_tensors()) == 6 for m in layers)
    set_factor_cache_size(model, 0)
    assert all(not m.factor_cache_tensors() for m in layers)
    torch.testing.assert_close(model(ids, adapter_names=["default", "b", "c"]).logits, expected, atol=ATOL, rtol=0)
    set_factor_cache_size(model, 2)
    model(ids)
    clear_factor_cache(model)
    assert all(not m.factor_cache_tensors() for m in layers)
    with pytest.raises(ValueError, match=">= 0"):
        set_factor_cache_size(model, -1)
