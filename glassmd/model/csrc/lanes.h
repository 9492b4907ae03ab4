// Lane-major blocks for the glassmd kernels: a block of L = 16 float (8 double) edges is stored [feature][L],
// one SIMD register per feature, and moved to and from rows of per-edge or per-node arrays here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// Every loop over the lanes of a block is one SIMD operation. Said explicitly: left alone, GCC fully unrolls
// these 16-iteration loops and re-vectorises across channels with permutes, 10x slower.
#define GLASSMD_LANES _Pragma("omp simd")

namespace glassmd_lanes {

// Storage for lane-major blocks aligned to cache lines, so that one feature of a block (L lanes, 64 bytes) is
// one line and a SIMD load or store of it never spans two. std::vector's 16-byte alignment made three in four
// of them split: aligned, a forward at N = 1000 took 4-6% less time and a training step 8-13% (A/B runs).
template <typename T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const LineAllocator<U>&) const { return false; }
};

template <typename T>
using LaneVector = std::vector<T, LineAllocator<T>>;

// One SIMD register of lanes (64 bytes: L = 16 floats or 8 doubles) as a GCC vector, for loops whose trip
// counts are run-time values: there the auto-vectoriser may vectorise across the outer loop instead of the
// lanes (gathers, sums kept on the stack). Moved from and to memory with memcpy: any alignment.
template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(64)));
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V splat(T x) { return V{} + x; }
};

// 16 x 16 transposes in AVX-512 registers, between 16 rows of features (one per edge) and the lane-major
// block layout [feature][16]; gathering or scattering them one float at a time cost a third of the kernel.
// Both return false (and do nothing) where this build has no such path: then the callers' loops run.
#if defined(__AVX512F__)
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 16; i += 8) {
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xDD);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
  }
}
#endif

// out[f * 16 + lane] = rows[lane][f] for f < n_features.
template <typename T>
bool rows_to_lanes(const T* const* rows, int64_t n_features, T* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t f0 = 0; f0 < n_features; f0 += 16) {
      const int width = static_cast<int>(std::min<int64_t>(16, n_features - f0));
      const __mmask16 mask = static_cast<__mmask16>((1u << width) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_maskz_loadu_ps(mask, rows[i] + f0);
      transpose16(r);
      for (int c = 0; c < width; ++c) _mm512_storeu_ps(out + (f0 + c) * 16, r[c]);
    }
    return true;
  }
#endif
  return false;
}

#if defined(__AVX512F__)
// Features f0 .. f0+width-1 of a lane-major block transposed: r[lane] holds its lane's values (zero past width).
// Returns width (at most 16).
inline __attribute__((always_inline)) int transposed_chunk(const float* in, int64_t n_features, int64_t f0,
                                                          __m512* r) {
  const int width = static_cast<int>(std::min<int64_t>(16, n_features - f0));
  for (int c = 0; c < 16; ++c) r[c] = c < width ? _mm512_loadu_ps(in + (f0 + c) * 16) : _mm512_setzero_ps();
  transpose16(r);
  return width;
}

// rows[lane][f] += in[f * 16 + lane] for f < n_features, where lanes share rows: lanes with the row of the lane
// before add in registers first, and each run of them updates its row once. Edges sorted by receiver (as graph
// builders give them) fill a block of 16 with one or two receivers; added lane by lane, each load waited for the
// masked store before it, which AMD cores do not forward: 10% of a training-mode forward (N = 1000) went to these
// adds.
__attribute__((noinline)) inline void add_lane_runs_to_rows(const float* in, int64_t n_features,
                                                            float* const* rows) {
  for (int64_t f0 = 0; f0 < n_features; f0 += 16) {
    __m512 r[16];
    const __mmask16 mask = static_cast<__mmask16>((1u << transposed_chunk(in, n_features, f0, r)) - 1u);
    __m512 run = r[0];
#pragma GCC unroll 16  // (r stays in registers only with constant indices)
    for (int i = 1; i < 16; ++i) {
      if (rows[i] == rows[i - 1]) {
        run = _mm512_add_ps(run, r[i]);
        continue;
      }
      float* dst = rows[i - 1] + f0;
      _mm512_mask_storeu_ps(dst, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), run));
      run = r[i];
    }
    float* dst = rows[15] + f0;
    _mm512_mask_storeu_ps(dst, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), run));
  }
}
#endif

// rows[lane][f] = in[f * 16 + lane] (kAdd: +=, lanes in order, so rows may repeat) for f < n_features.
template <bool kAdd, typename T>
bool lanes_into_rows(const T* in, int64_t n_features, T* const* rows) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t f0 = 0; f0 < n_features; f0 += 16) {
      __m512 r[16];
      const __mmask16 mask = static_cast<__mmask16>((1u << transposed_chunk(in, n_features, f0, r)) - 1u);
      for (int i = 0; i < 16; ++i) {
        float* dst = rows[i] + f0;
        _mm512_mask_storeu_ps(dst, mask, kAdd ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), r[i]) : r[i]);
      }
    }
    return true;
  }
#endif
  return false;
}

template <typename T>
bool add_lanes_to_rows(const T* in, int64_t n_features, T* const* rows) {
  return lanes_into_rows<true>(in, n_features, rows);
}

// add_lanes_to_rows for blocks whose lanes may share rows in runs (edges in a caller's order, sorted by receiver):
// those take add_lane_runs_to_rows. (The paired blocks, whose rows are all but never repeated, call
// add_lanes_to_rows: through this check the evaluation measured 2-3% slower.)
template <typename T>
bool add_lanes_to_rows_in_runs(const T* in, int64_t n_features, T* const* rows) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    bool repeats = false;
    for (int i = 1; i < 16; ++i) repeats |= rows[i] == rows[i - 1];
    if (repeats) {
      add_lane_runs_to_rows(in, n_features, rows);
      return true;
    }
  }
#endif
  return add_lanes_to_rows(in, n_features, rows);
}

template <typename T>
bool lanes_to_rows(const T* in, int64_t n_features, T* const* rows) {
  return lanes_into_rows<false>(in, n_features, rows);
}

}  // namespace glassmd_lanes
