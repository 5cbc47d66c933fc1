#!/usr/bin/env python3
"""Builds the golden test models: tiny random-weight Hugging Face model folders
of each supported family, with tokenizers trained on the haystack text, and the
outputs transformers computes for them (fp32, eager attention) as the oracle.

    python3 tools/make_golden_models.py --haystack ../shared/data/pg_essays \
        --out tests/fixtures/golden

Each folder gets the usual HF files plus golden.json (prompt ids, greedy ids)
and golden_logits.safetensors (logits of every prompt position, float32).
What each model covers:
  llama-gqa-llama3rope : LlamaForCausalLM, GQA 4/2, head_dim 64, llama3 rope
                         scaling, BF16, sharded safetensors, byte-level BPE
                         (Llama-3 style)
  mistral-headdim-yarn : MistralForCausalLM, explicit head_dim 128 != 128/4,
                         GQA 4/1, yarn rope, sliding window 24, F32,
                         sentencepiece tokenizer.model
  qwen2-bias-tied      : Qwen2ForCausalLM, q/k/v bias, tied embeddings,
                         legacy rope_scaling {"type": "linear"}, F16,
                         byte-level BPE with NFC (Qwen2 style)
"""
import argparse
import json
import os
import pathlib
import shutil
import tempfile

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
import sentencepiece as spm
import transformers

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}")

PROMPT_TEXT = ("The most important thing is to be working on something you care about. "
               "Here's the 3rd point: 1234567 apples, naïve café, 東京!")


def haystack_texts(d):
    files = sorted(pathlib.Path(d).glob("*.txt"))
    if not files:
        raise SystemExit(f"no .txt files in {d}")
    return [f.read_text(encoding="utf-8") for f in files]


def train_bytelevel(texts, pattern, specials, nfc, vocab_size):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def llama_tokenizer(texts, out):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                "<|end_header_id|>", "<|eot_id|>"]
    tok = train_bytelevel(texts, LLAMA3_PAT, specials, nfc=False, vocab_size=480)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(out / "tokenizer.json"))
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
               "chat_template": LLAMA3_TEMPLATE, "model_max_length": 2048,
               "tokenizer_class": "PreTrainedTokenizerFast"},
              open(out / "tokenizer_config.json", "w"), indent=2)
    return tok.token_to_id("<|begin_of_text|>"), [tok.token_to_id("<|eot_id|>"),
                                                   tok.token_to_id("<|end_of_text|>")]


def qwen2_tokenizer(texts, out):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_bytelevel(texts, QWEN2_PAT, specials, nfc=True, vocab_size=450)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(out / "tokenizer.json"))
    json.dump({"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "chat_template": CHATML_TEMPLATE, "model_max_length": 4096,
               "tokenizer_class": "Qwen2Tokenizer"},
              open(out / "tokenizer_config.json", "w"), indent=2)
    return -1, [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]


def mistral_tokenizer(texts, out):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = pathlib.Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(texts), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(pathlib.Path(tmp) / "sp"), vocab_size=400,
            model_type="bpe", byte_fallback=True, character_coverage=0.9995,
            user_defined_symbols=["[INST]", "[/INST]"], unk_id=0, bos_id=1, eos_id=2,
            pad_id=-1, add_dummy_prefix=True, remove_extra_whitespaces=False,
            normalization_rule_name="identity", split_digits=True, minloglevel=2)
        shutil.copy(pathlib.Path(tmp) / "sp.model", out / "tokenizer.model")
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False,
               "chat_template": MISTRAL_TEMPLATE, "model_max_length": 1024,
               "tokenizer_class": "LlamaTokenizer"},
              open(out / "tokenizer_config.json", "w"), indent=2)
    return 1, [2]


def build(name, out_root, texts, seed):
    out = out_root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # head_dim 64 or 128 everywhere: the dims the CUDA kernels support, so the
    # same folders test the GPU backend against the CPU one.
    common = dict(vocab_size=512, intermediate_size=192, num_hidden_layers=3, rms_norm_eps=1e-5)
    if name.startswith("llama"):
        bos, eos = llama_tokenizer(texts, out)
        cfg = transformers.LlamaConfig(
            **common, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=2048,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64},
            bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=False)
        cls, dtype, shard = transformers.LlamaForCausalLM, torch.bfloat16, "1MB"
    elif name.startswith("mistral"):
        bos, eos = mistral_tokenizer(texts, out)
        cfg = transformers.MistralConfig(
            **common, hidden_size=128, num_attention_heads=4, num_key_value_heads=1, head_dim=128,
            max_position_embeddings=1024, sliding_window=24,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 256},
            bos_token_id=bos, eos_token_id=eos[0], tie_word_embeddings=False)
        cls, dtype, shard = transformers.MistralForCausalLM, torch.float32, None
    else:
        bos, eos = qwen2_tokenizer(texts, out)
        cfg = transformers.Qwen2Config(
            **common, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "linear", "rope_theta": 1000000.0, "factor": 2.0},
            bos_token_id=None, eos_token_id=eos[1], tie_word_embeddings=True,
            use_sliding_window=False)
        cls, dtype, shard = transformers.Qwen2ForCausalLM, torch.float16, None

    torch.manual_seed(seed)
    model = cls(cfg).to(dtype)
    # Random init leaves norms at 1 and biases at 0: perturb them so that
    # every weight matters. Projections get std 1/sqrt(fan_in), so attention
    # scores stay O(1) as in trained models (bf16 backends are then compared
    # on a fair footing); lm_head is scaled up so greedy choices have clear
    # margins.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif n.endswith("embed_tokens.weight") and not cfg.tie_word_embeddings:
                p.copy_(torch.randn_like(p))
            elif n.endswith("embed_tokens.weight"):  # tied: it is the lm_head too
                p.copy_(4.0 / p.shape[1] ** 0.5 * torch.randn_like(p))
            elif n.startswith("lm_head"):
                p.copy_(4.0 / p.shape[1] ** 0.5 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[1] ** 0.5)
    model.save_pretrained(out, max_shard_size=shard or "1GB")
    json.dump({"bos_token_id": bos if bos >= 0 else None, "eos_token_id": eos,
               "do_sample": False}, open(out / "generation_config.json", "w"), indent=2)
    if name.startswith("qwen2"):
        # The legacy spelling users meet in older Qwen2 checkpoints.
        c = json.load(open(out / "config.json"))
        rp = c.pop("rope_parameters")
        c["rope_theta"] = rp["rope_theta"]
        c["rope_scaling"] = {"type": "linear", "factor": rp["factor"]}
        json.dump(c, open(out / "config.json", "w"), indent=2)

    # The oracle: reload exactly what we wrote, compute in float32.
    ref = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    if (out / "tokenizer.model").exists():
        # The sentencepiece library is the reference for tokenizer.model:
        # transformers 5 converts it to a tokenizers BPE that can differ (it
        # drops a lone leading "▁" piece that sentencepiece emits).
        sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
        prompt = [bos] + sp.encode(PROMPT_TEXT)
    else:
        prompt = transformers.AutoTokenizer.from_pretrained(out)(PROMPT_TEXT)["input_ids"]
    with torch.no_grad():
        x = torch.tensor([prompt])
        outp = ref(x, use_cache=True)
        logits = outp.logits[0].float().contiguous()
        past = outp.past_key_values
        step_logits = [logits[-1]]
        greedy = [int(logits[-1].argmax())]
        for _ in range(31):
            o = ref(torch.tensor([[greedy[-1]]]), past_key_values=past, use_cache=True)
            past = o.past_key_values
            step_logits.append(o.logits[0, -1].float())
            greedy.append(int(step_logits[-1].argmax()))
    # A greedy step whose top two logits nearly tie would make the exact-token
    # check depend on rounding; report the smallest margin so that it is seen.
    top2 = torch.stack(step_logits).topk(2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    save_file({"logits": logits}, str(out / "golden_logits.safetensors"))
    json.dump({"prompt_text": PROMPT_TEXT, "prompt_ids": prompt, "greedy_ids": greedy,
               "smallest_greedy_margin": margin, "transformers": transformers.__version__, "torch": torch.__version__},
              open(out / "golden.json", "w"), indent=1)
    print(f"{name}: {len(prompt)} prompt tokens, logits std {float(logits.std()):.2f}, "
          f"smallest greedy margin {margin:.2e}, greedy {greedy[:10]}...")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--haystack", required=True, help="folder of .txt files (pg_essays)")
    ap.add_argument("--out", default="tests/fixtures/golden")
    a = ap.parse_args()
    texts = haystack_texts(a.haystack)
    out = pathlib.Path(a.out)
    for i, name in enumerate(["llama-gqa-llama3rope", "mistral-headdim-yarn", "qwen2-bias-tied"]):
        build(name, out, texts, seed=1234 + i)


if __name__ == "__main__":
    main()
