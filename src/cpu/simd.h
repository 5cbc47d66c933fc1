// Portable SIMD for the CPU kernels through GCC/Clang vector extensions: the
// compiler maps `vf` onto the widest registers the target has (AVX-512 with
// -march=native on a recent x86, AVX2, SSE or NEON otherwise), so the kernels
// carry no intrinsics. Only src/cpu/*.cpp include this header (the vector ABI
// depends on the flags the library is built with).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/dtype.h"

namespace tsa::cpu::simd {

#if defined(__AVX512F__)
inline constexpr int kWidth = 16;  // floats per vector
#elif defined(__AVX__)
inline constexpr int kWidth = 8;
#else
inline constexpr int kWidth = 4;
#endif

typedef float vf __attribute__((vector_size(kWidth * 4)));
typedef int32_t vi __attribute__((vector_size(kWidth * 4)));
typedef uint32_t vu __attribute__((vector_size(kWidth * 4)));
typedef uint16_t vh __attribute__((vector_size(kWidth * 2)));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) {
  std::memcpy(p, &v, sizeof v);
}
// x - (+0) is x for every x (-0 included), so GCC emits a bare broadcast;
// `vf{} + x` would add +0 first, a lane loop defeats register allocation.
inline vf splat(float x) {
  return x - vf{};
}

// Horizontal sum / max by halving (log2 steps, not a serial chain of lanes),
// with shuffles rather than memcpy so that the vector stays in a register.
typedef float vf4 __attribute__((vector_size(16)));
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));
template <class Op>
inline float reduce(vf4 v, Op op) {
  return op(op(v[0], v[2]), op(v[1], v[3]));
}
template <class Op>
inline float reduce(vf8 v, Op op) {
  return reduce(
      op(__builtin_shufflevector(v, v, 0, 1, 2, 3), __builtin_shufflevector(v, v, 4, 5, 6, 7)), op);
}
template <class Op>
inline float reduce(vf16 v, Op op) {
  return reduce(op(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
                   __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)),
                op);
}
inline float hsum(vf v) {
  return reduce(v, [](auto a, auto b) { return a + b; });
}
inline float hmax(vf v) {
  return reduce(v, [](auto a, auto b) { return a > b ? a : b; });
}
inline vf vmax(vf a, vf b) {
  return a > b ? a : b;
}

// bf16 is the upper half of an f32.
inline vf widen_bf16(const uint16_t* p) {
  vh h;
  std::memcpy(&h, p, sizeof h);
  return reinterpret_cast<vf>(__builtin_convertvector(h, vu) << 16);
}

// f16 -> f32 without branches, exact for every input: the magnitude bits moved
// into f32 position and scaled by 2^112 give normals and subnormals alike; an
// all-ones exponent (inf/NaN) is patched to 0xff; then the sign.
inline vf widen_f16(const uint16_t* p) {
  vh h16;
  std::memcpy(&h16, p, sizeof h16);
  const vu h = __builtin_convertvector(h16, vu);
  const vf mag = reinterpret_cast<vf>((h & 0x7fffu) << 13) * 0x1p112f;
  const vu special = reinterpret_cast<vu>((h & 0x7c00u) == 0x7c00u) & 0x7f800000u;
  return reinterpret_cast<vf>(reinterpret_cast<vu>(mag) | special | ((h & 0x8000u) << 16));
}

// kWidth consecutive weights starting at element i of a row of type T, as floats.
template <DType T>
inline vf load_w(const void* row, int64_t i) {
  if constexpr (T == DType::F32) {
    return load(static_cast<const float*>(row) + i);
  } else if constexpr (T == DType::BF16) {
    return widen_bf16(static_cast<const uint16_t*>(row) + i);
  } else {
    return widen_f16(static_cast<const uint16_t*>(row) + i);
  }
}

template <DType T>
inline float load_w1(const void* row, int64_t i) {
  if constexpr (T == DType::F32) {
    return static_cast<const float*>(row)[i];
  } else if constexpr (T == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(row)[i]);
  } else {
    return f16_to_f32(static_cast<const uint16_t*>(row)[i]);
  }
}

// Converts n weights of type T to floats (vectorised; any n).
template <DType T>
inline void widen(const void* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(dst + i, load_w<T>(src, i));
  for (; i < n; ++i) dst[i] = load_w1<T>(src, i);
}

// Calls f(std::integral_constant<DType, T>{}) for the runtime dtype t: the one
// place where a kernel templated on the weight type meets the stored dtype.
template <class F>
inline decltype(auto) with_dtype(DType t, F&& f) {
  switch (t) {
    case DType::F16:
      return f(std::integral_constant<DType, DType::F16>{});
    case DType::BF16:
      return f(std::integral_constant<DType, DType::BF16>{});
    case DType::F32:
      break;
  }
  return f(std::integral_constant<DType, DType::F32>{});
}

// e^x for the softmax and SiLU: Cephes' expf (Cody-Waite reduction to
// |r| <= ln2/2, degree-6 polynomial), within 2 ulp on [-87.3, 88.3]. Below that
// it returns exactly 0 (so a -inf score gives a zero weight), above 88.7 inf,
// and in between the value at 88.3.
inline vf exp(vf x) {
  const vf xc = x < -87.3f ? splat(-87.3f) : (x > 88.3f ? splat(88.3f) : x);
  // n = round(x / ln2) by the 1.5 * 2^23 trick; its integer sits in the low bits.
  const vf shifted = xc * 1.44269504088896341f + 12582912.0f;
  const vf n = shifted - 12582912.0f;
  const vi ni = reinterpret_cast<vi>(shifted) - 0x4b400000;
  const vf r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const vf scale = reinterpret_cast<vf>((ni + 127) << 23);
  const vf y = p * scale;
  return x < -87.3f ? vf{} : (x > 88.72283f ? splat(__builtin_inff()) : y);
}

}  // namespace tsa::cpu::simd
