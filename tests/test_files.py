"""open_instruct.files.write_jsonl_atomic: the writer of the evaluators' prediction files."""

import json

import pytest

from open_instruct.files import write_jsonl_atomic


def test_jsonl_escapes_non_ascii_only_when_asked(tmp_path):
    row = {"prediction_text": "Grüße, 東京"}
    utf8 = write_jsonl_atomic(tmp_path / "utf8.jsonl", [row])
    ascii_ = write_jsonl_atomic(tmp_path / "ascii.jsonl", [row], ensure_ascii=True)
    assert utf8.read_text(encoding="utf-8") == '{"prediction_text": "Grüße, 東京"}\n'
    assert ascii_.read_bytes() == (json.dumps(row) + "\n").encode("ascii")
    assert json.loads(ascii_.read_text()) == row


def test_a_prediction_stream_that_fails_halfway_leaves_the_earlier_file(tmp_path):
    path = write_jsonl_atomic(tmp_path / "sub" / "predictions.jsonl", [{"i": 0}])  # the folder is created

    def rows():
        yield {"i": 1}
        raise KeyboardInterrupt  # an interrupted evaluation

    with pytest.raises(KeyboardInterrupt):
        write_jsonl_atomic(path, rows(), ensure_ascii=True)
    assert path.read_text() == '{"i": 0}\n'
    assert [p.name for p in path.parent.iterdir()] == ["predictions.jsonl"]
