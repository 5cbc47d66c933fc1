#!/usr/bin/env python3
"""Converts a llama-architecture GGUF file into a Hugging Face model folder
that tsa (and transformers) load directly: config.json, generation_config.json,
model.safetensors (every tensor dequantized exactly to F32), tokenizer.json and
tokenizer_config.json (from the GGUF's tokenizer keys, see gguf_tokenizer.py).

    python3 tools/gguf_to_hf.py MODEL.gguf OUT_DIR

llama.cpp stores Q and K projections with the rows of each head permuted for
its interleaved RoPE; they are permuted back to HF's rotate-half layout here.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import gguf_tokenizer  # noqa: E402

# GGUF tensor name (per layer, after "blk.N.") -> HF name (after "model.layers.N.")
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def unpermute(w, n_head):
    """Inverse of llama.cpp's convert permute: rows (head, 2, half) -> (head, half, 2)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def tensor_f32(t):
    # GGUF shapes are listed fastest-varying first; numpy wants the reverse.
    shape = tuple(int(d) for d in reversed(t.shape))
    data = dequantize(t.data, t.tensor_type)
    return np.ascontiguousarray(data.reshape(shape).astype(np.float32))


def convert(gguf_path, out_dir):
    r = GGUFReader(gguf_path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"{gguf_path}: architecture {arch!r} is not supported (llama only)")
    p = f"{arch}."
    n_head = int(field(r, p + "attention.head_count"))
    n_kv = int(field(r, p + "attention.head_count_kv", n_head))
    hidden = int(field(r, p + "embedding_length"))
    head_dim = int(field(r, p + "attention.key_length", hidden // n_head))

    tensors = {}
    for t in r.tensors:
        name = t.name
        if name in GLOBAL_NAMES:
            hf = GLOBAL_NAMES[name]
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in LAYER_NAMES:
                raise SystemExit(f"{gguf_path}: unexpected tensor {name}")
            hf = f"model.layers.{layer}.{LAYER_NAMES[rest]}"
        elif name == "rope_freqs.weight":
            raise SystemExit(f"{gguf_path}: rope_freqs tensors are not supported")
        else:
            raise SystemExit(f"{gguf_path}: unexpected tensor {name}")
        w = tensor_f32(t)
        if rest_is(name, "attn_q.weight"):
            w = unpermute(w, n_head)
        elif rest_is(name, "attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf] = w
    tied = "lm_head.weight" not in tensors

    vocab = len(field(r, "tokenizer.ggml.tokens"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(field(r, p + "vocab_size", vocab)),
        "hidden_size": hidden,
        "intermediate_size": int(field(r, p + "feed_forward_length")),
        "num_hidden_layers": int(field(r, p + "block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "rms_norm_eps": float(field(r, p + "attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(field(r, p + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": int(field(r, p + "context_length")),
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "bos_token_id": field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": field(r, "tokenizer.ggml.eos_token_id"),
        "torch_dtype": "float32",
    }
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json.dump(config, open(out / "config.json", "w"), indent=2)
    json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
              open(out / "generation_config.json", "w"), indent=2)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    gguf_tokenizer.convert(gguf_path, out)
    print(f"{out}: {len(tensors)} tensors, {sum(v.size for v in tensors.values())/1e6:.1f}M "
          f"parameters, tied embeddings: {tied}")


def rest_is(name, suffix):
    return name.startswith("blk.") and name.split(".", 2)[2] == suffix


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out_dir")
    a = ap.parse_args()
    convert(a.gguf, a.out_dir)


if __name__ == "__main__":
    main()
