"""The method registry and the run description (run.json): a method registered from outside the project, the
launcher's Python step (checks, run directory, resume signature), and the summarizers reading run.json, with the
directory name parsed only for runs made before it."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from open_instruct import launch, methods, run_dir, summarize
from open_instruct.errors import UserError
from open_instruct.run_spec import RUN_JSON, read_run_spec

REPO = Path(__file__).resolve().parents[1]
ARGS = ["8", "0", "0", "2e-4", "mos", "1", "0", "1", "2", "4"]
HPARAMS = {"r": 8, "seed": 0, "lr": 2e-4, "ft_mode": "mos", "p": 1, "e": 2, "c": 4}
# A method of its own, in a module of its own: a LoRA of twice the launcher's rank (exports to itself).
TOY_PLUGIN = '''
from open_instruct.methods import register_method


def build(a, common):
    import peft

    return peft.LoraConfig(r=2 * a["r"], lora_alpha=a["lora_alpha"], lora_dropout=a["lora_dropout"], bias="none",
                           **common)


register_method("double_lora", build=build, config="peft:LoraConfig", label="LoRA (2r)",
                mapping="r = 2 * lora_r (a LoRA of twice the launcher's rank)")
'''


@pytest.fixture
def toy_method():
    """``double_lora`` registered in this process for one test."""
    namespace = {}
    exec(TOY_PLUGIN, namespace)  # noqa: S102  (the plugin module's text, as its import would run it)
    yield methods.method("double_lora")
    methods._REGISTRY.pop("double_lora")


def test_a_registered_method_reaches_every_derived_list(toy_method):
    assert methods.METHODS[-1] == "double_lora" and "double_lora: r = 2 * lora_r" in methods.mapping_help()
    assert launch.method_choices()[0] == "mos" and "double_lora" in launch.method_choices()
    assert run_dir.final_dirs().match("double_lora_adapter") and run_dir.run_dirs().match("double_lora_adapter")
    config = methods.adapter_config("double_lora", r=3, target_modules=["q_proj"])
    assert type(config).__name__ == "LoraConfig" and config.r == 6 and toy_method.config_class is type(config)
    with pytest.raises(ValueError, match="already registered"):
        methods.register_method("double_lora", build=toy_method.build, config="peft:LoraConfig", mapping="")
    with pytest.raises(ValueError, match="may only hold r, p, e, c"):
        methods.register_method("other", build=toy_method.build, config="peft:LoraConfig", mapping="", reads="rx")


def test_builtin_registry_is_the_five_methods_and_their_prefixes():
    assert methods.METHODS == ("lora", "vera", "tied_lora", "prolora", "mos")
    assert methods.tuner_prefixes() == ("lora_", "vera_", "tied_lora_", "prolora_", "mos_")
    assert not run_dir.run_dirs().match("dora_adapter") and run_dir.run_dirs().match("mmlu_results")


def test_plugins_are_loaded_in_a_new_process(tmp_path):
    (tmp_path / "toy_plugin.py").write_text(TOY_PLUGIN)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{REPO}", MOS_METHOD_PLUGINS="toy_plugin")
    listing = subprocess.run([sys.executable, "-m", "open_instruct.methods"], capture_output=True, text=True,
                             env=env, cwd=REPO, timeout=60)
    assert listing.returncode == 0 and "double_lora  r = 2 * lora_r" in listing.stdout.splitlines()[-1]
    light = subprocess.run([sys.executable, "-c", "import sys; from open_instruct.methods import registry; "
                            "print(sorted(registry())[0], 'peft' in sys.modules, 'torch' in sys.modules)"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert light.stdout.split() == ["double_lora", "False", "False"]  # no PEFT, no torch until a config is built
    missing = subprocess.run([sys.executable, "-c", "from open_instruct.methods import registry; registry()"],
                             capture_output=True, text=True, env={**env, "MOS_METHOD_PLUGINS": "no_such_plugin"},
                             cwd=REPO, timeout=60)
    assert missing.returncode == 1 and "MOS_METHOD_PLUGINS: cannot import 'no_such_plugin'" in missing.stderr


# ------------------------------------------------------------------------------------------------ the launcher's step
@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A stand-in PYTHON that answers the device probe (no CUDA), a training file, no evaluation (SKIP_EVAL)."""
    python = tmp_path / "python"
    python.write_text("#!/usr/bin/env bash\necho 0 1\n")
    python.chmod(0o755)
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    for var in [v for v in os.environ if v in ("RUN_DIR", "EXTRA_ARGS", "DRY_RUN", "EVAL_ONLY", "MODEL")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TRAIN_FILE", str(tmp_path / "train.jsonl"))
    monkeypatch.setenv("OUTPUT_ROOT", str(tmp_path / "output"))
    monkeypatch.setenv("SKIP_EVAL", "1")
    return tmp_path, python


def spec_step(inputs, capsys, args=ARGS, **env):
    """``python -m open_instruct.launch spec`` as ft_llama2_7b_superni_mmlu.sh calls it: (status, stdout, stderr)."""
    tmp, python = inputs
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        status = launch.main(["spec", "--launcher", "ft_llama2_7b_superni_mmlu.sh", "--launcher-dir", str(REPO),
                              "--caller-dir", str(tmp), "--task", "superni", "--model-default",
                              "meta-llama/Llama-2-7b-hf", "--run-prefix", "LLaMA2_7b_MoS_superni",
                              "--eval-batch-size-default", "16", "--train-length", "--max_steps 10000",
                              "--python", str(python), "--", *args])
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    out = capsys.readouterr()
    return status, out.out, out.err


def new_run(inputs, capsys) -> Path:
    status, out, err = spec_step(inputs, capsys)
    assert status == 0, err
    (run,) = (inputs[0] / "output").iterdir()
    assert f"out={run}\n" in out and "RUN_STATE=new" in out
    return run


def test_a_new_run_gets_its_run_json_before_training(inputs, capsys):
    run = new_run(inputs, capsys)
    spec = read_run_spec(run)
    assert run.name == spec.run_name() and spec.positional == tuple(ARGS) and spec.method.name == "mos"
    assert (spec.method.lora_r, spec.method.valid_param_lora_r, spec.training.learning_rate) == (8, 2, 2e-4)
    assert spec.model == "meta-llama/Llama-2-7b-hf" and spec.training.extra_args == ()
    assert [e.name for e in spec.evaluations] == ["MMLU", "TyDiQA"]
    assert summarize.run_hyperparameters(run) == HPARAMS
    assert not (run / "launcher_args.txt").exists()


def test_resume_checks_read_run_json_and_old_launcher_args(inputs, capsys):
    run = new_run(inputs, capsys)
    status, out, _ = spec_step(inputs, capsys, RUN_DIR=run)
    assert status == 0 and "RUN_STATE=resumed" in out
    other = ["16", *ARGS[1:]]
    status, _, err = spec_step(inputs, capsys, other, RUN_DIR=run)
    assert status == 2 and err.strip().splitlines()[-1] == (  # after the device line, as before
        f"error: RUN_DIR {run} was started with other arguments (launcher=ft_llama2_7b_superni_mmlu.sh lora_r=8 "
        "seed=0 lr=2e-4 mode=mos vec_value=1 vec_std=0 p=1 e=2 c=4 model=meta-llama/Llama-2-7b-hf); resume it "
        "with those")
    # a run directory made before run.json: its launcher_args.txt is what a resume must match
    old = inputs[0] / "LLaMA2_7b_MoS_superni_20250102-030405_GPU_0_r_16"
    old.mkdir()
    (old / "launcher_args.txt").write_text(read_run_spec(run).signature().replace("lora_r=8", "lora_r=16") + "\n")
    assert spec_step(inputs, capsys, other, RUN_DIR=old)[0] == 0
    # it gets a run.json now, from this launch, started when its name says (not now)
    assert read_run_spec(old).positional[0] == "16" and read_run_spec(old).started == "20250102-030405"
    unnamed = inputs[0] / "my_run"  # a RUN_DIR named by hand: started when its launcher_args.txt was written
    unnamed.mkdir()
    (unnamed / "launcher_args.txt").write_text((old / "launcher_args.txt").read_text())
    os.utime(unnamed / "launcher_args.txt", (1_700_000_000, 1_700_000_000))
    assert spec_step(inputs, capsys, other, RUN_DIR=unnamed)[0] == 0
    assert read_run_spec(unnamed).started == time.strftime("%Y%m%d-%H%M%S", time.localtime(1_700_000_000))
    status, _, err = spec_step(inputs, capsys, RUN_DIR=old)
    assert status == 2 and "was started with other arguments (launcher=ft_llama2_7b_superni_mmlu.sh lora_r=16" in err
    (run / RUN_JSON).write_text("{not json")
    status, _, err = spec_step(inputs, capsys, RUN_DIR=run)
    assert status == 2 and f"{run / RUN_JSON} is not a run description" in err.strip().splitlines()[-1]


def test_usage_and_one_line_errors(inputs, capsys):
    status, out, err = spec_step(inputs, capsys, ARGS[:3])
    assert status == 2 and not out and err.startswith("error: expected 10 arguments, got 3\nusage: bash ft_llama2")
    assert "finetune_mode          mos | lora | vera | tied_lora | prolora\n" in err
    for args, env, needle in (
            (["8", "0", "0", "2e-4", "dora", *ARGS[5:]], {}, "finetune_mode must be one of mos, lora, vera, "
                                                            "tied_lora, prolora; got 'dora'"),
            (ARGS, {"BATCH_SIZE": "0"}, "BATCH_SIZE must be an integer >= 1, got '0'"),
            (ARGS, {"EXTRA_ARGS": "--overwrite_output_dir True"}, "EXTRA_ARGS: the launcher never overwrites a run")):
        status, out, err = spec_step(inputs, capsys, args, **env)
        assert status == 2 and not out and err.startswith(f"error: {needle}") and len(err.splitlines()) == 1, err
    assert not (inputs[0] / "output").exists()


# ------------------------------------------------------------------------------------------------ the summarizers
def test_summaries_read_run_json_and_parse_only_old_names(inputs, capsys):
    run = new_run(inputs, capsys)
    for path, content in (("all_results.json", {"train_loss": 1.0, "trainable_params": 10}),
                          ("mmlu_results/metrics.json", {"average_acc": 0.5, "cat_acc": {}})):
        (run / path).parent.mkdir(exist_ok=True)
        (run / path).write_text(json.dumps(content))
    renamed = run.parent / "my_renamed_run"  # a run directory with run.json and a name of its own
    shutil.copytree(run, renamed)
    (run / RUN_JSON).unlink()  # as made by the launcher before run.json: the name is parsed
    df, skipped = summarize.summarize(summarize.MMLU, run.parent, -1, verbose=False)
    assert not skipped and sorted(df["dir"]) == sorted([run.name, "my_renamed_run"])
    for _, row in df.iterrows():
        assert {k: row[k] for k in HPARAMS} == HPARAMS
    table = summarize.format_table(df, run.parent)
    assert f"LLaMA2_7b_MoS_superni_{read_run_spec(renamed).started}" in table and "my_renamed_run" in table
    # a run.json is the only source for runs that have one: a name that says otherwise is not read
    spec = json.loads((renamed / RUN_JSON).read_text())
    spec["method"]["name"] = "lora"
    (renamed / RUN_JSON).write_text(json.dumps(spec))
    other = renamed.parent / run.name.replace("_ft_mode_mos_", "_ft_mode_vera_")
    renamed.rename(other)
    df, _ = summarize.summarize(summarize.MMLU, run.parent, -1, verbose=False)
    assert df.set_index("dir").loc[other.name, "ft_mode"] == "lora"


def test_a_damaged_run_json_is_a_skipped_run_with_the_reason(inputs, capsys):
    run = new_run(inputs, capsys)
    (run / "mmlu_results").mkdir()
    (run / "mmlu_results" / "metrics.json").write_text(json.dumps({"average_acc": 0.5, "cat_acc": {}}))
    (run / RUN_JSON).write_text("[]")
    df, skipped = summarize.summarize(summarize.MMLU, run.parent, -1, verbose=False)
    ((path, reason),) = skipped
    assert df.empty and path == str(run) and reason.startswith(f"{run / RUN_JSON} is not a run description")
    assert reason.endswith("restore it, or remove it to treat the directory as an old run")
    with pytest.raises(UserError):
        read_run_spec(run)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_plugin_method_trains_exports_evaluates_and_is_summarized(tmp_path):
    """A method defined outside the project (MOS_METHOD_PLUGINS) through the launcher: training, the plain LoRA
    export, the evaluators loading it, and the summary, with no project file changed."""
    import peft
    from transformers import AutoModelForCausalLM

    from open_instruct.tiny import save_tiny_checkpoint

    (tmp_path / "toy_plugin.py").write_text(TOY_PLUGIN)
    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say it ({i})."},
                                                     {"role": "assistant", "content": "The quick fox."}]}) + "\n"
                            for i in range(16)))
    env = dict(os.environ, PYTHON=sys.executable, REPORT_TO="none", OMP_NUM_THREADS="1", MODEL=str(model),
               TRAIN_FILE=str(data), OUTPUT_ROOT=str(tmp_path / "out"), MAX_STEPS="2", BATCH_SIZE="4",
               MAX_EVAL_SAMPLES="0", LOGGING_STEPS="1", EVAL_DATA_DIR=str(REPO / "data" / "samples"),
               MMLU_ARGS="--n_instances 2", TYDIQA_ARGS="--max_num_examples_per_lang 1", EVAL_BATCH_SIZE="4",
               PYTHONPATH=str(tmp_path), MOS_METHOD_PLUGINS="toy_plugin")
    proc = subprocess.run(["bash", str(REPO / "ft_llama2_7b_superni_mmlu.sh"), "3", "0", "0", "1e-3", "double_lora",
                           "1", "0", "1", "1", "1"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (tmp_path / "out").iterdir()
    assert read_run_spec(run).method.name == "double_lora" and (run / "double_lora_adapter").is_dir()
    assert "ft_mode=double_lora (LoRA (2r)) r=6" in (run / "run.log").read_text()
    exported = json.loads((run / "adapter_config.json").read_text())
    assert exported["peft_type"] == "LORA" and exported["r"] == 6  # twice the launcher's r = 3
    lora = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model), run)  # stock PEFT
    assert lora.peft_config["default"].r == 6
    for results in ("mmlu_results", "tydiqa_results"):
        assert (run / results / "metrics.json").is_file(), results
    summary = subprocess.run([sys.executable, str(REPO / "mmlu_summarize.py"), "--ts", "-1", "--output_root",
                              str(tmp_path / "out"), "--csv", str(tmp_path / "s.csv")], capture_output=True,
                             text=True, cwd=tmp_path, timeout=300)
    assert summary.returncode == 0, summary.stderr[-2000:]
    row = pd.read_csv(tmp_path / "s.csv").iloc[0]
    assert (row["ft_mode"], row["r"]) == ("double_lora", 3)
    assert row["trainable_params"] == sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
