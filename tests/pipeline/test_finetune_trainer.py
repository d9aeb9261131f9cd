"""finetune_trainer.py: outputs, argument errors, resume, 2-process DDP (gloo) and DeepSpeed ZeRO-2 on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from safetensors.torch import load_file
from trainer_helpers import StopAt, write_chat_file
from transformers import AutoModelForCausalLM

from open_instruct import finetune_trainer
from open_instruct.reformat_datasets import convert_super_ni_data
from open_instruct.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def superni_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    convert_super_ni_data(REPO / "data/samples/natural-instructions", out, seed=42)
    return next(out.rglob("super_ni_data.jsonl"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), "llama")


def _args(model, train_file, out, *extra):
    return ["--model_name_or_path", str(model), "--train_file", str(train_file), "--output_dir", str(out),
            "--ft_mode", "mos", "--lora_r", "3", "--valid_param_lora_r", "2", "--valid_param_private_r", "1",
            "--num_chunk_per_vec", "2", "--lora_dropout", "0.1", "--torch_dtype", "float32", "--use_cpu", "True",
            "--per_device_train_batch_size", "4", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--max_seq_length", "128", "--report_to", "none", "--save_total_limit", "3", "--do_eval", "False",
            "--seed", "3", *extra]


def _pools(run_dir):
    state = load_file(Path(run_dir) / "mos_adapter" / "adapter_model.safetensors")
    return {k: v for k, v in state.items() if ".shared_pools." in k}


def test_resume_reaches_same_pools_as_uninterrupted(tiny_ckpt, superni_file, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert finetune_trainer.main(_args(tiny_ckpt, superni_file, full, "--max_steps", "8", "--save_steps", "4")) == 0
    with pytest.raises(KeyboardInterrupt):
        finetune_trainer.main(_args(tiny_ckpt, superni_file, cut, "--max_steps", "8", "--save_steps", "4"),
                              callbacks=[StopAt(4)])
    assert (cut / "checkpoint-4").is_dir() and not (cut / "completed").exists()
    # save_total_limit 1: checkpoint-4, resumed from, is rotated away before the run ends (must still work)
    assert finetune_trainer.main(_args(tiny_ckpt, superni_file, cut, "--max_steps", "8", "--save_steps", "4",
                                       "--resume_from_checkpoint", "auto", "--save_total_limit", "1")) == 0
    assert not (cut / "checkpoint-4").exists()
    assert (cut / "completed").exists()
    # the record says which runs were resumed (their train_runtime covers the last segment only)
    assert json.loads((full / "all_results.json").read_text())["resumed_from_step"] == 0
    resumed = json.loads((cut / "all_results.json").read_text())
    assert resumed["resumed_from_step"] == 4
    # train_loss is the whole run's (steps 1-8), as for the uninterrupted run, not steps 5-8's alone
    logged = [h["loss"] for h in json.loads((cut / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(logged) == 8  # --logging_steps 1: one loss a step
    assert resumed["train_loss"] == pytest.approx(sum(logged) / 8, rel=1e-6)
    assert resumed["train_loss_this_segment"] == pytest.approx(sum(logged[4:]) / 4, rel=1e-6)
    uninterrupted = json.loads((full / "all_results.json").read_text())["train_loss"]
    assert resumed["train_loss"] == pytest.approx(uninterrupted, rel=1e-4)
    a, b = _pools(full), _pools(cut)
    assert a.keys() == b.keys() and len(a) == 14
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)
        assert torch.count_nonzero(a[k]) > 0
    idx_full = {k: v for k, v in load_file(full / "mos_adapter/adapter_model.safetensors").items() if "index" in k}
    idx_cut = {k: v for k, v in load_file(cut / "mos_adapter/adapter_model.safetensors").items() if "index" in k}
    assert all(torch.equal(idx_full[k], idx_cut[k]) for k in idx_full)


def test_outputs_and_refusal_to_clobber(tiny_ckpt, superni_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = _args(tiny_ckpt, superni_file, out, "--max_steps", "3", "--save_steps", "100", "--do_eval", "True",
                 "--max_eval_samples", "8")
    assert finetune_trainer.main(args) == 0
    for name in ["adapter_config.json", "adapter_model.safetensors", "mos_adapter/adapter_config.json",
                 "train_results.json", "eval_results.json", "all_results.json", "metrics.json", "completed",
                 "run.log", "tokenizer_config.json"]:
        assert (out / name).exists(), name
    results = json.loads((out / "all_results.json").read_text())
    assert {"train_loss", "eval_loss", "train_runtime", "trainable_params"} <= results.keys()
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert json.loads((out / "mos_adapter/adapter_config.json").read_text())["peft_type"] == "MOS"
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert finetune_trainer.main(args) == 2  # a completed run is not overwritten without --overwrite_output_dir
    assert "already holds a completed run" in capsys.readouterr().err
    assert (out / "metrics.json").stat().st_mtime_ns == stamp and (out / "completed").exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--ft_mode", "dora"], "--ft_mode 'dora' is not supported"),
        (["--use_qlora", "True"], "--use_qlora True needs a CUDA GPU"),
        (["--num_chunk_per_vec", "5"], "num_chunk_per_vec (c=5) must divide"),
        (["--valid_param_private_r", "3"], "must be <= valid_param_lora_r"),
    ],
)
def test_bad_arguments_give_clear_errors(tiny_ckpt, superni_file, tmp_path, capsys, extra, needle):
    if "--use_qlora" in extra and torch.cuda.is_available():
        pytest.skip("the CPU-only error is what is tested here")
    assert finetune_trainer.main(_args(tiny_ckpt, superni_file, tmp_path / "x", "--max_steps", "1", *extra)) == 2
    assert needle in capsys.readouterr().err


def test_bare_trainer_trains_and_saves_a_mos_adapter(tiny_tokenizer, tmp_path, capsys):
    """Only a model, a training file and an output directory: the defaults (MoS r=8 e=2 p=1 c=4, 3 epochs) train
    and save an adapter stock PEFT loads. MoS's defaults need 7 layers; a model with fewer gets one line."""
    model, data = save_tiny_checkpoint(tmp_path / "model", "llama", num_hidden_layers=8), tmp_path / "chat.jsonl"
    write_chat_file(data)
    out = tmp_path / "run"
    assert finetune_trainer.main(["--model_name_or_path", str(model), "--train_file", str(data),
                                  "--output_dir", str(out)]) == 0
    assert (out / "completed").exists() and (out / "adapter_model.safetensors").exists()
    config = json.loads((out / "mos_adapter/adapter_config.json").read_text())
    assert [config[k] for k in ("r", "valid_param_lora_r", "valid_param_private_r", "num_chunk_per_vec")] == [8, 2, 1, 4]
    lora_per_rank = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                                        peft.LoraConfig(r=1, target_modules="all-linear"))
    results = json.loads((out / "all_results.json").read_text())
    assert results["trainable_params"] == 2 * lora_per_rank.get_nb_trainable_parameters()[0]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 12  # 64 examples, batch 16, 3 epochs
    pools_b = [v for k, v in _pools(out).items() if k.endswith(".B")]
    assert len(pools_b) == 7 and all(torch.count_nonzero(v) > 0 for v in pools_b)  # B starts at zero: it trained
    peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), out)  # the exported plain LoRA
    two_layers = save_tiny_checkpoint(tmp_path / "two_layers", "llama")
    assert finetune_trainer.main(["--model_name_or_path", str(two_layers), "--train_file", str(data),
                                  "--output_dir", str(tmp_path / "short")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "(e-p)·L·c = (2-1)·2·4 = 8. Raise valid_param_lora_r" in err and "Traceback" not in err


def test_missing_train_file_and_config_file(tiny_ckpt, tmp_path, capsys):
    assert finetune_trainer.main(_args(tiny_ckpt, tmp_path / "nope.jsonl", tmp_path / "o")) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model_name_or_path": str(tiny_ckpt), "train_file": "x.jsonl", "bogus_key": 1}))
    assert finetune_trainer.main([str(cfg)]) == 2
    assert "bogus_key" in capsys.readouterr().err


def _torchrun(nproc, args, env_extra=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + os.getpid() % 1000), str(REPO / "tests/pipeline/ddp_worker.py"), *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_process_ddp_gloo_identical_pools(tiny_ckpt, superni_file, tmp_path):
    out = tmp_path / "ddp"
    proc = _torchrun(2, _args(tiny_ckpt, superni_file, out, "--max_steps", "3", "--save_steps", "100"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    p0, p1 = torch.load(out / "pools_rank0.pt"), torch.load(out / "pools_rank1.pt")
    assert p0.keys() == p1.keys() and p0
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    assert any(torch.count_nonzero(v) for k, v in p0.items() if k.endswith(".B.default"))
    assert (out / "completed").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_on_cpu(tiny_ckpt, superni_file, tmp_path, stage):
    pytest.importorskip("deepspeed", reason="deepspeed not installed (DS_BUILD_OPS=0 pip install deepspeed==0.19.8)")
    ds_config = REPO / f"configs/ds_configs/stage{stage}.json"
    if not ds_config.is_file():
        pytest.fail(f"{ds_config} is missing")
    out = tmp_path / "ds"
    proc = _torchrun(2, _args(tiny_ckpt, superni_file, out, "--max_steps", "2", "--save_steps", "100",
                              "--deepspeed", str(ds_config), "--optim", "adamw_torch"),
                     env_extra={"DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "completed").exists() and (out / "adapter_model.safetensors").exists()
    if stage == 2:  # replicated parameters: both ranks hold the same pools
        p0, p1 = torch.load(out / "pools_rank0.pt"), torch.load(out / "pools_rank1.pt")
        assert all(torch.equal(p0[k], p1[k]) for k in p0)
    # ZeRO-3 partitions the pools; the saved adapters must hold them whole, and export must match MoS exactly.
    pools = _pools(out)
    assert all(v.numel() > 0 for v in pools.values()) and any(torch.count_nonzero(v) for k, v in pools.items()
                                                               if k.endswith(".B"))
    import open_instruct.mos  # noqa: F401

    ids = torch.tensor([[1, 5, 9, 13, 17]])
    logits = []
    for adapter in (out / "mos_adapter", out):
        model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_ckpt), adapter)
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-5)


def test_whole_run_train_loss_weights_each_log_by_the_steps_it_covers():
    history = [{"loss": 3.0, "step": 10}, {"loss": 2.0, "step": 20}, {"eval_loss": 9.0, "step": 20},
               {"loss": 1.5, "step": 25}, {"loss": 1.0, "step": 30}]  # the last two: after the resume at 25
    # steps 1-10 at 3.0, 11-20 at 2.0, 21-25 at 1.5; this segment: 5 steps at 0.5
    expected = (3.0 * 10 + 2.0 * 10 + 1.5 * 5 + 0.5 * 5) / 30
    assert finetune_trainer.whole_run_train_loss(history, 25, 0.5, 5) == pytest.approx(expected)
    # a checkpoint at 28 with the last log at 25: steps 26-28 were never logged and are left out
    assert finetune_trainer.whole_run_train_loss(history[:4], 28, 0.5, 2) == pytest.approx(
        (3.0 * 10 + 2.0 * 10 + 1.5 * 5 + 0.5 * 2) / 27)


def test_cpu_bf16_trains_a_float32_adapter_on_bf16_base_weights(tiny_ckpt, superni_file, tmp_path):
    """PRECISION=bf16 on a CPU (as on a GPU): base weights bfloat16, the trainable adapter float32, autocast; the
    run says so in all_results.json and its losses follow the float32 run's within bf16 rounding."""
    runs = {}
    for name, dtype, bf16 in (("fp32", "float32", "False"), ("bf16", "bfloat16", "True")):
        out = tmp_path / name
        args = _args(tiny_ckpt, superni_file, out, "--max_steps", "3", "--save_steps", "100", "--lora_dropout", "0",
                     "--bf16", bf16)
        args[args.index("--torch_dtype") + 1] = dtype
        assert finetune_trainer.main(args) == 0
        runs[name] = json.loads((out / "all_results.json").read_text())
        state = load_file(out / "mos_adapter" / "adapter_model.safetensors")
        floats = [v for v in state.values() if v.is_floating_point()]
        assert floats and all(v.dtype == torch.float32 for v in floats), name
    assert runs["fp32"]["precision"] == "float32"
    assert runs["bf16"]["precision"] == "bfloat16+bf16-autocast"
    assert abs(runs["bf16"]["train_loss"] - runs["fp32"]["train_loss"]) < 0.05 * runs["fp32"]["train_loss"]
