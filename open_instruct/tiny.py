"""Tiny causal LMs and a tiny tokenizer, built in-process in seconds with no network.

Used by the tests and by the reduced demo pipeline. Each builder returns real Hugging Face objects that
save and reload through ``AutoModelForCausalLM`` / ``AutoTokenizer`` like any checkpoint.

    python -m open_instruct.tiny --arch llama --out /tmp/tiny-llama   # writes a checkpoint directory
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

# One configuration per architecture, deliberately of different widths, depths and head layouts.
# llama: grouped-query attention (4 query heads, 2 KV heads); mistral: GQA with sliding window config;
# qwen2: q/k/v biases, 3 layers.
TINY_ARCHS: dict[str, dict] = {
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2),
    "mistral": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1),
    "qwen2": dict(hidden_size=32, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2),
}

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is the capital of France?\nAnswer: Paris",
    "The following are multiple choice questions (with answers) about high school physics.",
    "A. one\nB. two\nC. three\nD. four\nAnswer: The answer is B",
    "<|user|>\nTranslate to French: hello\n<|assistant|>\nbonjour",
    "Passage: Helsinki is the capital of Finland.\nQuestion: What is the capital of Finland?\nAnswer: Helsinki",
    "Definition: Given a sentence, reverse the order of its words. Input: a b c Output: c b a",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 and symbols , . ; : ! ? ( ) [ ] { } - + = * / %",
]

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]


def build_tiny_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer trained on a few lines: encodes any text (every byte is in the alphabet)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(arch: str = "llama", vocab_size: int | None = None, seed: int = 0, tokenizer=None, **overrides):
    """A randomly initialised causal LM of the given architecture (``llama``, ``mistral`` or ``qwen2``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {sorted(TINY_ARCHS)}")
    kw = dict(TINY_ARCHS[arch], tie_word_embeddings=False)
    kw.update(overrides)
    if tokenizer is not None:
        vocab_size = vocab_size or len(tokenizer)
        kw.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    config = AutoConfig.for_model(arch, vocab_size=vocab_size or 384, max_position_embeddings=2048, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model



def build_tiny_gpt2(seed: int = 0):
    """A tiny GPT-2 (2 layers, width 32, vocabulary 128): its projections are ``Conv1D``, weights stored (in, out)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64)).eval()

def save_tiny_checkpoint(out_dir: str | Path, arch: str = "llama", seed: int = 0, **overrides) -> Path:
    """Write a tokenizer + model checkpoint directory, loadable with ``from_pretrained``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tiny_tokenizer()
    model = build_tiny_model(arch, tokenizer=tok, seed=seed, **overrides)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="llama", choices=sorted(TINY_ARCHS))
    ap.add_argument("--out", required=True, help="directory to write the checkpoint to")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(save_tiny_checkpoint(args.out, args.arch, args.seed))


if __name__ == "__main__":
    main()
