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

// Places tensors one after another in the block (256-byte aligned) and
// converts each through a staging buffer holding the largest source tensor.
class Uploader {
 public:
  Uploader(__nv_bfloat16* base, size_t capacity, void* staging, size_t staging_bytes)
      : base_(base), capacity_(capacity), staging_(staging), staging_bytes_(staging_bytes) {}

  // Appends the tensors (concatenated along rows) and returns their start.
  const __nv_bfloat16* put(std::initializer_list<const TensorInfo*> parts) {
    __nv_bfloat16* start = base_ + used_;
    for (const TensorInfo* t : parts) {
      const int64_t n = t->numel();
      if ((used_ + n) * 2 > capacity_ || t->nbytes > staging_bytes_)
        throw Error("weight upload: layout overflow at " + t->name);
      cuda_check(cudaMemcpy(staging_, t->data, t->nbytes, cudaMemcpyHostToDevice),
                 "uploading " + t->name);
      cuda_check(kernels::convert_to_bf16(staging_, weight_type(t->dtype), base_ + used_, n, 0),
                 "converting " + t->name + " to bf16");
      used_ += n;
    }
    used_ = (used_ + 127) / 128 * 128;  // keep every tensor 256-byte aligned
    return start;
  }

 private:
  __nv_bfloat16* base_;
  size_t capacity_;
  void* staging_;
  size_t staging_bytes_;
  size_t used_ = 0;  // elements
};

// The weights block: the bf16 weights plus alignment padding of every tensor,
// allocated only after checking that it fits.
DeviceBlock weights_block(const ModelConfig& cfg) {
  const size_t tensors = 3 + static_cast<size_t>(cfg.num_layers) * 8;
  const size_t bytes = weight_bytes(cfg) + tensors * 256;
  const DeviceMemory mem = device_memory();
  if (bytes > mem.free) {
    throw Error(fmt::format("not enough GPU memory for the weights: {} needed (bf16), {} free",
                            format_bytes(bytes), format_bytes(mem.free)));
  }
  return DeviceBlock(bytes, "model weights");
}

}  // namespace

std::shared_ptr<const CudaWeights> CudaWeights::upload(const ModelConfig& cfg,
                                                       const ModelWeights& w) {
  auto out = std::make_shared<CudaWeights>();
  out->block = weights_block(cfg);
  const size_t bytes = out->block.size();

  size_t largest = w.tok_embd->nbytes;
  for (const auto& l : w.layers)
    for (const TensorInfo* t : {l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down})
      largest = std::max(largest, t->nbytes);
  if (w.lm_head) largest = std::max(largest, w.lm_head->nbytes);
  DeviceBlock staging(largest, "weight staging buffer");

  Uploader up(out->block.at<__nv_bfloat16>(0), bytes, staging.data(), staging.size());
  out->tok_embd = up.put({w.tok_embd});
  out->final_norm = up.put({w.final_norm});
  out->lm_head = w.lm_head == w.tok_embd ? out->tok_embd : up.put({w.lm_head});
  for (const LayerWeights& l : w.layers) {
    CudaLayer c;
    c.attn_norm = up.put({l.attn_norm});
    c.wqkv = up.put({l.wq, l.wk, l.wv});
    if (l.bq) c.bqkv = up.put({l.bq, l.bk, l.bv});
    c.wo = up.put({l.wo});
    if (l.bo) c.bo = up.put({l.bo});
    c.ffn_norm = up.put({l.ffn_norm});
    c.w_gate_up = up.put({l.w_gate, l.w_up});
    c.w_down = up.put({l.w_down});
    out->layers.push_back(c);
  }
  cuda_check(cudaDeviceSynchronize(), "weight upload");
  return out;
}

std::shared_ptr<const CudaWeights> CudaWeights::random(const ModelConfig& cfg, uint64_t seed) {
  auto out = std::make_shared<CudaWeights>();
  out->block = weights_block(cfg);
  bf16* base = out->block.at<bf16>(0);
  size_t used = 0;  // elements, placed as upload() places them
  auto put = [&](int64_t n, float mean, float scale) {
    bf16* p = base + used;
    cuda_check(kernels::random_fill(p, n, seed + used, mean, scale, 0), "random weights");
    used = (used + n + 127) / 128 * 128;
    return p;
  };
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int64_t qd = cfg.num_heads * cfg.head_dim;
  const int64_t qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim;
  // Uniform [-a, a] has std a / sqrt(3): a = sqrt(3 / fan_in) / 2 keeps each
  // projection's output at about half its input's scale.
  auto mat = [](int64_t fan_in) { return 0.5f * std::sqrt(3.0f / static_cast<float>(fan_in)); };
  out->tok_embd = put(V * H, 0.f, 1.f);
  out->final_norm = put(H, 1.f, 0.1f);
  out->lm_head = cfg.tie_word_embeddings ? out->tok_embd : put(V * H, 0.f, mat(H));
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    CudaLayer c;
    c.attn_norm = put(H, 1.f, 0.1f);
    c.wqkv = put(qkv * H, 0.f, mat(H));
    if (cfg.attention_bias) c.bqkv = put(qkv, 0.f, 0.02f);
    c.wo = put(H * qd, 0.f, mat(qd));
    c.ffn_norm = put(H, 1.f, 0.1f);
    c.w_gate_up = put(2 * I * H, 0.f, mat(H));
    c.w_down = put(H * I, 0.f, mat(I));
    out->layers.push_back(c);
  }
  cuda_check(cudaDeviceSynchronize(), "random weights");
  return out;
}

}  // namespace tsa
