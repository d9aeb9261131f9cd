"""DeepSpeed / accelerate config files parse and agree with each other; the MoS-vs-LoRA benchmark runs.

The "auto" values of the DeepSpeed configs are filled by the HF Trainer from its training arguments, so each one
must be a key the Trainer's DeepSpeed integration knows how to fill; the accelerate configs must be accepted by
``accelerate launch`` (which refuses some keys next to a ``deepspeed_config_file``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DS_DIR = REPO / "configs" / "ds_configs"
ACC_DIR = REPO / "configs" / "accelerate"
DS_STAGES = {"stage0.json": 0, "stage2.json": 2, "stage3.json": 3}
ACCELERATE_FILES = {"multi_gpu.yaml": ("MULTI_GPU", None), "deepspeed_zero2.yaml": ("DEEPSPEED", "stage2.json"),
                    "deepspeed_zero3.yaml": ("DEEPSPEED", "stage3.json")}

# Keys that transformers' HfTrainerDeepSpeedConfig fills when their value is "auto" (trainer_config_process /
# trainer_config_finalize); the stage-3 ones are filled only under ZeRO-3.
HF_AUTO_KEYS = {
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping",
    "fp16.enabled", "bf16.enabled",
    "optimizer.params.lr", "optimizer.params.betas", "optimizer.params.eps", "optimizer.params.weight_decay",
    "scheduler.params.warmup_min_lr", "scheduler.params.warmup_max_lr", "scheduler.params.total_num_steps",
    "scheduler.params.warmup_num_steps",
    "zero_optimization.reduce_bucket_size",
}
HF_AUTO_KEYS_ZERO3 = {"zero_optimization.stage3_prefetch_bucket_size",
                      "zero_optimization.stage3_param_persistence_threshold"}
# Next to a deepspeed_config_file, accelerate launch rejects these accelerate-config fields (they belong in the JSON).
ACCELERATE_DS_FILE_CONFLICTS = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage",
                                "offload_optimizer_device", "offload_param_device", "offload_param_nvme_path",
                                "offload_optimizer_nvme_path", "zero3_save_16bit_model", "mixed_precision"}


def _load_ds(name: str) -> dict:
    return json.loads((DS_DIR / name).read_text())


def _auto_keys(cfg: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _auto_keys(value, path + ".")
        elif value == "auto":
            out.add(path)
    return out


# ------------------------------------------------------------------------------------------- DeepSpeed JSON
@pytest.mark.parametrize("name", sorted(DS_STAGES))
def test_ds_config_parses_and_declares_its_stage(name):
    cfg = _load_ds(name)
    assert cfg["zero_optimization"]["stage"] == DS_STAGES[name]
    # Batch size, accumulation, clipping and precision come from the Trainer's arguments, never hard-coded here.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                "gradient_clipping"):
        assert cfg[key] == "auto", key
    assert cfg["bf16"]["enabled"] == "auto" and cfg["fp16"]["enabled"] == "auto"
    # No optimizer/scheduler section: the Trainer's --optim and --lr_scheduler_type stay in charge.
    assert "optimizer" not in cfg and "scheduler" not in cfg


@pytest.mark.parametrize("name", sorted(DS_STAGES))
def test_ds_auto_keys_are_ones_the_hf_trainer_fills(name):
    cfg = _load_ds(name)
    autos = _auto_keys(cfg)
    allowed = HF_AUTO_KEYS | (HF_AUTO_KEYS_ZERO3 if DS_STAGES[name] == 3 else set())
    assert autos <= allowed, f"{name}: 'auto' keys the HF Trainer does not fill: {sorted(autos - allowed)}"
    # That the installed transformers really fills them is test_hf_trainer_fills_every_auto_value (it runs the filler).


@pytest.mark.parametrize("name", sorted(DS_STAGES))
def test_hf_trainer_fills_every_auto_value(name):
    """Run transformers' own filler (what Trainer(args.deepspeed=...) does) and check nothing 'auto' survives."""
    pytest.importorskip("deepspeed", reason="needs deepspeed (requirements-gpu.txt; DS_BUILD_OPS=0 on a CPU)")
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    ds = HfTrainerDeepSpeedConfig(str(DS_DIR / name))
    args = SimpleNamespace(world_size=2, per_device_train_batch_size=16, gradient_accumulation_steps=1,
                           max_grad_norm=0.3, learning_rate=2e-4, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                           weight_decay=0.0, save_on_each_node=False, fp16=False, fp16_full_eval=False, bf16=True,
                           bf16_full_eval=False, get_warmup_steps=lambda n: 0)
    ds.trainer_config_process(args)
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=64))
    ds.trainer_config_finalize(args, model, num_training_steps=100)
    assert not _auto_keys(ds.config), f"{name}: still 'auto' after filling: {_auto_keys(ds.config)}"
    assert ds.config["train_batch_size"] == 32 and ds.config["gradient_clipping"] == 0.3
    assert ds.config["bf16"]["enabled"] is True and ds.config["fp16"]["enabled"] is False
    assert ds.config["zero_optimization"]["stage"] == DS_STAGES[name]


# ------------------------------------------------------------------------------------------- accelerate YAML
@pytest.mark.parametrize("name", sorted(ACCELERATE_FILES))
def test_accelerate_config_parses_and_references_existing_files(name):
    cfg = yaml.safe_load((ACC_DIR / name).read_text())
    distributed_type, ds_file = ACCELERATE_FILES[name]
    assert cfg["compute_environment"] == "LOCAL_MACHINE"
    assert cfg["distributed_type"] == distributed_type
    assert cfg["num_machines"] == 1 and cfg["machine_rank"] == 0 and cfg["num_processes"] >= 1
    assert cfg["use_cpu"] is False
    if ds_file is None:
        assert "deepspeed_config" not in cfg
        return
    ds = cfg["deepspeed_config"]
    path = ds["deepspeed_config_file"]
    assert not Path(path).is_absolute(), "keep it relative to the repository root"
    assert (REPO / path).is_file(), f"{name} points to missing {path}"
    assert Path(path).name == ds_file
    conflicts = (set(ds) | set(cfg)) & ACCELERATE_DS_FILE_CONFLICTS
    assert not conflicts, f"accelerate launch rejects {sorted(conflicts)} next to a deepspeed_config_file"
    # zero.Init while loading only makes sense for ZeRO-3.
    assert ds.get("zero3_init_flag", False) == (_load_ds(ds_file)["zero_optimization"]["stage"] == 3)


@pytest.mark.parametrize("name", sorted(ACCELERATE_FILES))
def test_accelerate_launch_accepts_config(name, monkeypatch):
    """accelerate's own loader and launch-argument validation (no process is started)."""
    import accelerate.commands.launch as launch
    from accelerate.commands.config.config_args import load_config_from_file

    assert hasattr(launch, "_validate_launch_command"), (
        "accelerate moved _validate_launch_command (private API): adapt this test to the pinned accelerate version")
    monkeypatch.chdir(REPO)
    loaded = load_config_from_file(str(ACC_DIR / name))
    assert loaded.distributed_type.value == ACCELERATE_FILES[name][0]
    args = launch.launch_command_parser().parse_args(["--config_file", str(ACC_DIR / name), "train.py"])
    args, defaults, mixed_precision_from_config = launch._validate_launch_command(args)
    if ACCELERATE_FILES[name][1]:
        assert args.use_deepspeed and not mixed_precision_from_config
        fields = list(defaults.deepspeed_config)
        assert not set(fields) & ACCELERATE_DS_FILE_CONFLICTS
        assert (REPO / args.deepspeed_config_file).is_file()
    else:
        assert args.multi_gpu and not args.use_deepspeed


# ------------------------------------------------------------------------------------------- benchmark smoke test
def _load_script(name: str):
    """Import a bench/ script as a module (registered in sys.modules, which its dataclasses need)."""
    module_name = f"bench_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def test_bench_runs_on_tiny_model_and_prints_ratios(capsys, tmp_path):
    bench = _load_script("mos_vs_lora")
    out_json = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:  # one thread: tiny ops gain nothing from two, and a busy machine makes two threads stall each other
        rc = bench.main(["--model", "tiny", "--device", "cpu", "--steps", "2", "--warmup", "1", "--batch-size", "1",
                         "--seq-len", "16", "--threads", "1", "--json", str(out_json)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert rc == 0
    line = [x for x in out.splitlines() if x.startswith("RATIO mos/lora")]
    assert line, out
    ratios = dict(kv.split("=") for kv in line[-1].split()[2:])
    assert {"step_time", "peak_mem", "step_transient"} <= set(ratios)
    assert all(float(v) > 0 for v in ratios.values())
    assert re.search(r"step time median \(ms\)", out) and "peak memory (MiB)" in out
    result = json.loads(out_json.read_text())
    assert len(result["step_ms"]["MoS"]) == len(result["step_ms"]["LoRA"]) == 2
    # MoS holds e/r of LoRA's trainable parameters (e=2, r=8 by default).
    assert result["trainable"]["MoS"] * 4 == result["trainable"]["LoRA"]


def test_bench_variants_share_base_weights_and_interleave():
    bench = _load_script("mos_vs_lora")
    from open_instruct.tiny import build_tiny_model

    base = build_tiny_model("llama", num_hidden_layers=8)
    args = bench.parse_args(["--model", "tiny", "--device", "cpu"])
    models = bench.build_variants(base, args)
    mos_w = models["MoS"].get_base_model().model.layers[0].mlp.down_proj.base_layer.weight
    lora_w = models["LoRA"].get_base_model().model.layers[0].mlp.down_proj.base_layer.weight
    assert mos_w.data_ptr() == lora_w.data_ptr()  # the base is held once
    assert [bench.abba_order(i) for i in range(4)] == [("MoS", "LoRA"), ("LoRA", "MoS")] * 2


def test_gpu_check_script_runs_and_skips_each_gpu_part_without_cuda(tmp_path):
    """The real script, end to end: versions, then one SKIP line per GPU part, then PASS (on a machine without CUDA)."""
    if torch.cuda.is_available():
        pytest.skip("has CUDA: there the script runs the GPU parts (bench/gpu_check.sh)")
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "CPU_DRY_RUN": "0"}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch" in proc.stdout and "gpu                 none" in proc.stdout
    assert "SKIP (a)" in proc.stdout and "SKIP (b)" in proc.stdout
    assert proc.stdout.rstrip().endswith("GPU_CHECK PASS")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_throughput_bench_smoke_run_keeps_exact_variants_exact(tmp_path):
    """bench/throughput.py --quick on a tiny model: every exact variant ends at today's loss (it measures speed,
    so the comparison must be of the same computation)."""
    bench = _load_script("throughput")
    out_json = tmp_path / "rows.json"
    threads = torch.get_num_threads()
    try:
        assert bench.main(["train", "--quick", "--threads", "1", "--json", str(out_json)]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads(out_json.read_text())
    by = {r["variant"]: r for r in rows}
    assert {"fp32 padded (today)", "+ supervised logits", "padding-free + supervised logits"} <= set(by)
    for name in ("+ supervised logits", "padding-free + supervised logits"):
        assert abs(by[name]["loss_delta"]) < 1e-4 and by[name]["tokens_per_s"] > 0
