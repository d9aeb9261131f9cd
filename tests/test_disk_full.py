"""A full disk (ENOSPC) for real, on a small tmpfs mounted for the test (needs root; skipped with the reason
otherwise): a checkpoint, an export and an evaluator's output each stop with one line naming the full directory and
exit status 2, remove their partial files, and leave the previous complete state usable."""

import errno
import json
import re
import subprocess
from pathlib import Path

import peft
import pytest
from transformers import AutoModelForCausalLM, TrainerCallback

import open_instruct.baselines  # noqa: F401  (registers the TIED_LORA and PROLORA PEFT types)
import open_instruct.mos  # noqa: F401  (registers the MOS PEFT type)
from open_instruct.errors import disk_full
from open_instruct.mos import MoSConfig
from open_instruct.run_dir import last_complete_checkpoint
from open_instruct.tiny import save_tiny_checkpoint

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); the full-disk tests "
                    "need root (mount -t tmpfs)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up to ``leave`` bytes free with one filler file (delete it to free the space again)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing is left to flush (and fail) at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    # tmpfs hands out whole pages: free `leave` bytes by shortening the filler
    with open(filler, "r+b") as f:
        f.truncate(max(filler.stat().st_size - leave, 0))
    return filler


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_disk_full_recognises_torch_and_safetensors_wrapping():
    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"))
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert disk_full(wrapped)
    assert not disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"))
    assert not disk_full(ValueError("bad value"))


class FillDiskAfter(TrainerCallback):
    """After checkpoint ``step`` is saved, fill the disk: the next checkpoint hits ENOSPC."""

    def __init__(self, disk, step):
        self.disk, self.step = disk, step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            fill(self.disk, leave=8192)


def test_checkpoint_on_a_full_disk(small_disk, tmp_path, capsys):
    from open_instruct.finetune_trainer import main

    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Q{i}?"},
                                                     {"role": "assistant", "content": "A fox."}]}) + "\n"
                            for i in range(16)))
    out = small_disk / "run"
    args = ["--model_name_or_path", str(model), "--train_file", str(data), "--output_dir", str(out), "--ft_mode",
            "mos", "--lora_r", "3", "--valid_param_lora_r", "2", "--valid_param_private_r", "1", "--num_chunk_per_vec",
            "2", "--max_steps", "6", "--save_steps", "2", "--save_total_limit", "1", "--per_device_train_batch_size",
            "4", "--do_eval", "False", "--use_cpu", "True", "--torch_dtype", "float32", "--optim", "adamw_torch",
            "--report_to", "none", "--resume_from_checkpoint", "auto", "--disable_tqdm", "True"]
    assert main(args, callbacks=[FillDiskAfter(small_disk, 2)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on the device holding {out}" in line and "checkpoint-4" in line
    assert "checkpoint-2" in line and "removed" in line
    assert last_complete_checkpoint(out) == (out / "checkpoint-2", [])  # the earlier one is intact and usable
    assert not (out / "checkpoint-4").exists() and not (out / "completed").exists()

    (small_disk / "filler").unlink()  # space again: the same command resumes from checkpoint-2 and finishes
    assert main(args) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and (out / "completed").exists()
    assert json.loads((out / "train_results.json").read_text())["resumed_from_step"] == 2


@pytest.fixture
def adapter(tmp_path):
    base = save_tiny_checkpoint(tmp_path / "base", "llama")
    cfg = MoSConfig(r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=2, target_modules=TARGETS,
                    init_weights=False)
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg).save_pretrained(tmp_path / "mos")
    return base, tmp_path / "mos"


def test_export_on_a_full_disk(small_disk, adapter, capsys):
    from open_instruct.export import main

    base, mos = adapter
    out = small_disk / "export"
    assert main(["--base_model", str(base), "--adapter", str(mos), "--output_dir", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fill(small_disk, leave=4096)
    assert main(["--base_model", str(base), "--adapter", str(mos), "--output_dir", str(out), "--overwrite",
                 "--merge"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on the device holding {small_disk}" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier export is untouched
    assert sorted(p.name for p in small_disk.iterdir()) == ["export", "filler"]  # no partial export left


def test_evaluator_output_on_a_full_disk(small_disk, tmp_path, capsys, monkeypatch):
    import eval.cli
    from eval.cli import run_cli
    from eval.mmlu import run_eval as mmlu

    model = save_tiny_checkpoint(tmp_path / "tiny", "llama")
    data = tmp_path / "mmlu"
    for split in ("dev", "test"):
        (data / split).mkdir(parents=True)
        for s in ("anatomy", "virology"):
            (data / split / f"{s}_{split}.csv").write_text(f"Question on {s}?,a,b,c,d,A\n" * 200)
    save = small_disk / "mmlu_results"
    argv = ["--ntrain", "0", "--data_dir", str(data), "--save_dir", str(save), "--model_name_or_path", str(model)]
    original_add = eval.cli.Progress.add

    def add_then_fill(self, part):  # the first subject is saved, then the disk fills up
        original_add(self, part)
        if not (small_disk / "filler").exists():
            fill(small_disk, leave=1024)

    monkeypatch.setattr(eval.cli.Progress, "add", add_then_fill)
    with pytest.raises(SystemExit) as exc:
        run_cli(mmlu.main, argv)
    assert exc.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"no space left on the device holding {save}" in line and "virology.csv" in line
    assert sorted(p.name for p in save.iterdir()) == [".progress.json", "anatomy.csv"]  # no partial file

    monkeypatch.setattr(eval.cli.Progress, "add", original_add)
    (small_disk / "filler").unlink()
    assert run_cli(mmlu.main, argv)["average_acc"] >= 0  # the rerun keeps anatomy and finishes
    assert (save / "metrics.json").is_file() and not (save / ".progress.json").exists()


def test_atomic_files_keep_the_old_file_on_an_error_and_on_a_full_disk(small_disk):
    """open_instruct.files: the one atomic writer of tables, manifests, run records and metrics."""
    from open_instruct.errors import UserError
    from open_instruct.files import open_atomic, write_jsonl_atomic, write_text_atomic

    path = small_disk / "table.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])
    with pytest.raises(RuntimeError, match="halfway"), open_atomic(path) as fout:
        fout.write("half a table\n")
        raise RuntimeError("halfway")
    assert path.read_text() == '{"a": 1}\n'
    filler = fill(small_disk, leave=4096)
    with pytest.raises(UserError, match=re.escape(f"no space left on the device holding {small_disk}: table.jsonl")):
        write_jsonl_atomic(path, [{"b": "x" * 100}] * 2000)
    assert path.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "table.jsonl"]  # no partial file left
    filler.unlink()
    write_text_atomic(path, "whole\n")
    assert path.read_text() == "whole\n" and sorted(p.name for p in small_disk.iterdir()) == ["table.jsonl"]
