"""Shared fixtures: tiny models and tokenizer built in-process (no network, seconds)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# MOS_TEST_THREADS=1 when the suite shares the cores with other jobs (e.g. the replication grid): with more
# threads than idle cores, tiny ops wait on each other and tests run up to 100x slower.
torch.set_num_threads(int(os.environ.get("MOS_TEST_THREADS", "2")))

from open_instruct.tiny import TINY_ARCHS, build_tiny_model, build_tiny_tokenizer, save_tiny_checkpoint  # noqa: E402

ARCHS = sorted(TINY_ARCHS)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(params=ARCHS)
def tiny_model(request, tiny_tokenizer):
    """One fresh tiny model per architecture (llama with GQA, mistral, qwen2)."""
    return build_tiny_model(request.param, tokenizer=tiny_tokenizer)


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    return build_tiny_model("llama", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny Llama checkpoint directory on disk (model + tokenizer), like a real model path."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama")
