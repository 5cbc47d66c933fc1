#!/usr/bin/env python3
"""RoPE reference values from transformers, for tests/unit/test_rope.cpp.

For each case, builds a LlamaConfig with the given rope parameters, runs
LlamaRotaryEmbedding.forward at the listed positions (so dynamic NTK goes
through HF's dynamic_rope_update with seq_len = max(position) + 1), and
records inv_freq, attention_scaling and the first half of cos/sin (the second
half repeats it). The frequencies are also checked against a direct call of
the rope init function.

The "config" of each case is what tsa's ModelConfig holds after loading
(defaults filled in), so the C++ test maps it field by field.

    python3 tools/make_rope_fixtures.py > tests/fixtures/rope_cases.json
"""

import json
import sys

import torch
import transformers
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

# name, head_dim, rope_theta, max_position_embeddings, rope parameters (HF spelling), positions
CASES = [
    ("default_hd64", 64, 10000.0, 2048, {}, [0, 1, 2, 100, 2047]),
    ("default_hd128_theta500k", 128, 500000.0, 8192, {}, [0, 5, 8191, 100000]),
    ("default_hd80_theta1m", 80, 1000000.0, 32768, {}, [0, 3, 31999]),
    ("linear_x4", 128, 10000.0, 16384, {"rope_type": "linear", "factor": 4.0}, [0, 7, 16383]),
    ("dynamic_within_max", 64, 10000.0, 2048, {"rope_type": "dynamic", "factor": 2.0}, [0, 1, 1000]),
    ("dynamic_past_max", 64, 10000.0, 2048, {"rope_type": "dynamic", "factor": 2.0}, [0, 5, 4999]),
    ("dynamic_x4_hd128", 128, 500000.0, 4096, {"rope_type": "dynamic", "factor": 4.0},
     [0, 9, 16383]),
    ("llama3_8b", 128, 500000.0, 131072,
     {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, [0, 1, 8191, 131071]),
    ("llama3_2_x32", 64, 500000.0, 131072,
     {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}, [0, 2, 65536]),
    ("yarn_qwen_x4", 128, 1000000.0, 131072,
     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
     [0, 1, 32768, 131071]),
    ("yarn_mscale", 64, 10000.0, 163840,
     {"rope_type": "yarn", "factor": 40.0, "mscale": 0.707, "mscale_all_dim": 1.0,
      "beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": 4096},
     [0, 3, 4095, 163839]),
    ("yarn_mscale_equal", 64, 10000.0, 16384,
     {"rope_type": "yarn", "factor": 4.0, "mscale": 1.0, "mscale_all_dim": 1.0,
      "original_max_position_embeddings": 4096}, [0, 11, 16383]),
    ("yarn_attention_factor_no_truncate", 64, 10000.0, 16384,
     {"rope_type": "yarn", "factor": 8.0, "attention_factor": 0.9, "beta_fast": 16.0,
      "beta_slow": 2.0, "truncate": False, "original_max_position_embeddings": 2048},
     [0, 1, 2047, 16383]),
]


def tsa_config(head_dim, theta, max_pos, rope):
    """The ModelConfig fields the C++ test sets, with the loader's defaults."""
    return {
        "head_dim": head_dim,
        "rope_theta": theta,
        "max_position_embeddings": max_pos,
        "rope_scaling": {
            "type": rope.get("rope_type", "default"),
            "factor": rope.get("factor", 1.0),
            "low_freq_factor": rope.get("low_freq_factor", 1.0),
            "high_freq_factor": rope.get("high_freq_factor", 4.0),
            "original_max_position_embeddings": rope.get("original_max_position_embeddings",
                                                         max_pos),
            "beta_fast": rope.get("beta_fast", 32.0),
            "beta_slow": rope.get("beta_slow", 1.0),
            "mscale": rope.get("mscale", 0.0),
            "mscale_all_dim": rope.get("mscale_all_dim", 0.0),
            "attention_factor": rope.get("attention_factor", 0.0),
            "truncate": rope.get("truncate", True),
        },
    }


def run_case(name, head_dim, theta, max_pos, rope, positions):
    params = {"rope_type": "default", "rope_theta": theta, **rope}
    cfg = LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, num_key_value_heads=2,
                      head_dim=head_dim, max_position_embeddings=max_pos, rope_parameters=params)
    module = LlamaRotaryEmbedding(cfg)
    x = torch.zeros(1, dtype=torch.float32)
    cos, sin = module(x, torch.tensor([positions], dtype=torch.int64))
    inv_freq = module.inv_freq.float()
    scaling = float(module.attention_scaling)

    rope_type = params["rope_type"]
    if rope_type != "default":
        seq_len = torch.tensor(max(positions) + 1) if rope_type == "dynamic" else None
        direct, direct_scaling = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu", seq_len=seq_len)
        assert torch.equal(direct.float(), inv_freq), name
        assert float(direct_scaling) == scaling, name

    half = head_dim // 2
    cos, sin = cos[0].float(), sin[0].float()
    assert torch.equal(cos[:, :half], cos[:, half:]) and torch.equal(sin[:, :half], sin[:, half:])
    return {
        "name": name,
        "config": tsa_config(head_dim, theta, max_pos, rope),
        "positions": positions,
        "inv_freq": inv_freq.tolist(),
        "attention_scaling": scaling,
        "cos": cos[:, :half].tolist(),
        "sin": sin[:, :half].tolist(),
    }


def main():
    out = {
        "generator": f"tools/make_rope_fixtures.py, transformers {transformers.__version__}, "
                     f"torch {torch.__version__}",
        "cases": [run_case(*c) for c in CASES],
    }
    # One case per line, numbers unindented: small, and still diffable.
    sys.stdout.write('{"generator": %s,\n "cases": [\n' % json.dumps(out["generator"]))
    sys.stdout.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in out["cases"]))
    sys.stdout.write("\n]}\n")


if __name__ == "__main__":
    main()
