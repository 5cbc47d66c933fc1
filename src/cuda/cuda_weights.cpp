#include "cuda/cuda_weights.h"

#include <algorithm>

#include "cuda/cuda_check.h"
#include "kernels/elementwise.h"
#include "plan/memory_plan.h"

namespace tsa {

namespace {

kernels::WeightType weight_type(DType t) {
  switch (t) {
    case DType::F32: return kernels::WeightType::F32;
    case DType::F16: return kernels::WeightType::F16;
    case DType::BF16: return kernels::WeightType::BF16;
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

}  // namespace

std::shared_ptr<const CudaWeights> CudaWeights::upload(const ModelConfig& cfg,
                                                       const ModelWeights& w) {
  // Room for the bf16 weights plus alignment padding of every tensor.
  const size_t tensors = 3 + w.layers.size() * 8;
  const size_t bytes = weight_bytes(cfg) + tensors * 256;
  const DeviceMemory mem = device_memory();
  if (bytes > mem.free) {
    throw Error(fmt::format("not enough GPU memory for the weights: {} needed (bf16), {} free",
                            format_bytes(bytes), format_bytes(mem.free)));
  }
  auto out = std::make_shared<CudaWeights>();
  out->block = DeviceBlock(bytes, "model weights");

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

}  // namespace tsa
