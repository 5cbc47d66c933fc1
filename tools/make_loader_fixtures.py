#!/usr/bin/env python3
"""Writes the tiny checkpoints in tests/fixtures/loader/ with transformers'
own save_pretrained, so the C++ loader is tested against files written by the
reference writer (config.json as transformers v5 spells it, safetensors
headers, the shard index), not only by our test writer.

Each folder also gets expected.json: the first values of a few tensors (as
float) for the C++ test to compare with what it reads through mmap.

Usage: python3 tools/make_loader_fixtures.py [out_dir]
"""
import json
import os
import sys

import torch
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

PROBES = ["model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.weight",
          "model.norm.weight"]


def save(model, out, name, dtype, **kwargs):
    path = os.path.join(out, name)
    model = model.to(dtype)
    with torch.no_grad():  # norms are all ones at init; make them distinct
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    model.save_pretrained(path, **kwargs)
    sd = model.state_dict()
    probes = PROBES + [k for k in ("model.layers.0.self_attn.q_proj.bias",) if k in sd]
    expected = {k: sd[k].flatten()[:6].float().tolist() for k in probes}
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "fixtures", "loader")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)

    # Llama 3 style: GQA, llama3 RoPE, eos list, BF16, one file.
    llama = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 16},
                        bos_token_id=1, eos_token_id=[2, 3], tie_word_embeddings=False)
    save(LlamaForCausalLM(llama), out, "tiny-llama", torch.bfloat16)

    # Mistral-Nemo style: head_dim 4 != 16 / 2, a sliding window, F32.
    mistral = MistralConfig(vocab_size=32, hidden_size=16, intermediate_size=16,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                            head_dim=4, max_position_embeddings=128, sliding_window=32,
                            bos_token_id=1, eos_token_id=2)
    save(MistralForCausalLM(mistral), out, "tiny-mistral", torch.float32)

    # Qwen2: q/k/v bias, tied embeddings, F16, sharded into several files.
    qwen = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                       tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    save(Qwen2ForCausalLM(qwen), out, "tiny-qwen2-sharded", torch.float16, max_shard_size="2KB")


if __name__ == "__main__":
    main()
