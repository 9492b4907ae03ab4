// glassmd::edge_frames (and edge_frame_rows): the Wigner matrices D^l(R_e), l = 1..l_max, of every edge
// (EdgeFrames in glassmd/model/fast_conv.py, which holds the torch formula and the constants).
//
// D^l = A^l(alpha) B^l(beta), rotations about the polar axis and about x, whose entries are trigonometric
// polynomials of one angle each. The torch formula contracts the outer product of both angles' harmonics
// with a [49, 83] constant matrix (4k multiply-adds per edge, and three [E, 49..83] arrays through memory);
// here both factors come from their own sparse coefficients (A has two non-zeros per row) and are multiplied
// per l in registers, about 700 multiply-adds per edge, 16 edges per SIMD register.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lanes.h"

namespace {

using at::Tensor;
using namespace glassmd_lanes;

// A 64-byte-aligned copy of whole cache lines with non-temporal stores: the rows of a graph's edges (30 MB at
// N = 4096) are read next by the first layer, long after they would have left the caches, so they need not be
// read for ownership and kept there (-1.5% of a forward at N = 4096). False where this build or the alignment
// does not allow it.
inline bool stream_copy(void* dst, const void* src, size_t bytes) {
#if defined(__AVX512F__)
  if (bytes % 64 != 0 || reinterpret_cast<uintptr_t>(dst) % 64 != 0) return false;
  const char* from = static_cast<const char*>(src);
  char* to = static_cast<char*>(dst);
  for (size_t o = 0; o < bytes; o += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(to + o), _mm512_loadu_si512(from + o));
  return true;
#else
  return false;
#endif
}

struct Term {
  int64_t entry, feature;
  double coef;
};

// The constants: per factor the non-zero (entry, harmonic, coefficient) terms; per l block its offset and
// size; per row of A the columns where A is not identically zero.
struct FramePlan {
  int64_t n_features = 0, dim = 0;
  std::vector<Term> a_terms, b_terms;
  std::vector<int64_t> block_off, block_d;
  std::vector<std::vector<int64_t>> a_columns;  // per row index of the whole frame (offset + i), the m with A != 0

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
    a_columns.resize(dim);
    for (size_t blk = 0; blk < block_off.size(); ++blk) {
      const int64_t o = block_off[blk], d = block_d[blk];
      for (int64_t i = 0; i < d; ++i)
        for (int64_t m = 0; m < d; ++m)
          if (a_nonzero[o + i * d + m]) a_columns[o + i].push_back(m);
    }
  }
};

// The rows written are [prefix | frame], with `prefix` [n_edges, n_prefix] (contiguous; none if n_prefix = 0).
// Where they are dense (out_stride = n_prefix + frame_dim) a block's 16 rows are one contiguous piece of `out`,
// assembled in a tile and copied out whole. Written in place instead, 16 rows at a time (the strided `out` of
// edge_frames_out), the frames of a block are 6 passes of masked stores over 16 rows, which cost three times
// the arithmetic.
template <typename T, int L>
void frames_kernel(const T* vec, int64_t n_edges, const FramePlan& p, T* out, int64_t out_stride,
                   const T* prefix = nullptr, int64_t n_prefix = 0) {
  const int64_t n_blocks = (n_edges + L - 1) / L;
  const int64_t F = p.dim, K = p.n_features;
  at::parallel_for(0, n_blocks, 64, [&](int64_t b0, int64_t b1) {
    std::vector<T> fa(K * L), fb(K * L), A(F * L), B(F * L), D(F * L);
    const bool tiled = out_stride == n_prefix + F;  // dense rows
    std::vector<T> tile(tiled ? L * out_stride : 0);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t e0 = blk * L;
      const int nb = static_cast<int>(std::min<int64_t>(L, n_edges - e0));
      T x[L], y[L], z[L], ca[L], sa[L], cb[L], sb[L];
      for (int lane = 0; lane < L; ++lane) {  // missing lanes: the polar axis
        const bool real = lane < nb;
        x[lane] = real ? vec[3 * (e0 + lane)] : T(0);
        y[lane] = real ? vec[3 * (e0 + lane) + 1] : T(1);
        z[lane] = real ? vec[3 * (e0 + lane) + 2] : T(0);
      }
      // alpha = atan2(x, z) (0 on the polar axis, where any alpha is a valid frame), beta = acos(y)
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
        const T inv_r = T(1) / std::sqrt(x[lane] * x[lane] + y[lane] * y[lane] + z[lane] * z[lane]);
        const T nx = x[lane] * inv_r, ny = y[lane] * inv_r, nz = z[lane] * inv_r;
        const T rho2 = nx * nx + nz * nz;
        const bool on_axis = rho2 <= T(0);
        const T rho = std::sqrt(on_axis ? T(1) : rho2);
        ca[lane] = on_axis ? T(1) : nz / rho;
        sa[lane] = on_axis ? T(0) : nx / rho;
        cb[lane] = ny;
        sb[lane] = on_axis ? T(0) : rho;
      }
      // Harmonics 1, cos t, sin t, cos 2t, sin 2t, ... by the angle-addition recurrence.
      for (const auto& [f, c, s] : {std::make_tuple(fa.data(), ca, sa), std::make_tuple(fb.data(), cb, sb)}) {
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) f[lane] = T(1);
        for (int64_t k = 1; 2 * k < K; ++k) {
          T* cos_k = f + (2 * k - 1) * L;
          T* sin_k = f + (2 * k) * L;
          if (k == 1) {
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
              cos_k[lane] = c[lane];
              sin_k[lane] = s[lane];
            }
          } else {
            const T* cos_p = cos_k - 2 * L;
            const T* sin_p = sin_k - 2 * L;
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
              cos_k[lane] = cos_p[lane] * c[lane] - sin_p[lane] * s[lane];
              sin_k[lane] = sin_p[lane] * c[lane] + cos_p[lane] * s[lane];
            }
          }
        }
      }
      std::fill(A.begin(), A.end(), T(0));
      std::fill(B.begin(), B.end(), T(0));
      for (const Term& t : p.a_terms) {
        const T c = static_cast<T>(t.coef);
        const T* h = fa.data() + t.feature * L;
        T* o = A.data() + t.entry * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] += c * h[lane];
      }
      for (const Term& t : p.b_terms) {
        const T c = static_cast<T>(t.coef);
        const T* h = fb.data() + t.feature * L;
        T* o = B.data() + t.entry * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] += c * h[lane];
      }
      for (size_t bl = 0; bl < p.block_off.size(); ++bl) {
        const int64_t o = p.block_off[bl], d = p.block_d[bl];
        for (int64_t i = 0; i < d; ++i) {
          T* dst = D.data() + (o + i * d) * L;
          std::fill(dst, dst + d * L, T(0));
          for (int64_t m : p.a_columns[o + i]) {  // two at most: A turns about the polar axis
            const T* a = A.data() + (o + i * d + m) * L;
            const T* brow = B.data() + (o + m * d) * L;
            for (int64_t j = 0; j < d; ++j)
              GLASSMD_LANES for (int lane = 0; lane < L; ++lane) dst[j * L + lane] += a[lane] * brow[j * L + lane];
          }
        }
      }
      T* rows[L];
      for (int lane = 0; lane < nb; ++lane)
        rows[lane] = tiled ? tile.data() + lane * out_stride + n_prefix : out + (e0 + lane) * out_stride;
      if (!(nb == L && L == 16 && lanes_to_rows(D.data(), F, rows))) {
        for (int lane = 0; lane < nb; ++lane)
          for (int64_t f = 0; f < F; ++f) rows[lane][f] = D[f * L + lane];
      }
      if (tiled) {
        for (int lane = 0; lane < nb && n_prefix > 0; ++lane)
          std::memcpy(tile.data() + lane * out_stride, prefix + (e0 + lane) * n_prefix, n_prefix * sizeof(T));
        T* dst = out + e0 * out_stride;
        const size_t bytes = nb * out_stride * sizeof(T);
        if (!stream_copy(dst, tile.data(), bytes)) std::memcpy(dst, tile.data(), bytes);
      }
    }
#if defined(__AVX512F__)
    if (tiled) _mm_sfence();  // the streamed rows are complete before the caller reads them
#endif
  });
}

// The [E, 3] edge vectors of a call to `op`, contiguous.
Tensor checked_edge_vec(const Tensor& edge_vec, const char* op) {
  TORCH_CHECK(edge_vec.device().is_cpu(), "glassmd::", op, " runs on the CPU");
  TORCH_CHECK(edge_vec.dim() == 2 && edge_vec.size(1) == 3, op, ": edge_vec must be [E, 3]");
  return edge_vec.contiguous();
}

template <typename T>
void run_frames_kernel(const Tensor& edge_vec, const FramePlan& plan, Tensor& out, const T* prefix, int64_t n_prefix) {
  constexpr int L = 64 / sizeof(T);
  frames_kernel<T, L>(edge_vec.data_ptr<T>(), edge_vec.size(0), plan, out.data_ptr<T>(), out.stride(0), prefix,
                      n_prefix);
}

// [prefix | frames] rows of every edge, [E, n_prefix + frame_dim]: the per-edge array of the fused evaluation
// (radial basis and frames side by side), written in one pass; with an [E, 0] prefix, the frames alone.
Tensor edge_frame_rows_cpu(const Tensor& edge_vec_in, const Tensor& prefix_in, const Tensor& alpha_coef,
                           const Tensor& beta_coef, int64_t l_max, const char* op = "edge_frame_rows") {
  const Tensor edge_vec = checked_edge_vec(edge_vec_in, op);
  TORCH_CHECK(prefix_in.device().is_cpu() && prefix_in.dim() == 2 && prefix_in.size(0) == edge_vec.size(0) &&
                  prefix_in.scalar_type() == edge_vec.scalar_type(),
              op, ": prefix must be [E, n] of the edges' dtype");
  const Tensor prefix = prefix_in.contiguous();
  FramePlan plan(alpha_coef, beta_coef, l_max);
  Tensor out = at::empty({edge_vec.size(0), prefix.size(1) + plan.dim}, edge_vec.options());
  if (edge_vec.size(0) == 0) return out;
  if (plan.dim == 0) return out.copy_(prefix);
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_edge_frame_rows", [&] {
    run_frames_kernel<scalar_t>(edge_vec, plan, out, prefix.data_ptr<scalar_t>(), prefix.size(1));
  });
  return out;
}

// The frames written into `out`, an [E, frame_dim] array whose rows may be strided (columns of a wider array).
void edge_frames_out_cpu(const Tensor& edge_vec_in, const Tensor& alpha_coef, const Tensor& beta_coef, int64_t l_max,
                         Tensor out) {
  const Tensor edge_vec = checked_edge_vec(edge_vec_in, "edge_frames_out");
  FramePlan plan(alpha_coef, beta_coef, l_max);
  TORCH_CHECK(out.dim() == 2 && out.size(0) == edge_vec.size(0) && out.size(1) == plan.dim &&
                  out.scalar_type() == edge_vec.scalar_type() && out.device().is_cpu() &&
                  (out.size(1) <= 1 || out.stride(1) == 1),
              "edge_frames_out: out must be [E, frame_dim] of the edges' dtype with contiguous rows");
  if (edge_vec.size(0) == 0 || plan.dim == 0) return;
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_edge_frames_out", [&] {
    run_frames_kernel<scalar_t>(edge_vec, plan, out, nullptr, 0);
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(glassmd, m) {
  m.def("edge_frame_rows(Tensor edge_vec, Tensor prefix, Tensor alpha_coef, Tensor beta_coef, int l_max) -> Tensor");
  m.def("edge_frames(Tensor edge_vec, Tensor alpha_coef, Tensor beta_coef, int l_max) -> Tensor");
  // The same into a given array; declared as writing it, so TorchScript keeps the call. Model files exported
  // before edge_frame_rows call it.
  m.def("edge_frames_out(Tensor edge_vec, Tensor alpha_coef, Tensor beta_coef, int l_max, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(glassmd, CPU, m) {
  m.impl("edge_frame_rows", [](const Tensor& v, const Tensor& prefix, const Tensor& a, const Tensor& b, int64_t l_max) {
    return edge_frame_rows_cpu(v, prefix, a, b, l_max);
  });
  m.impl("edge_frames", [](const Tensor& v, const Tensor& a, const Tensor& b, int64_t l_max) {
    return edge_frame_rows_cpu(v, v.new_empty({v.dim() == 2 ? v.size(0) : 0, 0}), a, b, l_max, "edge_frames");
  });
  m.impl("edge_frames_out", &edge_frames_out_cpu);
}
