"""Label masks, token by token: the expected ids/labels are built independently from the literal text pieces."""

import copy

import pytest

from open_instruct.data import (
    IGNORE_INDEX,
    encode_with_messages_format,
    encode_with_prompt_completion_format,
)

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Finland?"},
    {"role": "assistant", "content": "Helsinki."},
]

# The Tulu rendering of CONVERSATION, split into (text, trained?) pieces. The concatenation is the literal
# expected training text; the newline after a non-final reply's eos belongs to the reply (as in the original).
TULU_PIECES = [
    ("<|system|>\nYou are terse.\n<|user|>\nCapital of France?\n<|assistant|>\n", False),
    ("Paris.</s>\n", True),
    ("<|user|>\nAnd of Finland?\n<|assistant|>\n", False),
    ("Helsinki.</s>", True),
]

CHATML_PIECES = [
    ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
     "<|im_start|>assistant\n", False),
    ("Paris.<|im_end|>", True),
    ("\n<|im_start|>user\nAnd of Finland?<|im_end|>\n<|im_start|>assistant\n", False),
    ("Helsinki.<|im_end|>", True),
    ("\n", False),
]


def expected_from_pieces(tokenizer, pieces, add_special_tokens=True):
    """(input_ids, labels) from separately tokenized pieces, checked against tokenizing the whole text."""
    full_text = "".join(text for text, _ in pieces)
    full_ids = tokenizer(full_text, add_special_tokens=add_special_tokens)["input_ids"]
    ids, labels = [], []
    for text, trained in pieces:
        piece_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece_ids
        labels += piece_ids if trained else [IGNORE_INDEX] * len(piece_ids)
    # Precondition of the construction: no BPE merge across piece boundaries for this tokenizer.
    assert ids == full_ids, "piece boundaries merge; the test conversation needs other text"
    return ids, labels


def test_tulu_two_turn_masks_exactly(tiny_tokenizer):
    ids, labels = expected_from_pieces(tiny_tokenizer, TULU_PIECES)
    out = encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, max_seq_length=512)
    assert out["input_ids"] == ids
    assert out["labels"] == labels
    assert out["attention_mask"] == [1] * len(ids)
    trained = [t for t, lab in zip(out["input_ids"], out["labels"]) if lab != IGNORE_INDEX]
    assert tiny_tokenizer.decode(trained) == "Paris.</s>\nHelsinki.</s>"
    # one eos per assistant turn, both trained
    eos_positions = [i for i, t in enumerate(out["input_ids"]) if t == tiny_tokenizer.eos_token_id]
    assert len(eos_positions) == 2 and all(out["labels"][i] == tiny_tokenizer.eos_token_id for i in eos_positions)


def test_tulu_strips_message_contents(tiny_tokenizer):
    padded = [dict(m, content=f"  {m['content']}\n ") for m in CONVERSATION]
    assert (encode_with_messages_format({"messages": padded}, tiny_tokenizer, 512)
            == encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, 512))


def test_tulu_truncation_at_every_length(tiny_tokenizer):
    ids, labels = expected_from_pieces(tiny_tokenizer, TULU_PIECES)
    for max_len in range(1, len(ids) + 3):
        out = encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, max_seq_length=max_len)
        assert out["input_ids"] == ids[:max_len], max_len
        assert out["labels"] == labels[:max_len], max_len
    short = encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, max_seq_length=10)
    assert all(lab == IGNORE_INDEX for lab in short["labels"])  # nothing left to train: prepare_datasets drops it


def test_tulu_user_last_is_fully_masked(tiny_tokenizer):
    out = encode_with_messages_format({"messages": CONVERSATION[:4]}, tiny_tokenizer, 512)
    ids, labels = expected_from_pieces(tiny_tokenizer, [TULU_PIECES[0], TULU_PIECES[1],
                                                        ("<|user|>\nAnd of Finland?", False)])
    assert out["input_ids"] == ids and out["labels"] == labels


def test_tulu_rejects_bad_role_and_empty(tiny_tokenizer):
    with pytest.raises(ValueError, match="role"):
        encode_with_messages_format({"messages": [{"role": "bot", "content": "x"}]}, tiny_tokenizer, 512)
    with pytest.raises(ValueError, match="empty"):
        encode_with_messages_format({"messages": []}, tiny_tokenizer, 512)
    with pytest.raises(ValueError, match="chat_format"):
        encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, 512, chat_format="alpaca")


def test_chat_template_format_masks_exactly(tiny_tokenizer):
    ids, labels = expected_from_pieces(tiny_tokenizer, CHATML_PIECES, add_special_tokens=False)
    out = encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, 512, chat_format="tokenizer")
    assert out["input_ids"] == ids
    assert out["labels"] == labels
    out = encode_with_messages_format({"messages": CONVERSATION}, tiny_tokenizer, 20, chat_format="tokenizer")
    assert out["input_ids"] == ids[:20] and out["labels"] == labels[:20]


def test_chat_template_that_is_not_prefix_consistent_is_rejected(tiny_tokenizer):
    odd = copy.deepcopy(tiny_tokenizer)  # keep the session fixture untouched
    odd.chat_template = ("{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m['role'] }}: {{ m['content'] }}\n"
                         "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ValueError, match="prefix-consistent"):
        encode_with_messages_format({"messages": CONVERSATION}, odd, 512, chat_format="tokenizer")


@pytest.mark.parametrize("prompt, completion, text", [
    ("Q: 2+2?", "4", "Q: 2+2? 4</s>"),            # neither side has whitespace: one space is inserted
    ("Q: 2+2?\n", "4", "Q: 2+2?\n4</s>"),         # prompt ends with a newline
    ("Q: 2+2?", " 4", "Q: 2+2? 4</s>"),           # completion starts with a space
    ("Q: 2+2?\t", "4", "Q: 2+2?\t4</s>"),         # tab counts as whitespace
    ("Answer:", "\nParis", "Answer:\nParis</s>"),
])
def test_prompt_completion_space_rule_and_mask(tiny_tokenizer, prompt, completion, text):
    out = encode_with_prompt_completion_format({"prompt": prompt, "completion": completion}, tiny_tokenizer, 512)
    full = tiny_tokenizer(text)["input_ids"]
    n_prompt = len(tiny_tokenizer(prompt)["input_ids"])
    assert out["input_ids"] == full
    assert out["labels"] == [IGNORE_INDEX] * n_prompt + full[n_prompt:]
    assert out["labels"][-1] == tiny_tokenizer.eos_token_id
    assert out["attention_mask"] == [1] * len(full)


def test_prompt_completion_truncation(tiny_tokenizer):
    example = {"prompt": "The quick brown fox jumps over the lazy dog.", "completion": "Paris"}
    full = tiny_tokenizer("The quick brown fox jumps over the lazy dog. Paris</s>")["input_ids"]
    n_prompt = len(tiny_tokenizer(example["prompt"])["input_ids"])
    for max_len in (3, n_prompt, n_prompt + 1, len(full)):
        out = encode_with_prompt_completion_format(example, tiny_tokenizer, max_len)
        assert out["input_ids"] == full[:max_len]
        assert out["labels"] == ([IGNORE_INDEX] * n_prompt + full[n_prompt:])[:max_len]


def test_missing_eos_is_a_clear_error(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.eos_token = None
    with pytest.raises(ValueError, match="eos_token"):
        encode_with_prompt_completion_format({"prompt": "a", "completion": "b"}, tok, 16)
