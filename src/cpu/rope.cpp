// RoPE frequencies as transformers 5.x computes them (modeling_rope_utils.py
// and LlamaRotaryEmbedding): the same float32 steps in the same order, so the
// frequencies agree to an ulp or two and the angles pos * inv_freq, rounded
// to float32 as HF rounds them, agree exactly.
#include "cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "cpu/threads.h"
#include "tsa/error.h"

namespace tsa {

namespace {

// base ** (arange(0, dim, 2).float() / dim), in float32.
float pos_freq(double base, int64_t i, int64_t dim) {
  const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
  return static_cast<float>(std::pow(static_cast<double>(static_cast<float>(base)), e));
}

std::vector<float> default_inv_freq(double base, int64_t dim) {
  std::vector<float> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) inv[i] = 1.0f / pos_freq(base, i, dim);
  return inv;
}

int64_t original_context(const ModelConfig& cfg) {
  const int64_t o = cfg.rope_scaling.original_max_position_embeddings;
  return o > 0 ? o : cfg.max_position_embeddings;
}

// HF _compute_dynamic_ntk_parameters, called as dynamic_rope_update calls it:
// seq_len is a tensor there, so the new base is computed in float32.
std::vector<float> dynamic_inv_freq(const ModelConfig& cfg, int64_t seq_len) {
  const int64_t dim = cfg.head_dim, max_pos = cfg.max_position_embeddings;
  const double factor = cfg.rope_scaling.factor;
  if (seq_len <= max_pos) return default_inv_freq(cfg.rope_theta, dim);
  float t = static_cast<float>(factor) * static_cast<float>(seq_len);
  t = t / static_cast<float>(max_pos) - static_cast<float>(factor - 1.0);
  const float exponent = static_cast<float>(static_cast<double>(dim) / (dim - 2));
  const float base = static_cast<float>(cfg.rope_theta) *
                     static_cast<float>(std::pow(static_cast<double>(t), exponent));
  return default_inv_freq(base, dim);
}

// HF _compute_llama3_parameters.
std::vector<float> llama3_inv_freq(const ModelConfig& cfg) {
  const RopeScaling& rs = cfg.rope_scaling;
  std::vector<float> inv = default_inv_freq(cfg.rope_theta, cfg.head_dim);
  const double old_ctx = static_cast<double>(original_context(cfg));
  const float factor = static_cast<float>(rs.factor);
  const float low_wavelen = static_cast<float>(old_ctx / rs.low_freq_factor);
  const float high_wavelen = static_cast<float>(old_ctx / rs.high_freq_factor);
  for (float& f : inv) {
    const float wavelen = 1.0f / f * static_cast<float>(2 * std::numbers::pi);
    const float scaled = wavelen > low_wavelen ? f / factor : f;
    const float smooth =
        (1.0f / wavelen * static_cast<float>(old_ctx) - static_cast<float>(rs.low_freq_factor)) /
        static_cast<float>(rs.high_freq_factor - rs.low_freq_factor);
    const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? smoothed : scaled;
  }
  return inv;
}

double yarn_mscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// HF _compute_yarn_parameters.
RopeFreqs yarn_freqs(const ModelConfig& cfg) {
  const RopeScaling& rs = cfg.rope_scaling;
  const int64_t dim = cfg.head_dim;
  const double base = cfg.rope_theta, factor = rs.factor;
  double attention_factor = rs.attention_factor;
  if (attention_factor == 0.0) {
    attention_factor = rs.mscale != 0.0 && rs.mscale_all_dim != 0.0
                           ? yarn_mscale(factor, rs.mscale) / yarn_mscale(factor, rs.mscale_all_dim)
                           : yarn_mscale(factor, 1.0);
  }
  const double beta_fast = rs.beta_fast != 0.0 ? rs.beta_fast : 32.0;
  const double beta_slow = rs.beta_slow != 0.0 ? rs.beta_slow : 1.0;
  const double ctx = static_cast<double>(original_context(cfg));
  // The dimension at which a frequency completes `rotations` turns over ctx.
  auto correction_dim = [&](double rotations) {
    return dim * std::log(ctx / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (rs.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // HF: prevent a singular ramp

  RopeFreqs f;
  f.inv_freq.resize(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float pf = pos_freq(base, i, dim);
    const float extrapolation = 1.0f / pf;
    const float interpolation = 1.0f / (static_cast<float>(factor) * pf);
    const float ramp = std::clamp(
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
        1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    f.inv_freq[i] =
        interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  f.attention_scaling = static_cast<float>(attention_factor);
  return f;
}

}  // namespace

RopeFreqs rope_freqs(const ModelConfig& cfg, int64_t seq_len) {
  if (cfg.head_dim <= 2 || cfg.head_dim % 2 != 0) {
    throw Error(fmt::format("RoPE needs an even head_dim > 2, the config has {}", cfg.head_dim));
  }
  if (!(cfg.rope_theta > 0)) {
    throw Error(fmt::format("RoPE needs rope_theta > 0, the config has {}", cfg.rope_theta));
  }
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type != RopeType::Default && !(rs.factor > 0)) {
    throw Error(fmt::format("rope scaling {} needs factor > 0, the config has {}",
                            rope_type_name(rs.type), rs.factor));
  }
  if ((rs.type == RopeType::Dynamic || rs.type == RopeType::Llama3 || rs.type == RopeType::Yarn) &&
      original_context(cfg) <= 0) {
    throw Error(
        fmt::format("rope scaling {} needs max_position_embeddings > 0", rope_type_name(rs.type)));
  }
  RopeFreqs f;
  switch (rs.type) {
    case RopeType::Default:
      f.inv_freq = default_inv_freq(cfg.rope_theta, cfg.head_dim);
      break;
    case RopeType::Linear:
      f.inv_freq = default_inv_freq(cfg.rope_theta, cfg.head_dim);
      for (float& x : f.inv_freq) x /= static_cast<float>(rs.factor);
      break;
    case RopeType::Dynamic:
      f.inv_freq = dynamic_inv_freq(cfg, seq_len);
      break;
    case RopeType::Llama3:
      if (rs.high_freq_factor == rs.low_freq_factor) {
        throw Error("rope scaling llama3 needs high_freq_factor != low_freq_factor");
      }
      f.inv_freq = llama3_inv_freq(cfg);
      break;
    case RopeType::Yarn:
      f = yarn_freqs(cfg);
      break;
  }
  return f;
}

void rope_cos_sin(const int64_t* pos, int64_t n, int64_t head_dim, const RopeFreqs& f, float* cos,
                  float* sin) {
  const int64_t half = head_dim / 2;
  if (static_cast<int64_t>(f.inv_freq.size()) != half) {
    throw Error(fmt::format("RoPE: {} frequencies for head_dim {}", f.inv_freq.size(), head_dim));
  }
  for (int64_t i = 0; i < n; ++i) {
    const float p = static_cast<float>(pos[i]);
    for (int64_t j = 0; j < half; ++j) {
      const double angle = p * f.inv_freq[j];  // a float32 product, as HF
      cos[i * half + j] = static_cast<float>(std::cos(angle)) * f.attention_scaling;
      sin[i * half + j] = static_cast<float>(std::sin(angle)) * f.attention_scaling;
    }
  }
}

void apply_rope_cos_sin(float* x, int64_t n, int64_t heads, int64_t head_dim, const float* cos,
                        const float* sin) {
  const int64_t half = head_dim / 2;
#pragma omp parallel for num_threads(cpu::num_threads()) if (n * heads * head_dim >= \
                                                             cpu::kParallelMinElems)
  for (int64_t i = 0; i < n; ++i) {
    const float* c = cos + i * half;
    const float* s = sin + i * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* __restrict x1 = x + (i * heads + h) * head_dim;
      float* __restrict x2 = x1 + half;
      for (int64_t j = 0; j < half; ++j) {
        const float a = x1[j], b = x2[j];
        x1[j] = a * c[j] - b * s[j];
        x2[j] = b * c[j] + a * s[j];
      }
    }
  }
}

void apply_rope(float* x, const int64_t* pos, int64_t n, int64_t heads, int64_t head_dim,
                const RopeFreqs& f) {
  std::vector<float> cos(n * head_dim / 2), sin(n * head_dim / 2);
  rope_cos_sin(pos, n, head_dim, f, cos.data(), sin.data());
  apply_rope_cos_sin(x, n, heads, head_dim, cos.data(), sin.data());
}

}  // namespace tsa
