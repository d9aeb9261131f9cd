"""Adapters saved before the core-layout split (tests/fixtures/legacy_adapters/) load and export exactly."""

from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file

import open_instruct.baselines  # noqa: F401  (registers the PEFT types)
from open_instruct.mos import lora_state_dict
from open_instruct.tiny import build_tiny_model

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_adapters"


@pytest.mark.parametrize("method", ["mos", "tied_lora"])
def test_legacy_adapter_loads_and_exports_the_same_factors(method):
    base = build_tiny_model("llama", vocab_size=384, seed=0)
    model = peft.PeftModel.from_pretrained(base, str(FIXTURES / method))
    expected = load_file(str(FIXTURES / f"{method}_expected_lora.safetensors"))
    got = lora_state_dict(model)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    # the pools really came from the file: an adapter with fresh random pools exports other factors
    assert any(v.abs().sum() > 0 for k, v in expected.items() if "lora_B" in k)
