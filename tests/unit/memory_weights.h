// Weight tensors held in memory for tests that call ops or build a model
// without files: a TensorInfo pointing at an owned buffer in F32/F16/BF16.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "load/safetensors.h"

namespace tsa::test {

// The tensor, plus its values as stored (rounded to the dtype) for references.
struct MemoryWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  TensorInfo info;
};

inline MemoryWeight make_weight(const std::vector<float>& v, std::vector<int64_t> shape, DType t,
                                const std::string& name = "w") {
  MemoryWeight w;
  w.bytes.resize(v.size() * dtype_size(t));
  w.values.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::F32) {
      std::memcpy(w.bytes.data() + 4 * i, &v[i], 4);
      w.values[i] = v[i];
    } else {
      const uint16_t h = t == DType::BF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(w.bytes.data() + 2 * i, &h, 2);
      w.values[i] = t == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  w.info.name = name;
  w.info.dtype = t;
  w.info.shape = std::move(shape);
  w.info.data = w.bytes.data();
  w.info.nbytes = w.bytes.size();
  w.info.file = "memory";
  return w;
}

}  // namespace tsa::test
