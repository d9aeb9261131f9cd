"""The fingerprints of a table's inputs (replication.inputs): recorded with the first rows, matched on every later
run, and a changed model or data file named before any training."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from open_instruct.errors import UserError
from open_instruct.tiny import save_tiny_checkpoint
from replication.inputs import InputsChanged, check_unchanged, fingerprint, tensors_digest


@pytest.fixture
def inputs(tmp_path):
    model = save_tiny_checkpoint(tmp_path / "model", "llama")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "eins"}\n')
    (data / "heldout.jsonl").write_text('{"text": "zwei"}\n')
    return {"model": model, "train_file": data / "train.jsonl", "heldout_dir": data,
            "table": tmp_path / "results" / "pilot" / "runs.csv"}


def test_first_run_records_and_later_runs_match(inputs):
    line = check_unchanged(inputs, "loss", rows=3)
    assert "recorded" in line and "the 3 rows already in the table predate it" in line
    recorded = json.loads((inputs["table"].parent / "inputs.json").read_text())["sha256"]
    assert recorded == fingerprint(inputs, "loss")
    assert set(recorded) == {"model tensors", "train_file", "held-out heldout.jsonl"}
    assert "inputs match" in check_unchanged(inputs, "loss", rows=3)


@pytest.mark.parametrize("change, named", [
    (lambda p: p["train_file"].write_text('{"text": "drei"}\n'), "train_file"),
    (lambda p: (p["heldout_dir"] / "heldout.jsonl").write_text('{"text": "vier"}\n'), "held-out heldout.jsonl"),
])
def test_a_changed_data_file_is_named(inputs, change, named):
    check_unchanged(inputs, "loss", rows=0)
    saved = (inputs["table"].parent / "inputs.json").read_text()
    change(inputs)
    with pytest.raises(InputsChanged, match=f"^the {named} differs from the one the rows of .*--results_dir"):
        check_unchanged(inputs, "loss", rows=1)
    assert (inputs["table"].parent / "inputs.json").read_text() == saved  # the record is never rewritten


def test_model_fingerprint_follows_the_tensors_not_the_file(inputs):
    path = inputs["model"] / "model.safetensors"
    before = tensors_digest(inputs["model"])
    tensors = load_file(path)
    # the same tensors, written in another order with other metadata: the same fingerprint
    save_file(dict(reversed(list(tensors.items()))), path, metadata={"format": "pt", "note": "re-converted"})
    assert tensors_digest(inputs["model"]) == before
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += torch.finfo(tensors[name].dtype).eps * 4 * (1 + tensors[name].view(-1)[0].abs())
    save_file(tensors, path, metadata={"format": "pt"})
    assert tensors_digest(inputs["model"]) != before


def test_a_model_converted_to_another_dtype_is_named(inputs):
    check_unchanged(inputs, "loss", rows=0)
    path = inputs["model"] / "model.safetensors"
    tensors = load_file(path)
    tensors = {k: v.to(torch.bfloat16) for k, v in tensors.items()}  # e.g. a checkpoint converted to bf16
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(InputsChanged, match="^the model tensors differs"):
        check_unchanged(inputs, "loss", rows=1)


def test_a_fingerprint_added_later_is_recorded_and_a_damaged_record_is_refused(inputs):
    record = inputs["table"].parent / "inputs.json"
    record.parent.mkdir(parents=True)
    full = fingerprint(inputs, "loss")
    record.write_text(json.dumps({"sha256": {"train_file": full["train_file"]}}))
    assert "lacks" in check_unchanged(inputs, "loss", rows=1, record=False)
    assert json.loads(record.read_text())["sha256"] == {"train_file": full["train_file"]}
    assert "added" in check_unchanged(inputs, "loss", rows=1)
    assert json.loads(record.read_text())["sha256"] == full
    record.write_text("{not json")
    with pytest.raises(UserError, match="inputs.json is damaged .*restore it from git"):
        check_unchanged(inputs, "loss", rows=1)
    assert record.read_text() == "{not json"
