#!/usr/bin/env python3
"""Build tests/fixtures/tokenizers.tar.xz: real tokenizer folders plus what
Hugging Face (and sentencepiece) make of a corpus of test texts.

    python3 tools/make_tokenizer_fixtures.py /work/vocab [--out tests/fixtures/tokenizers.tar.xz]

`/work/vocab` holds llama.cpp's ggml-vocab-{llama-bpe,qwen2,gpt-2,llama-spm}.gguf
(and their .inp test texts, which are added to the corpus). Each GGUF becomes a
tokenizer folder through tools/gguf_tokenizer.py; then
  - `tokenizers` (for tokenizer.json) or the `sentencepiece` library (for a
    folder with only tokenizer.model) encodes every text of
    tests/fixtures/tokenizer_corpus.json with and without special tokens and
    decodes the ids again (skip_special true and false),
  - random id sequences (byte tokens that may not form UTF-8, special tokens)
    are decoded as a check on decoding alone,
  - transformers' apply_chat_template renders a few conversations with each
    template in tools/chat_templates/.
Everything lands in tokenizers/<name>/{tokenizer.json|tokenizer.model,
tokenizer_config.json, expected.json} and tokenizers/chat.json inside the archive.
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import re
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gguf_tokenizer  # noqa: E402

# name -> (gguf file, --pre override, spm style, chat template for tokenizer_config.json)
FOLDERS = {
    "llama3": ("ggml-vocab-llama-bpe.gguf", None, "legacy", "llama3_1.jinja"),
    "qwen2": ("ggml-vocab-qwen2.gguf", None, "legacy", None),  # template from the GGUF
    "gpt2": ("ggml-vocab-gpt-2.gguf", None, "legacy", None),
    "smollm": ("ggml-vocab-gpt-2.gguf", "smollm", "legacy", "chatml_smollm2.jinja"),
    "llama2": ("ggml-vocab-llama-spm.gguf", None, "legacy", "llama2.jinja"),
    "mistral": ("ggml-vocab-llama-spm.gguf", None, "metaspace", "mistral_v0_3.jinja"),
    "llama2-spm": ("ggml-vocab-llama-spm.gguf", None, "legacy", "llama2.jinja"),
}
SPM_ONLY = {"llama2-spm"}  # keeps tokenizer.model only, so the sentencepiece path is used

# Synthetic variants of a real tokenizer.json that exercise options no real
# folder above uses: name -> (base folder, function editing the JSON).


def with_added_tokens(tj: dict) -> None:
    """Added tokens with lstrip / rstrip / single_word / normalized, special or not."""
    n = max(t["id"] for t in tj["added_tokens"]) + 1
    n = max(n, max(tj["model"]["vocab"].values()) + 1)
    extra = [("<mask>", dict(lstrip=True, special=True)), ("[SEP]", dict(rstrip=True, special=True)),
             ("hello world", dict(normalized=True)), ("catz", dict(single_word=True)),
             ("<tool>", dict()), ("</tool>", dict(lstrip=True, rstrip=True))]
    for i, (content, flags) in enumerate(extra):
        assert content not in tj["model"]["vocab"], content  # HF would take the vocab's id
        tok = gguf_tokenizer.added_token(n + i, content, special=flags.pop("special", False))
        tok.update(flags)
        tj["added_tokens"].append(tok)


def with_split_variety(tj: dict) -> None:
    """Normalizers and Split behaviours beyond the real byte-level tokenizers."""
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"},
        {"type": "Replace", "pattern": {"Regex": "[0-9]{4,}"}, "content": "<num>"},
        {"type": "Strip", "strip_left": True, "strip_right": False}]}
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": ","}, "behavior": "Removed", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[.!?]"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\p{Lu}+"}, "behavior": "Contiguous", "invert": True},
        {"type": "Digits", "individual_digits": False},
        gguf_tokenizer.byte_level(True, False, False)]}


def with_metaspace_split(tj: dict) -> None:
    """Metaspace that splits on the replacement and prepends always."""
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                           "split": True}
    tj["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                     "split": True}


VARIANTS = {
    "llama2-added": ("llama2", with_added_tokens),
    "gpt2-split": ("gpt2", with_split_variety),
    "llama2-metaspace-split": ("llama2", with_metaspace_split),
}

# (template file or "gguf", tokenizer folder whose bos/eos the template writes)
CHAT_TEMPLATES = [
    ("llama3.jinja", "llama3"),
    ("llama3_1.jinja", "llama3"),
    ("llama3_2.jinja", "llama3"),
    ("gguf", "qwen2"),
    ("qwen2_5.jinja", "qwen2"),
    ("chatml_plain.jinja", "qwen2"),
    ("chatml_smollm2.jinja", "smollm"),
    ("chatml_trim.jinja", "qwen2"),
    ("mistral_v0_1.jinja", "mistral"),
    ("mistral_v0_2.jinja", "mistral"),
    ("mistral_v0_3.jinja", "mistral"),
    ("llama2.jinja", "llama2"),
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "  4  "},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": " Be brief.\n"}, {"role": "user", "content": " Tell me a joke. "},
     {"role": "assistant", "content": "Why did the chicken cross the road?"},
     {"role": "user", "content": "Why?\n\n"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    [{"role": "user", "content": "Ünïcödé 日本語 🦙\twith\ttabs"}],
]

# The Llama-3.2 template asks for today's date; the C++ test substitutes it.
DATE_PLACEHOLDER = "__DATE__"


def read_inp_texts(vocab_dir: Path) -> list[str]:
    """llama.cpp's vocab test texts (the same file ships for every vocab)."""
    texts: list[str] = []
    for inp in sorted(vocab_dir.glob("*.inp")):
        for t in inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n"):
            if t not in texts:
                texts.append(t)
    return texts


def fuzz_texts(n: int = 150, seed: int = 1234) -> list[str]:
    """Random mixes of fragments that stress the regexes and token matching:
    whitespace runs before letters, apostrophes, digits, marks, specials."""
    frags = [" ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "a", "Z", "hello", "WORLD", "'s", "'LL",
             "'re", "'", "\"", "0", "12", "3456", "78901", ".", ",", "!?", "--", "_", "\u00e9", "e\u0301",
             "\u00c5", "\u65e5\u672c", "\u0416\u0436", "\u05e9", "\u0e2a", "\U0001f999", "\U0001f468\u200d\U0001f469",
             "\u2581", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|eot_id|>", "<mask>", "[SEP]",
             "catz", "hello world", "<tool>", "\u00bd", "\u2167", "\ufb01", "x\u00b2", "\u0660\u0661"]
    rng = random.Random(seed)
    return ["".join(rng.choice(frags) for _ in range(rng.randint(1, 14))) for _ in range(n)]


def long_text(texts: list[str], target: int = 24000) -> str:
    parts, n, i = [], 0, 0
    while n < target:
        t = texts[i % len(texts)]
        parts.append(t)
        n += len(t) + 1
        i += 1
    return "\n".join(parts)


def hf_cases(folder: Path, texts: list[str]) -> dict:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_sp = tok.encode(text, add_special_tokens=True).ids
        cases.append({"text": text, "ids": ids, "ids_special": ids_sp,
                      "decode": tok.decode(ids_sp, skip_special_tokens=True),
                      "decode_special": tok.decode(ids_sp, skip_special_tokens=False)})
    rng = random.Random(folder.name)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    special = sorted(tok.get_added_tokens_decoder().keys())
    byte_ids = sorted({tok.token_to_id(s) for s in byte_token_strings(tok)} - {None})
    random_decode = []
    for _ in range(40):
        ids = [pick_id(rng, vocab_size, byte_ids, special) for _ in range(rng.randint(1, 12))]
        random_decode.append({"ids": ids, "decode": tok.decode(ids, skip_special_tokens=True),
                              "decode_special": tok.decode(ids, skip_special_tokens=False)})
    return {"kind": "tokenizer.json", "vocab_size": vocab_size, "cases": cases,
            "random_decode": random_decode}


def byte_token_strings(tok) -> list[str]:
    """Tokens that stand for one byte: <0xAB> (byte fallback) or byte-level chars."""
    vocab = tok.get_vocab(with_added_tokens=False)
    fallback = [f"<0x{b:02X}>" for b in range(256)]
    if any(s in vocab for s in fallback):
        return fallback
    return [bytes_to_unicode()[b] for b in range(256)]


def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def pick_id(rng: random.Random, vocab_size: int, byte_ids: list[int], special: list[int]) -> int:
    r = rng.random()
    if r < 0.45 and byte_ids:
        return rng.choice(byte_ids)
    if r < 0.55 and special:
        return rng.choice(special)
    return rng.randrange(vocab_size)


def split_specials(text: str, specials: list[str]) -> list[tuple[bool, str]]:
    """Leftmost-longest split of `text` on the special strings."""
    if not specials:
        return [(False, text)]
    pattern = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
    out, pos = [], 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((False, text[pos:m.start()]))
        out.append((True, m.group()))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return out


def spm_cases(folder: Path, texts: list[str]) -> dict:
    """sentencepiece's own encoding; special-token strings in the text are cut out
    first and each remaining piece is encoded on its own (as transformers' slow
    Llama tokenizer with legacy=True does)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    specials = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
    cases = []
    for text in texts:
        ids = []
        for is_special, piece in split_specials(text, specials):
            ids += [sp.piece_to_id(piece)] if is_special else sp.encode(piece)
        ids_sp = ([sp.bos_id()] if config.get("add_bos_token") else []) + ids + \
                 ([sp.eos_id()] if config.get("add_eos_token") else [])
        cases.append({"text": text, "ids": ids, "ids_special": ids_sp, "decode": sp.decode(ids_sp)})
    rng = random.Random(folder.name)
    byte_ids = [i for i in range(sp.get_piece_size()) if sp.is_byte(i)]
    special = [i for i in range(sp.get_piece_size()) if sp.is_control(i)]
    random_decode = []
    for _ in range(40):
        ids = [pick_id(rng, sp.get_piece_size(), byte_ids, special) for _ in range(rng.randint(1, 12))]
        random_decode.append({"ids": ids, "decode": sp.decode(ids)})
    return {"kind": "tokenizer.model", "vocab_size": sp.get_piece_size(), "cases": cases,
            "random_decode": random_decode}


def read_template(name: str, folder: Path) -> str:
    if name == "gguf":
        return json.loads((folder / "tokenizer_config.json").read_text())["chat_template"]
    return (ROOT / "tools" / "chat_templates" / name).read_text(encoding="utf-8").rstrip("\n")


def chat_cases(base: Path) -> list[dict]:
    from transformers import PreTrainedTokenizerFast

    out = []
    for name, folder_name in CHAT_TEMPLATES:
        folder = base / folder_name
        config = json.loads((folder / "tokenizer_config.json").read_text())
        bos = config.get("bos_token")
        bos = bos["content"] if isinstance(bos, dict) else bos
        tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token=bos,
                                      eos_token=config.get("eos_token"))
        template = read_template(name, folder)
        renders = []
        for messages in CONVERSATIONS:
            for gen in (True, False):
                kwargs = {"date_string": DATE_PLACEHOLDER} if "strftime_now" in template else {}
                try:
                    text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                   add_generation_prompt=gen, **kwargs)
                    renders.append({"messages": messages, "add_generation_prompt": gen, "text": text})
                except Exception as e:  # the template raises: we must throw as well
                    renders.append({"messages": messages, "add_generation_prompt": gen, "error": str(e)})
        out.append({"template_name": name, "tokenizer": folder_name, "template": template,
                    "date_placeholder": DATE_PLACEHOLDER if "strftime_now" in template else "",
                    "renders": renders})
    return out


def build(vocab_dir: Path, work: Path, texts: list[str]) -> None:
    base = work / "tokenizers"
    for name, (gguf_file, pre, style, template) in FOLDERS.items():
        chat = read_template(template, base) if template else None
        folder = gguf_tokenizer.convert(vocab_dir / gguf_file, base / name, pre, style, chat)
        if name in SPM_ONLY:
            (folder / "tokenizer.json").unlink()
            expected = spm_cases(folder, texts)
        else:
            (folder / "tokenizer.model").unlink(missing_ok=True)
            expected = hf_cases(folder, texts)
        (folder / "expected.json").write_text(json.dumps(expected, ensure_ascii=False), encoding="utf-8")
        print(f"{name}: {len(expected['cases'])} texts", file=sys.stderr)
    for name, (base_name, edit) in VARIANTS.items():
        folder = base / name
        folder.mkdir()
        tj = json.loads((base / base_name / "tokenizer.json").read_text(encoding="utf-8"))
        edit(tj)
        (folder / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
        config = (base / base_name / "tokenizer_config.json").read_text(encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(config, encoding="utf-8")
        expected = hf_cases(folder, texts)
        (folder / "expected.json").write_text(json.dumps(expected, ensure_ascii=False), encoding="utf-8")
        print(f"{name}: {len(expected['cases'])} texts", file=sys.stderr)
    (base / "chat.json").write_text(json.dumps(chat_cases(base), ensure_ascii=False, indent=1),
                                    encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("vocab_dir", type=Path, help="folder with llama.cpp's ggml-vocab-*.gguf files")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "tokenizers.tar.xz")
    ap.add_argument("--corpus", type=Path, default=ROOT / "tests" / "fixtures" / "tokenizer_corpus.json")
    args = ap.parse_args()

    texts = json.loads(args.corpus.read_text(encoding="utf-8"))["texts"]
    texts += [t for t in read_inp_texts(args.vocab_dir) if t not in texts]
    texts += [t for t in fuzz_texts() if t not in texts]
    texts.append(long_text(texts))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(args.vocab_dir, work, texts)
        with lzma.open(args.out, "wb", preset=9 | lzma.PRESET_EXTREME) as xz:
            with tarfile.open(fileobj=xz, mode="w") as tar:
                for path in sorted((work / "tokenizers").rglob("*")):
                    info = tar.gettarinfo(str(path), arcname=str(path.relative_to(work)))
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = 0
                    if path.is_file():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
