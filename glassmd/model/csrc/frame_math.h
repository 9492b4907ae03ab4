// The Wigner matrices D^l(R_e), l = 1..l_max, of a block of edge vectors, in lanes: the arithmetic of
// glassmd::edge_frames (EdgeFrames in glassmd/model/fast_conv.py holds the torch formula and the constants),
// shared with the evaluation kernel, which computes the frames of each block it convolves from the edge vectors
// instead of reading 83 precomputed values per edge from memory.
//
// D^l = A^l(alpha) B^l(beta), rotations about the polar axis and about x, whose entries are trigonometric
// polynomials of one angle each. Both factors come from their own sparse coefficients (A has two non-zeros per
// row) and are multiplied per l in registers: about 300 vector operations per block of edges.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lanes.h"

namespace glassmd_frames {

using at::Tensor;

// The lane kinds of glassmd::edge_blocks (its last row): what a lane of a block holds.
constexpr double kLanePair = 2, kLaneEdge = 1, kLanePadding = 0;

struct Term {
  int64_t entry, feature;
  double coef;
};

// The constants: per factor the non-zero (entry, harmonic, coefficient) terms; per l block its offset and
// size; per entry of D its products of an entry of A and one of B, both not identically zero.
struct FramePlan {
  int64_t n_features = 0, dim = 0;
  std::vector<Term> a_terms, b_terms;
  std::vector<int64_t> block_off, block_d;
  // The terms of each factor grouped by entry (a_terms and b_terms are in entry order): [begin, end) per
  // entry, empty for the entries that are identically zero.
  std::vector<int64_t> a_begin, b_begin;
  // Per entry f of D, [product_begin[f], product_begin[f + 1]) of products: (entry of A, entry of B).
  std::vector<int64_t> product_begin;
  std::vector<std::pair<int64_t, int64_t>> products;

  FramePlan(const Tensor& a, const Tensor& b, int64_t l_max) {
    TORCH_CHECK(a.dim() == 2 && b.sizes() == a.sizes(), "edge_frames: coefficient tensors must be [n_f, frame_dim]");
    n_features = a.size(0);
    dim = a.size(1);
    int64_t off = 0;
    for (int64_t l = 1; l <= l_max; ++l) {
      block_off.push_back(off);
      block_d.push_back(2 * l + 1);
      off += (2 * l + 1) * (2 * l + 1);
    }
    TORCH_CHECK(off == dim, "edge_frames: frame_dim ", dim, " does not match l_max ", l_max);
    auto ad = a.to(at::kDouble).contiguous(), bd = b.to(at::kDouble).contiguous();
    const double* ap = ad.data_ptr<double>();
    const double* bp = bd.data_ptr<double>();
    std::vector<uint8_t> a_nonzero(dim, 0);
    for (int64_t f = 0; f < dim; ++f)
      for (int64_t k = 0; k < n_features; ++k) {
        if (std::abs(ap[k * dim + f]) > 1e-12) {
          a_terms.push_back({f, k, ap[k * dim + f]});
          a_nonzero[f] = 1;
        }
        if (std::abs(bp[k * dim + f]) > 1e-12) b_terms.push_back({f, k, bp[k * dim + f]});
      }
    auto group = [&](const std::vector<Term>& terms, std::vector<int64_t>& begin) {
      begin.assign(dim + 1, 0);
      for (const Term& t : terms) ++begin[t.entry + 1];
      for (int64_t f = 0; f < dim; ++f) begin[f + 1] += begin[f];
    };
    group(a_terms, a_begin);
    group(b_terms, b_begin);
    // D[i][j] = sum over m of A[i][m] B[m][j]; A turns about the polar axis, two non-zeros per row at most
    product_begin.assign(1, 0);
    for (size_t blk = 0; blk < block_off.size(); ++blk) {
      const int64_t o = block_off[blk], d = block_d[blk];
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) {
          for (int64_t m = 0; m < d; ++m)
            if (a_nonzero[o + i * d + m] && b_begin[o + m * d + j] < b_begin[o + m * d + j + 1])
              products.push_back({o + i * d + m, o + m * d + j});
          product_begin.push_back(static_cast<int64_t>(products.size()));
        }
    }
  }

  // The l_max of a frame of `dim` values (sum of (2l + 1)^2 for l = 1..l_max), or -1.
  static int64_t l_max_of(int64_t dim) {
    int64_t l = 0, total = 0;
    while (total < dim) total += (2 * (l + 1) + 1) * (2 * (l + 1) + 1), ++l;
    return total == dim ? l : -1;
  }
};

// The sums of one factor (A or B) as a table of equal rows: per non-zero entry, `width` terms (harmonic row
// offset, coefficient), padded with zero coefficients. Every entry then runs the same number of multiply-adds:
// with each entry's own count (1 to 4) the loop exits were mispredicted, and the frames of a block took 4x
// their arithmetic. The non-zero entries are stored compactly (27 of A's 83 and 43 of B's for l_max = 3),
// then one row of zeros: a block's buffers, tables and node rows already exceed L1, and 6 KB less of them made
// a forward 3% faster (A/B, N = 1000 and 4096, 2 threads).
template <typename T, int L>
struct FactorTable {
  int64_t width = 1, rows = 0;          // terms per entry; non-zero entries (the zero row is `rows`)
  std::vector<int32_t> offset;          // harmonic row offset per term
  std::vector<int32_t> slot_of;         // per entry of the factor: its row, or the zero row
  std::vector<T> coef;
  FactorTable(const std::vector<Term>& terms, const std::vector<int64_t>& begin, int64_t dim) : slot_of(dim) {
    for (int64_t f = 0; f < dim; ++f) width = std::max(width, begin[f + 1] - begin[f]);
    for (int64_t f = 0; f < dim; ++f) {
      if (begin[f] == begin[f + 1]) continue;
      slot_of[f] = static_cast<int32_t>(rows++);
      for (int64_t t = 0; t < width; ++t) {
        const bool real = begin[f] + t < begin[f + 1];
        offset.push_back(real ? static_cast<int32_t>(terms[begin[f] + t].feature * L) : 0);
        coef.push_back(real ? static_cast<T>(terms[begin[f] + t].coef) : T(0));
      }
    }
    for (int64_t f = 0; f < dim; ++f)
      if (begin[f] == begin[f + 1]) slot_of[f] = static_cast<int32_t>(rows);
  }
};

// Per-thread buffers of frames_of_block, and the plan in T with lane-major offsets. The products of the D
// entries with fewer than `product_width` of them are padded with the zero rows of A and B.
template <typename T, int L>
struct FrameScratch {
  FactorTable<T, L> a_table, b_table;
  glassmd_lanes::LaneVector<T> fa, fb, A, B;
  int64_t product_width = 1;
  std::vector<int32_t> product_offset;  // per D entry, product_width (A row, B row) offsets
  explicit FrameScratch(const FramePlan& p)
      : a_table(p.a_terms, p.a_begin, p.dim),
        b_table(p.b_terms, p.b_begin, p.dim),
        fa(p.n_features * L),
        fb(p.n_features * L),
        A((a_table.rows + 1) * L, T(0)),
        B((b_table.rows + 1) * L, T(0)) {
    for (int64_t f = 0; f < p.dim; ++f)
      product_width = std::max(product_width, p.product_begin[f + 1] - p.product_begin[f]);
    for (int64_t f = 0; f < p.dim; ++f)
      for (int64_t t = 0; t < product_width; ++t) {
        const int64_t q = p.product_begin[f] + t;
        const bool real = q < p.product_begin[f + 1];
        product_offset.push_back(L * (real ? a_table.slot_of[p.products[q].first] : a_table.rows));
        product_offset.push_back(L * (real ? b_table.slot_of[p.products[q].second] : b_table.rows));
      }
  }
};

// D [dim][L] of the edge vectors (x, y, z) of L lanes; every lane must hold a non-zero vector.
template <typename T, int L>
void frames_of_block(const FramePlan& p, const T* x, const T* y, const T* z, FrameScratch<T, L>& s, T* D) {
  static_assert(L * sizeof(T) == 64, "frames_of_block works on 64-byte blocks of lanes");
  using W = glassmd_lanes::Simd<T>;
  using V = typename W::V;
  const int64_t K = p.n_features;
  // alpha = atan2(x, z) (0 on the polar axis, where any alpha is a valid frame), beta = acos(y)
  T cat[L], sat[L], cbt[L], sbt[L];
  GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {  // one vector op each (sqrt included: -fno-math-errno)
    const T inv_r = T(1) / std::sqrt(x[lane] * x[lane] + y[lane] * y[lane] + z[lane] * z[lane]);
    const T nx = x[lane] * inv_r, ny = y[lane] * inv_r, nz = z[lane] * inv_r;
    const T rho2 = nx * nx + nz * nz;
    const bool on_axis = rho2 <= T(0);
    const T rho = std::sqrt(on_axis ? T(1) : rho2);
    cat[lane] = on_axis ? T(1) : nz / rho;
    sat[lane] = on_axis ? T(0) : nx / rho;
    cbt[lane] = ny;
    sbt[lane] = on_axis ? T(0) : rho;
  }
  const V ca = W::load(cat), sa = W::load(sat), cb = W::load(cbt), sb = W::load(sbt);
  // Harmonics 1, cos t, sin t, cos 2t, sin 2t, ... by the angle-addition recurrence.
  for (int factor = 0; factor < 2; ++factor) {
    T* f = factor == 0 ? s.fa.data() : s.fb.data();
    const V c = factor == 0 ? ca : cb, sn = factor == 0 ? sa : sb;
    V cos_k = c, sin_k = sn;
    W::store(f, c - c + T(1));
    for (int64_t k = 1; 2 * k < K; ++k) {
      if (k > 1) {
        const V cos_p = cos_k;
        cos_k = cos_p * c - sin_k * sn;
        sin_k = sin_k * c + cos_p * sn;
      }
      W::store(f + (2 * k - 1) * L, cos_k);
      W::store(f + (2 * k) * L, sin_k);
    }
  }
  // Each entry of A and B summed in a register and stored once (FactorTable), D's entries likewise from their
  // products: with lane loops (GLASSMD_LANES) inside these loops over terms, GCC vectorised across the terms
  // with gathers and kept the sums on the stack, and the frames of a block took 3x longer.
  auto factor = [&](const FactorTable<T, L>& table, const T* h, T* out) {
    const int64_t w = table.width;
    for (int64_t e = 0; e < table.rows; ++e) {
      const int32_t* off = table.offset.data() + e * w;
      const T* c = table.coef.data() + e * w;
      V acc = W::load(h + off[0]) * c[0];
      for (int64_t t = 1; t < w; ++t) acc += W::load(h + off[t]) * c[t];
      W::store(out + e * L, acc);
    }
  };
  factor(s.a_table, s.fa.data(), s.A.data());
  factor(s.b_table, s.fb.data(), s.B.data());
  const int32_t* po = s.product_offset.data();
  const T* A = s.A.data();
  const T* B = s.B.data();
  const int64_t w = s.product_width;
  for (int64_t f = 0; f < p.dim; ++f, po += 2 * w) {
    V acc = W::load(A + po[0]) * W::load(B + po[1]);
    for (int64_t t = 1; t < w; ++t) acc += W::load(A + po[2 * t]) * W::load(B + po[2 * t + 1]);
    W::store(D + f * L, acc);
  }
}

}  // namespace glassmd_frames
