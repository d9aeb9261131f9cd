"""finetune_trainer and its output directory: partial checkpoints, completed runs, --overwrite_output_dir, and
bad inputs (model, tokenizer, training file) as one line with exit code 2."""

import gzip
import json
import shutil
from pathlib import Path

import pytest
from trainer_helpers import StopAt

from open_instruct import finetune_trainer
from open_instruct.data import prepare_datasets
from open_instruct.run_dir import clear_previous_run, last_complete_checkpoint
from open_instruct.tiny import save_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), "llama")


def chat(i, reply=None):
    return {"messages": [{"role": "user", "content": f"Say the magic words ({i})."},
                         {"role": "assistant", "content": "The quick brown fox." if reply is None else reply}]}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def data16(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "d.jsonl", [chat(i) for i in range(16)])


def _args(model, train_file, out, *extra):
    return ["--model_name_or_path", str(model), "--train_file", str(train_file), "--output_dir", str(out),
            "--ft_mode", "mos", "--lora_r", "3", "--valid_param_lora_r", "2", "--valid_param_private_r", "1",
            "--num_chunk_per_vec", "2", "--torch_dtype", "float32", "--use_cpu", "True",
            "--per_device_train_batch_size", "4", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--max_seq_length", "64", "--report_to", "none", "--save_total_limit", "3", "--do_eval", "False",
            "--seed", "3", *extra]


def test_auto_resume_skips_a_checkpoint_cut_off_while_saving(tiny_ckpt, data16, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        finetune_trainer.main(_args(tiny_ckpt, data16, out, "--max_steps", "6", "--save_steps", "2"),
                              callbacks=[StopAt(4)])
    # SIGINT while checkpoint-4 was being written: its weights are there, trainer_state.json (written last) is not
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(out)[0] == out / "checkpoint-2"
    assert finetune_trainer.main(_args(tiny_ckpt, data16, out, "--max_steps", "6", "--save_steps", "2",
                                       "--resume_from_checkpoint", "auto")) == 0
    err = capsys.readouterr().err
    assert "not resuming from checkpoint-4: no trainer_state.json" in err
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4, 5, 6]  # steps 1-2 from checkpoint-2
    # steps 3-4 were trained again: checkpoint-4 was written anew, this time to the end
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    assert (out / "completed").exists()


def test_last_complete_checkpoint_reasons(tmp_path):
    def ckpt(step, state="ok", weights=True):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if weights:
            (d / "adapter_model.safetensors").write_bytes(b"x")
        if state == "ok":
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        elif state == "cut":
            (d / "trainer_state.json").write_text('{"global_step": 1')
        return d

    good = ckpt(10)
    ckpt(20, state="cut"), ckpt(30, weights=False), ckpt(40, state=None)
    ckpt(9)  # older than checkpoint-10: numeric order, not by name
    last, skipped = last_complete_checkpoint(tmp_path)
    assert last == good
    assert [s.split(":")[0] for s in skipped] == ["checkpoint-40", "checkpoint-30", "checkpoint-20"]
    assert "cut off" in skipped[2] and "no weights" in skipped[1]


def test_explicit_incomplete_checkpoint_is_refused(tiny_ckpt, data16, tmp_path, capsys):
    bad = tmp_path / "run" / "checkpoint-7"
    bad.mkdir(parents=True)
    assert finetune_trainer.main(_args(tiny_ckpt, data16, tmp_path / "run", "--max_steps", "1",
                                       "--resume_from_checkpoint", str(bad))) == 2
    assert "is incomplete (no trainer_state.json" in capsys.readouterr().err


def test_completed_run_is_not_resumed_or_rewritten(tiny_ckpt, data16, tmp_path, capsys):
    out = tmp_path / "run"
    args = _args(tiny_ckpt, data16, out, "--max_steps", "2", "--save_steps", "2")
    assert finetune_trainer.main(args) == 0
    assert (out / "checkpoint-2").is_dir()  # the finished run keeps its last checkpoint
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert finetune_trainer.main(args + ["--resume_from_checkpoint", "auto"]) == 2
    err = capsys.readouterr().err
    assert "already holds a completed run" in err and "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_overwrite_output_dir_leaves_nothing_of_the_old_run(tiny_ckpt, data16, tmp_path):
    out = tmp_path / "run"
    assert finetune_trainer.main(_args(tiny_ckpt, data16, out, "--max_steps", "2", "--save_steps", "1",
                                       "--do_eval", "True", "--max_eval_samples", "4")) == 0
    assert "eval_loss" in json.loads((out / "all_results.json").read_text())
    (out / "mmlu_results").mkdir()
    (out / "mmlu_results" / "metrics.json").write_text('{"average_acc": 0.9}')
    (out / "notes.txt").write_text("mine")
    assert finetune_trainer.main(_args(tiny_ckpt, data16, out, "--max_steps", "1", "--save_steps", "100",
                                       "--overwrite_output_dir", "True", "--resume_from_checkpoint", "auto")) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert "eval_loss" not in results and "train_loss" in results
    assert not (out / "eval_results.json").exists() and not (out / "mmlu_results").exists()
    assert not (out / "checkpoint-2").exists() and (out / "notes.txt").read_text() == "mine"
    for ckpt in out.glob("checkpoint-*"):  # any checkpoint there is the new run's
        assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] <= 1
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and (out / "completed").exists()
    assert (out / "run.log").read_text().count("ft_mode=mos") == 1  # one run in run.log


def test_clear_previous_run_removes_only_what_runs_write(tmp_path):
    for name in ["adapter_config.json", "metrics.json", "completed", "run.log", "my_notes.md", "data.jsonl"]:
        (tmp_path / name).write_text("x")
    for name in ["checkpoint-5", "mos_adapter", "tydiqa_results", "my_results", "checkpoints-old"]:
        (tmp_path / name).mkdir()
    removed = clear_previous_run(tmp_path)
    assert sorted(removed) == sorted(["adapter_config.json", "metrics.json", "completed", "run.log",
                                      "checkpoint-5", "mos_adapter", "tydiqa_results"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints-old", "data.jsonl", "my_notes.md",
                                                          "my_results"]


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("finetune_trainer: error:")]
    assert len(lines) == 1 and needle in lines[0], err[-2000:]
    assert "Traceback" not in err


def test_missing_model_dir_and_model_without_tokenizer(tiny_ckpt, data16, tmp_path, capsys):
    assert finetune_trainer.main(_args(tmp_path / "no_such_model", data16, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "no_such_model: no such directory")
    assert finetune_trainer.main(_args("./relative/typo", data16, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "./relative/typo: no such directory")
    no_tok = tmp_path / "no_tok"
    shutil.copytree(tiny_ckpt, no_tok)
    for f in no_tok.iterdir():
        if "token" in f.name or f.suffix in (".jinja", ".model"):
            f.unlink()
    assert finetune_trainer.main(_args(no_tok, data16, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "holds no tokenizer")
    not_model = tmp_path / "empty_dir"
    not_model.mkdir()
    assert finetune_trainer.main(_args(not_model, data16, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "is not a model directory (no config.json)")


def test_binary_and_non_utf8_training_files(tiny_ckpt, tmp_path, capsys):
    gz = tmp_path / "data.jsonl"
    gz.write_bytes(gzip.compress(b'{"prompt": "a", "completion": "b"}\n' * 10))
    assert finetune_trainer.main(_args(tiny_ckpt, gz, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "not UTF-8 text")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "x"}\n')
    assert finetune_trainer.main(_args(tiny_ckpt, latin, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "line 2: not UTF-8 text (byte 0xe9")
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b'{"prompt": "a", "completion": "b"}\n\x00\x00\x00\n')
    assert finetune_trainer.main(_args(tiny_ckpt, nul, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "line 2: contains NUL bytes")
    bad_json = write_jsonl(tmp_path / "bad.jsonl", [chat(0)])
    bad_json.write_text(bad_json.read_text() + "{not json\n")
    assert finetune_trainer.main(_args(tiny_ckpt, bad_json, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "line 2: invalid JSON")


def test_every_reply_empty_is_an_error_and_some_empty_a_warning(tiny_ckpt, tiny_tokenizer, tmp_path, capsys, caplog):
    empty = write_jsonl(tmp_path / "empty.jsonl", [chat(i, reply="  ") for i in range(8)])
    assert finetune_trainer.main(_args(tiny_ckpt, empty, tmp_path / "o", "--max_steps", "1")) == 2
    _one_line_error(capsys, "every assistant reply / completion is empty")
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": f"q{i}", "completion": ""} for i in range(4)])
    with pytest.raises(ValueError, match="every assistant reply / completion is empty"):
        prepare_datasets(pc, tiny_tokenizer, 64, do_eval=False)
    some = write_jsonl(tmp_path / "some.jsonl", [chat(i, reply="" if i < 3 else None) for i in range(8)])
    with caplog.at_level("WARNING"):
        train, _, _ = prepare_datasets(some, tiny_tokenizer, 64, do_eval=False)
    assert len(train) == 8 and "3 of 8 examples" in caplog.text and "only empty replies" in caplog.text


def test_small_file_with_the_default_held_out_count(tiny_ckpt, data16, tmp_path):
    out = tmp_path / "run"  # the default --max_eval_samples 1024 with a 16-line file
    assert finetune_trainer.main(_args(tiny_ckpt, data16, out, "--max_steps", "1", "--do_eval", "True")) == 0
    assert "holding out 1 (10%) for evaluation instead and training on 15" in (out / "run.log").read_text()
    assert json.loads((out / "eval_results.json").read_text())["eval_samples"] == 1
    assert json.loads((out / "all_results.json").read_text())["train_samples"] == 15


@pytest.mark.parametrize("extra,needle", [
    (["--max_seq_length", "-5"], "--max_seq_length must be a positive number of tokens, got -5"),
    (["--max_eval_samples", "-1"], "--max_eval_samples must be >= 0, got -1"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1, got 0"),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be >= 1, got 0"),
    (["--lora_r", "0"], "--lora_r must be >= 1, got 0"),
    (["--max_train_samples", "0"], "--max_train_samples must be >= 1, got 0"),
    (["--lora_dropout", "1.5"], "--lora_dropout must be in [0, 1)"),
    (["--learning_rate=-1e-3"], "--learning_rate > 0"),
])
def test_bad_numbers(tiny_ckpt, data16, tmp_path, capsys, extra, needle):
    assert finetune_trainer.main(_args(tiny_ckpt, data16, tmp_path / "o", "--max_steps", "1", *extra)) == 2
    _one_line_error(capsys, needle)


def test_output_dir_holding_a_model_is_refused(tiny_ckpt, data16, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_ckpt, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for extra in ([], ["--overwrite_output_dir", "True"]):  # e.g. --output_dir = --model_name_or_path
        assert finetune_trainer.main(_args(model, data16, model, "--max_steps", "1", *extra)) == 2
        _one_line_error(capsys, f"--output_dir {model} holds a model (config.json)")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


@pytest.fixture
def hub_on(monkeypatch, tmp_path):
    """The hub client as on a machine with the hub switched on, an empty cache and no proxy; returns a function
    that points it at an endpoint."""
    from huggingface_hub import constants

    from open_instruct import run_dir

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    run_dir.hub_unreachable.cache_clear()
    yield lambda endpoint: monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    run_dir.hub_unreachable.cache_clear()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_hub_id_the_hub_cannot_give_is_one_line_at_once(hub_on, data16, tmp_path, capsys):
    """Offline with a hub id: one line naming the id and the fix within seconds, instead of the hub client's retries
    (~27 s per file here) ending in advice to copy a checkpoint again."""
    import time

    hub_on(f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    assert finetune_trainer.main(_args("some-org/some-model", data16, tmp_path / "o", "--max_steps", "1")) == 2
    assert time.monotonic() - start < 20
    _one_line_error(capsys, "some-org/some-model is not a local directory, so it is read as a hub id, and the model "
                            "hub cannot be reached (127.0.0.1: ")
    assert not (tmp_path / "o" / "completed").exists()


def test_the_hub_check_stays_out_of_the_way(hub_on, monkeypatch, tmp_path):
    """No verdict without cause: a hub that answers, a cached repository, a proxy, HF_HUB_OFFLINE, a local path."""
    import socket

    from huggingface_hub import constants

    from open_instruct.run_dir import hub_problem, hub_unreachable

    hub_on(f"http://127.0.0.1:{_closed_port()}")
    assert "cannot be reached (127.0.0.1: " in hub_problem("org/model")
    (Path(constants.HF_HUB_CACHE) / "models--org--cached").mkdir(parents=True)
    assert hub_problem("org/cached") is None
    assert hub_problem("./org/model") is None and hub_problem(str(tmp_path / "model")) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_problem("org/model") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub_problem("org/model") is None
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as server:  # a hub that answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        hub_on(f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_unreachable(constants.ENDPOINT) is None
        assert hub_problem("org/model") is None
