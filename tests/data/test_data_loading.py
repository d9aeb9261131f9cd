"""load_jsonl_examples: every malformed line is reported with the file and its 1-based line number."""

import json

import pytest

from open_instruct.data import load_jsonl_examples

GOOD_MESSAGES = {"dataset": "demo", "id": "demo_0",
                 "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
GOOD_PC = {"prompt": "2+2=", "completion": "4"}


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_valid_file_with_both_formats_and_blank_lines(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [GOOD_MESSAGES, "", GOOD_PC, "   "])
    examples = load_jsonl_examples(path)
    assert examples == [GOOD_MESSAGES, GOOD_PC]


def test_json_extension_and_json_array(tmp_path):
    assert load_jsonl_examples(write_lines(tmp_path / "train.json", [GOOD_PC])) == [GOOD_PC]
    arr = tmp_path / "array.json"
    arr.write_text(json.dumps([GOOD_PC, GOOD_MESSAGES], indent=2))
    assert load_jsonl_examples(arr) == [GOOD_PC, GOOD_MESSAGES]
    arr.write_text(json.dumps([GOOD_PC, {"prompt": 1, "completion": "x"}]))
    with pytest.raises(ValueError, match="record 2"):
        load_jsonl_examples(arr)


def test_bad_json_on_line_3(tmp_path):
    path = write_lines(tmp_path / "my_train.jsonl", [GOOD_PC, GOOD_MESSAGES, '{"prompt": "a", "completion": ', GOOD_PC])
    with pytest.raises(ValueError) as err:
        load_jsonl_examples(path)
    assert "my_train.jsonl" in str(err.value) and "line 3" in str(err.value) and "invalid JSON" in str(err.value)


@pytest.mark.parametrize("record, problem", [
    ({"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
    ({"messages": [{"role": "user", "content": 5}]}, "content must be a string"),
    ({"messages": [{"role": "user"}]}, "missing 'content'"),
    ({"messages": []}, "'messages' is empty"),
    ({"messages": "hello"}, "must be a list"),
    ({"messages": ["hello"]}, "must be an object"),
    ({"prompt": "a"}, "missing 'completion'"),
    ({"prompt": "a", "completion": None}, "'completion' must be a string"),
    ({"text": "a"}, "--train_format text"),  # a plain-text record: the message names the text path
    ({"prompt": "a", "completion": "b", "messages": []}, "both"),
    (["not", "an", "object"], "expected a JSON object"),
])
def test_malformed_line_names_file_line_and_problem(tmp_path, record, problem):
    path = write_lines(tmp_path / "data.jsonl", [GOOD_PC, record])
    with pytest.raises(ValueError) as err:
        load_jsonl_examples(path)
    message = str(err.value)
    assert str(path) in message and "line 2" in message and problem in message


def test_extension_missing_file_and_empty_file(tmp_path):
    txt = write_lines(tmp_path / "train.txt", [GOOD_PC])
    with pytest.raises(ValueError, match=r"\.json or \.jsonl"):
        load_jsonl_examples(txt)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_jsonl_examples(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no examples"):
        load_jsonl_examples(empty)
