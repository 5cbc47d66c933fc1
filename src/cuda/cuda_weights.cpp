#include "cuda/cuda_weights.h"

#include <algorithm>
#include <cmath>

#include "cuda/cuda_check.h"
#include "kernels/elementwise.h"
#include "kernels/random_fill.h"
#include "plan/memory_plan.h"

namespace tsa {

namespace {

using bf16 = __nv_bfloat16;

kernels::WeightType weight_type(DType t) {
  switch (t) {
    case DType::F32:
      return kernels::WeightType::F32;
    case DType::F16:
      return kernels::WeightType::F16;
    case DType::BF16:
      return kernels::WeightType::BF16;
  }
  return kernels::WeightType::F32;
}

TensorSlice whole(const std::string& name) {
  return {name, 0, 0, 0, true};
}

// What this process uploads of tensor t: all of it, or the rank's slice.
// lm_head when tied and split: the rank's vocabulary rows of the embedding.
TensorSlice part_of(const TensorInfo& t, const RankPlan* rank) {
  if (!rank) return whole(t.name);
  return rank->slice(t.name);
}

// Places tensors one after another in the block (256-byte aligned) and
// converts each through a staging buffer holding the largest source tensor.
class Uploader {
 public:
  Uploader(bf16* base, size_t capacity, void* staging, size_t staging_bytes)
      : base_(base), capacity_(capacity), staging_(staging), staging_bytes_(staging_bytes) {}

  struct Part {
    const TensorInfo* t;
    TensorSlice slice;
  };
  // Appends the parts (concatenated along rows) and returns their start.
  const bf16* put(std::initializer_list<Part> parts) {
    bf16* start = base_ + used_;
    for (const Part& p : parts) {
      const TensorInfo& t = *p.t;
      const SliceBytes b = slice_bytes(t, p.slice);
      const int64_t n = b.numel();
      if ((used_ + n) * 2 > capacity_ || b.width * b.height > staging_bytes_)
        throw Error("weight upload: layout overflow at " + t.name);
      // Column slices come row by row out of the mmapped file.
      cuda_check(cudaMemcpy2D(staging_, b.width, b.src, b.pitch, b.width, b.height,
                              cudaMemcpyHostToDevice),
                 "uploading " + t.name);
      cuda_check(kernels::convert_to_bf16(staging_, weight_type(t.dtype), base_ + used_, n, 0),
                 "converting " + t.name + " to bf16");
      used_ += n;
    }
    used_ = (used_ + 127) / 128 * 128;  // keep every tensor 256-byte aligned
    return start;
  }

 private:
  bf16* base_;
  size_t capacity_;
  void* staging_;
  size_t staging_bytes_;
  size_t used_ = 0;  // elements
};

// The weights block: the bf16 weights (the rank's: `cfg` is its local
// config) plus alignment padding of every tensor, allocated only after
// checking that it fits.
DeviceBlock weights_block(const ModelConfig& cfg, const RankPlan* rank) {
  const size_t tensors = 3 + static_cast<size_t>(cfg.num_layers) * 8;
  const size_t bytes = weight_bytes(cfg, rank ? rank->vocab : -1) + tensors * 256;
  const DeviceMemory mem = device_memory();
  if (bytes > mem.free) {
    throw Error(fmt::format("not enough GPU memory for the weights: {} needed (bf16), {} free",
                            format_bytes(bytes), format_bytes(mem.free)));
  }
  return DeviceBlock(bytes, "model weights");
}

}  // namespace

std::shared_ptr<const CudaWeights> CudaWeights::upload(const ModelConfig& cfg,
                                                       const ModelWeights& w,
                                                       const RankPlan* rank) {
  auto out = std::make_shared<CudaWeights>();
  out->block = weights_block(rank ? local_config(cfg, *rank) : cfg, rank);
  const size_t bytes = out->block.size();

  size_t largest = w.tok_embd->nbytes;
  for (const auto& l : w.layers)
    for (const TensorInfo* t : {l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down})
      largest = std::max(largest, t->nbytes);
  if (w.lm_head) largest = std::max(largest, w.lm_head->nbytes);
  DeviceBlock staging(largest, "weight staging buffer");

  Uploader up(out->block.at<bf16>(0), bytes, staging.data(), staging.size());
  auto part = [&](const TensorInfo* t) { return Uploader::Part{t, part_of(*t, rank)}; };
  out->tok_embd = up.put({{w.tok_embd, whole(w.tok_embd->name)}});
  out->final_norm = up.put({part(w.final_norm)});
  if (w.lm_head != w.tok_embd) {
    out->lm_head = up.put({part(w.lm_head)});
  } else if (rank) {  // tied: this rank's vocabulary rows of the embedding
    out->lm_head = up.put(
        {{w.tok_embd, {w.tok_embd->name, 0, rank->vocab_begin, rank->vocab_begin + rank->vocab}}});
  } else {
    out->lm_head = out->tok_embd;
  }
  for (const LayerWeights& l : w.layers) {
    CudaLayer c;
    c.attn_norm = up.put({part(l.attn_norm)});
    c.wqkv = up.put({part(l.wq), part(l.wk), part(l.wv)});
    if (l.bq) c.bqkv = up.put({part(l.bq), part(l.bk), part(l.bv)});
    c.wo = up.put({part(l.wo)});
    // Added once: by rank 0 before the all-reduce.
    if (l.bo && (!rank || rank->adds_bias)) c.bo = up.put({part(l.bo)});
    c.ffn_norm = up.put({part(l.ffn_norm)});
    c.w_gate_up = up.put({part(l.w_gate), part(l.w_up)});
    c.w_down = up.put({part(l.w_down)});
    out->layers.push_back(c);
  }
  cuda_check(cudaDeviceSynchronize(), "weight upload");
  return out;
}

std::shared_ptr<const CudaWeights> CudaWeights::random(const ModelConfig& cfg, uint64_t seed,
                                                       const RankPlan* rank) {
  auto out = std::make_shared<CudaWeights>();
  out->block = weights_block(rank ? local_config(cfg, *rank) : cfg, rank);
  bf16* base = out->block.at<bf16>(0);
  size_t used = 0;  // elements, placed as upload() places them
  // HF tensor `name` [rows, cols], the id-th of the model (its own stream of
  // values): this process's part of it (the rank's slice, or `slice`), right
  // after the previous part.
  auto fill = [&](uint64_t id, const std::string& name, int64_t rows, int64_t cols, float mean,
                  float scale, const TensorSlice* slice = nullptr) {
    const TensorSlice sl = slice ? *slice : rank ? rank->slice(name) : whole(name);
    const int64_t b = sl.whole ? 0 : sl.begin;
    const int64_t e = sl.whole ? (sl.dim == 0 ? rows : cols) : sl.end;
    // Rows [b, e): one contiguous run; columns [b, e): a strided block.
    const bool by_rows = sl.dim == 0;
    const int64_t n_rows = by_rows ? 1 : rows, width = by_rows ? (e - b) * cols : e - b;
    bf16* p = base + used;
    cuda_check(
        kernels::random_fill_slice(p, n_rows, width, by_rows ? width : cols, by_rows ? b * cols : b,
                                   seed ^ (0x9e3779b97f4a7c15ull * (id + 1)), mean, scale, 0),
        "random weights: " + name);
    used += n_rows * width;
    return p;
  };
  auto align = [&] { used = (used + 127) / 128 * 128; };
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t qd = cfg.num_heads * cfg.head_dim, kvd = cfg.num_kv_heads * cfg.head_dim;
  // Uniform [-a, a] has std a / sqrt(3): a = sqrt(3 / fan_in) / 2 keeps each
  // projection's output at about half its input's scale.
  auto mat = [](int64_t fan_in) { return 0.5f * std::sqrt(3.0f / static_cast<float>(fan_in)); };
  const TensorSlice embd = whole("model.embed_tokens.weight");
  out->tok_embd = fill(0, embd.name, V, H, 0.f, 1.f, &embd);
  align();
  out->final_norm = fill(1, "model.norm.weight", H, 1, 1.f, 0.1f);
  align();
  if (!cfg.tie_word_embeddings) {
    out->lm_head = fill(2, "lm_head.weight", V, H, 0.f, mat(H));
    align();
  } else if (rank) {  // tied: this rank's rows of the embedding (its values)
    const TensorSlice rows{embd.name, 0, rank->vocab_begin, rank->vocab_begin + rank->vocab};
    out->lm_head = fill(0, embd.name, V, H, 0.f, 1.f, &rows);
    align();
  } else {
    out->lm_head = out->tok_embd;
  }
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string at = fmt::format("model.layers.{}.", l);
    const uint64_t id = 3 + 16 * static_cast<uint64_t>(l);
    CudaLayer c;
    c.attn_norm = fill(id, at + "input_layernorm.weight", H, 1, 1.f, 0.1f);
    align();
    c.wqkv = fill(id + 1, at + "self_attn.q_proj.weight", qd, H, 0.f, mat(H));
    fill(id + 2, at + "self_attn.k_proj.weight", kvd, H, 0.f, mat(H));
    fill(id + 3, at + "self_attn.v_proj.weight", kvd, H, 0.f, mat(H));
    align();
    if (cfg.attention_bias) {
      c.bqkv = fill(id + 4, at + "self_attn.q_proj.bias", qd, 1, 0.f, 0.02f);
      fill(id + 5, at + "self_attn.k_proj.bias", kvd, 1, 0.f, 0.02f);
      fill(id + 6, at + "self_attn.v_proj.bias", kvd, 1, 0.f, 0.02f);
      align();
    }
    c.wo = fill(id + 7, at + "self_attn.o_proj.weight", H, qd, 0.f, mat(qd));
    align();
    c.ffn_norm = fill(id + 8, at + "post_attention_layernorm.weight", H, 1, 1.f, 0.1f);
    align();
    c.w_gate_up = fill(id + 9, at + "mlp.gate_proj.weight", I, H, 0.f, mat(H));
    fill(id + 10, at + "mlp.up_proj.weight", I, H, 0.f, mat(H));
    align();
    c.w_down = fill(id + 11, at + "mlp.down_proj.weight", H, I, 0.f, mat(I));
    align();
    out->layers.push_back(c);
  }
  cuda_check(cudaDeviceSynchronize(), "random weights");
  return out;
}

}  // namespace tsa
