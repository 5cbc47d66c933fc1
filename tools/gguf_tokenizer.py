#!/usr/bin/env python3
"""Turn the tokenizer.* keys of a GGUF file into a Hugging Face tokenizer folder.

Writes tokenizer.json (with the structure the real Hugging Face tokenizer of
that family has, chosen by `tokenizer.ggml.pre`), tokenizer_config.json (bos /
eos tokens, add_bos_token, the chat template when the GGUF has one) and, for
sentencepiece vocabularies (`tokenizer.ggml.model == "llama"`), a sentencepiece
tokenizer.model as well.

    python3 tools/gguf_tokenizer.py model.gguf out_dir [--pre NAME] [--spm-style legacy|metaspace]

`--pre` overrides tokenizer.ggml.pre (e.g. to build a SmolLM2-style tokenizer
from another byte-level vocabulary); `--spm-style` picks the tokenizer.json
layout for sentencepiece vocabularies: "legacy" is the Llama-2 export
(Prepend/Replace normalizer, ByteFallback decoder), "metaspace" the newer
Metaspace pre-tokenizer layout (Mistral, Llama-2 with legacy=False).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import gguf

# GGUF token types (llama.cpp's llama_token_type).
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer regexes of the real tokenizer.json files.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# llama.cpp pads some vocabularies to a round size with these; HF has no such tokens.
PAD_TOKEN = re.compile(r"\[PAD\d+\]")


class GGUFVocab:
    """The tokenizer.* keys of one GGUF file."""

    def __init__(self, path: str | Path):
        reader = gguf.GGUFReader(str(path))
        self.path = str(path)
        self.fields = reader.fields

    def get(self, key: str, default=None):
        field = self.fields.get(key)
        if field is None:
            return default
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            return [field.contents(i) for i in range(len(field.data))]
        return field.contents()

    @property
    def model(self) -> str:
        return self.get("tokenizer.ggml.model")

    @property
    def pre(self) -> str:
        return self.get("tokenizer.ggml.pre", "default")

    def tokens(self) -> list[str]:
        return self.get("tokenizer.ggml.tokens")

    def token_types(self) -> list[int]:
        types = self.get("tokenizer.ggml.token_type")
        return [int(t) for t in types] if types is not None else [TYPE_NORMAL] * len(self.tokens())

    def token_id(self, key: str) -> int | None:
        value = self.get(f"tokenizer.ggml.{key}_token_id")
        return int(value) if value is not None else None


def added_token(idx: int, content: str, special: bool, normalized: bool = False) -> dict:
    return {"id": idx, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


def template_processing(bos: str, bos_id: int) -> dict:
    """Post-processor that puts BOS in front of every sequence (Llama-2/3)."""
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
    }


def byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets,
            "use_regex": use_regex}


def split_regex(pattern: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def bpe_model(vocab: dict, merges: list, *, pair_form: bool, ignore_merges: bool = False,
              byte_fallback: bool = False, unk_token: str | None = None, fuse_unk: bool = False) -> dict:
    return {
        "type": "BPE", "dropout": None, "unk_token": unk_token, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": fuse_unk, "byte_fallback": byte_fallback,
        "ignore_merges": ignore_merges, "vocab": vocab,
        "merges": [list(m) for m in merges] if pair_form else [f"{a} {b}" for a, b in merges],
    }


def byte_level_tokenizer(v: GGUFVocab, pre: str) -> tuple[dict, dict]:
    """tokenizer.json + tokenizer_config.json for a byte-level BPE vocabulary."""
    tokens, types = v.tokens(), v.token_types()
    merges = [tuple(m.split(" ", 1)) for m in v.get("tokenizer.ggml.merges")]
    vocab, added = {}, []
    for i, (tok, typ) in enumerate(zip(tokens, types)):
        if typ == TYPE_USER_DEFINED and PAD_TOKEN.fullmatch(tok):
            continue
        if typ in (TYPE_CONTROL, TYPE_USER_DEFINED):
            added.append(added_token(i, tok, special=typ == TYPE_CONTROL))
        else:
            vocab[tok] = i
    bos_id, eos_id = v.token_id("bos"), v.token_id("eos")
    config = {"add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added}

    if pre == "llama-bpe":  # Llama-3.x
        # Special tokens live only in added_tokens, as in Meta's tokenizer.json.
        tj["normalizer"] = None
        tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            split_regex(LLAMA3_REGEX), byte_level(False, True, False)]}
        tj["post_processor"] = {"type": "Sequence", "processors": [
            byte_level(True, False, True), template_processing(tokens[bos_id], bos_id)]}
        tj["decoder"] = byte_level(True, True, True)
        tj["model"] = bpe_model(vocab, merges, pair_form=False, ignore_merges=True)
        config.update(add_bos_token=True, bos_token=tokens[bos_id], eos_token=tokens[eos_id])
    elif pre == "qwen2":
        tj["normalizer"] = {"type": "NFC"}
        tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            split_regex(QWEN2_REGEX), byte_level(False, False, False)]}
        tj["post_processor"] = byte_level(False, False, False)
        tj["decoder"] = byte_level(False, False, False)
        tj["model"] = bpe_model(vocab, merges, pair_form=True)
        config.update(bos_token=None, eos_token=tokens[eos_id])
    elif pre in ("gpt-2", "smollm"):
        # GPT-2 keeps its one special token in the model vocabulary too.
        for a in added:
            vocab[a["content"]] = a["id"]
            a["normalized"] = pre == "gpt-2"
        vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        bl = byte_level(False, True, True)
        tj["normalizer"] = None
        if pre == "smollm":  # SmolLM2: every digit is its own pre-token
            tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": True}, bl]}
        else:
            tj["pre_tokenizer"] = bl
        tj["post_processor"] = byte_level(True, False, True)
        tj["decoder"] = byte_level(True, True, True)
        tj["model"] = bpe_model(vocab, merges, pair_form=False)
        # GPT-2: <|endoftext|> is bos, eos and unk; SmolLM2: <|im_start|> / <|im_end|>,
        # with <|endoftext|> as unk.
        eos = tokens[eos_id]
        bos = tokens[bos_id] if bos_id is not None else eos
        unk = "<|endoftext|>" if "<|endoftext|>" in vocab else None
        config.update(bos_token=bos, eos_token=eos, unk_token=unk)
    else:
        raise ValueError(f"{v.path}: unsupported tokenizer.ggml.pre '{pre}'")
    return tj, config


def spm_pieces(v: GGUFVocab) -> list[tuple[str, float, int]]:
    tokens, types = v.tokens(), v.token_types()
    scores = v.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    return [(t, float(s), int(ty)) for t, s, ty in zip(tokens, scores, types)]


def spm_tokenizer(v: GGUFVocab, style: str) -> tuple[dict, dict]:
    """tokenizer.json (BPE with byte fallback) + tokenizer_config.json for a sentencepiece vocab."""
    from transformers.tokenization_utils_base import generate_merges

    pieces = spm_pieces(v)
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    # Merges as transformers' LlamaConverter builds them: every split of a piece
    # into two pieces, ordered by the merged piece's score.
    skip = [p for p, _, t in pieces if t in (TYPE_CONTROL, TYPE_UNKNOWN, TYPE_BYTE)]
    merges = generate_merges(vocab, {p: s for p, s, _ in pieces}, skip_tokens=skip)
    unk_id = v.token_id("unknown") if v.token_id("unknown") is not None else 0
    bos_id, eos_id = v.token_id("bos"), v.token_id("eos")
    unk, bos, eos = pieces[unk_id][0], pieces[bos_id][0], pieces[eos_id][0]
    added = [added_token(i, p, special=t == TYPE_CONTROL or i == unk_id)
             for i, (p, _, t) in enumerate(pieces) if t in (TYPE_CONTROL, TYPE_UNKNOWN, TYPE_USER_DEFINED)]
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added}
    if style == "legacy":  # Llama-2 as exported by transformers' LlamaConverter (legacy=True)
        tj["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
        tj["pre_tokenizer"] = None
        tj["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    elif style == "metaspace":  # Mistral / legacy=False exports
        tj["normalizer"] = None
        tj["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                               "split": False}
        tj["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        raise ValueError(f"unknown spm style '{style}'")
    add_bos = v.get("tokenizer.ggml.add_bos_token", True)
    add_eos = v.get("tokenizer.ggml.add_eos_token", False)
    tj["post_processor"] = template_processing(bos, bos_id) if add_bos else None
    tj["model"] = bpe_model(vocab, merges, pair_form=True, byte_fallback=True, unk_token=unk,
                            fuse_unk=True)
    config = {"add_bos_token": bool(add_bos), "add_eos_token": bool(add_eos),
              "bos_token": {"content": bos, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True},
              "eos_token": eos, "unk_token": unk, "clean_up_tokenization_spaces": False,
              "legacy": style == "legacy", "model_max_length": 4096,
              "tokenizer_class": "LlamaTokenizerFast"}
    return tj, config


def spm_model_proto(v: GGUFVocab) -> bytes:
    """A sentencepiece BPE ModelProto with byte fallback for a llama-style vocab."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    for piece, score, typ in spm_pieces(v):
        p = m.pieces.add()
        p.piece, p.score = piece, score
        p.type = {TYPE_NORMAL: p.NORMAL, TYPE_UNKNOWN: p.UNKNOWN, TYPE_CONTROL: p.CONTROL,
                  TYPE_USER_DEFINED: p.USER_DEFINED, TYPE_UNUSED: p.UNUSED, TYPE_BYTE: p.BYTE}[typ]
    ts = m.trainer_spec
    ts.model_type = ts.BPE
    ts.vocab_size = len(m.pieces)
    ts.byte_fallback = True
    ts.unk_id = v.token_id("unknown") if v.token_id("unknown") is not None else 0
    ts.bos_id = v.token_id("bos")
    ts.eos_id = v.token_id("eos")
    ts.pad_id = -1
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return m.SerializeToString()


def convert(gguf_path: str | Path, out_dir: str | Path, pre: str | None = None,
            spm_style: str = "legacy", chat_template: str | None = None) -> Path:
    """Writes the tokenizer folder for `gguf_path` into `out_dir` and returns it."""
    v = GGUFVocab(gguf_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if v.model == "gpt2":
        tj, config = byte_level_tokenizer(v, pre or v.pre)
    elif v.model == "llama":
        tj, config = spm_tokenizer(v, spm_style)
        (out / "tokenizer.model").write_bytes(spm_model_proto(v))
    else:
        raise ValueError(f"{gguf_path}: unsupported tokenizer.ggml.model '{v.model}'")
    template = chat_template if chat_template is not None else v.get("tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    (out / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False, indent=None), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2),
                                               encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", help="GGUF file with tokenizer.* keys")
    ap.add_argument("out_dir", help="folder to write tokenizer.json etc. into")
    ap.add_argument("--pre", help="override tokenizer.ggml.pre (llama-bpe, qwen2, gpt-2, smollm)")
    ap.add_argument("--spm-style", default="legacy", choices=["legacy", "metaspace"])
    args = ap.parse_args()
    print(convert(args.gguf, args.out_dir, args.pre, args.spm_style))


if __name__ == "__main__":
    main()
