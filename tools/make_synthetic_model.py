#!/usr/bin/env python3
"""Writes a Hugging Face model folder with random BF16 weights for a given
config.json (e.g. bench/shapes/llama-3.1-8b/config.json), sharded like real
checkpoints, so loading, memory planning and speed can be tested at real
sizes without downloading a model. Optionally copies tokenizer files.

    python3 tools/make_synthetic_model.py bench/shapes/llama-3.1-8b/config.json OUT_DIR \
        [--tokenizer-from DIR] [--shard-gb 5] [--seed 0]

Needs only numpy. Weights are N(0, 0.5/sqrt(fan_in)) and norms near 1, so
activations stay finite over many layers. For shapes too large for the disk,
tsa-bench --random makes the same kind of weights directly on the GPU.
"""
import argparse
import json
import pathlib
import shutil
import struct

import numpy as np


def tensor_specs(c):
    H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    nh = c["num_attention_heads"]
    nkv = c.get("num_key_value_heads") or nh
    hd = c.get("head_dim") or H // nh
    arch = c["architectures"][0]
    bias = arch == "Qwen2ForCausalLM" or (arch == "LlamaForCausalLM" and c.get("attention_bias"))
    specs = [("model.embed_tokens.weight", (V, H), H)]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [(p + "input_layernorm.weight", (H,), None),
                  (p + "self_attn.q_proj.weight", (nh * hd, H), H),
                  (p + "self_attn.k_proj.weight", (nkv * hd, H), H),
                  (p + "self_attn.v_proj.weight", (nkv * hd, H), H),
                  (p + "self_attn.o_proj.weight", (H, nh * hd), nh * hd),
                  (p + "post_attention_layernorm.weight", (H,), None),
                  (p + "mlp.gate_proj.weight", (I, H), H),
                  (p + "mlp.up_proj.weight", (I, H), H),
                  (p + "mlp.down_proj.weight", (H, I), I)]
        if bias:
            specs += [(p + f"self_attn.{x}_proj.bias", (n * hd,), 0)
                      for x, n in (("q", nh), ("k", nkv), ("v", nkv))]
    specs.append(("model.norm.weight", (H,), None))
    if not c.get("tie_word_embeddings", False):
        specs.append(("lm_head.weight", (V, H), H))
    return specs


def bf16_bytes(x):
    """float32 array -> bf16 bytes (round to nearest even)."""
    u = x.astype(np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


def write_shard(path, tensors):
    header, offset = {}, 0
    for name, shape, data in tensors:
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, data in tensors:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("out_dir")
    ap.add_argument("--tokenizer-from", help="copy tokenizer files from this model folder")
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    c = json.load(open(a.config))
    out = pathlib.Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    limit = int(a.shard_gb * 2**30)
    shards, cur, cur_bytes = [], [], 0
    for name, shape, fan_in in tensor_specs(c):
        if fan_in is None:
            x = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif fan_in == 0:
            x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        else:
            x = (0.5 / np.sqrt(fan_in)) * rng.standard_normal(shape, dtype=np.float32)
        data = bf16_bytes(x)
        if cur and cur_bytes + len(data) > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape, data))
        cur_bytes += len(data)
    shards.append(cur)
    weight_map = {}
    for i, tensors in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(out / fname, tensors)
        weight_map.update({name: fname for name, _, _ in tensors})
    total = sum(len(d) for s in shards for _, _, d in s)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(out / "model.safetensors.index.json", "w"), indent=2)
    json.dump(c, open(out / "config.json", "w"), indent=2)
    if a.tokenizer_from:
        for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                  "generation_config.json"):
            src = pathlib.Path(a.tokenizer_from) / f
            if src.exists():
                shutil.copy(src, out / f)
    print(f"{out}: {len(weight_map)} tensors in {len(shards)} shards, {total / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
