// glassmd::edge_frames (and edge_frame_rows): the Wigner matrices D^l(R_e), l = 1..l_max, of every edge
// (EdgeFrames in glassmd/model/fast_conv.py, which holds the torch formula and the constants).
//
// The torch formula contracts the outer product of both angles' harmonics with a [49, 83] constant matrix (4k
// multiply-adds per edge, and three [E, 49..83] arrays through memory); here the two factors of D are formed
// from their sparse coefficients, 16 edges per SIMD register (frame_math.h).
//
// Also glassmd::edge_blocks (and bessel_edge_blocks), the per-edge array of the paired evaluation: radial basis
// and edge vectors in blocks of lanes, from which glassmd::frame_conv_eval computes the frames itself.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "frame_math.h"
#include "lanes.h"

namespace {

using at::Tensor;
using namespace glassmd_lanes;
using glassmd_frames::FramePlan;
using glassmd_frames::FrameScratch;
using glassmd_frames::kLaneEdge;
using glassmd_frames::kLanePadding;
using glassmd_frames::kLanePair;

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

// The rows written are [prefix | frame], with `prefix` [n_edges, n_prefix] (contiguous; none if n_prefix = 0).
// Where they are dense (out_stride = n_prefix + frame_dim) a block's 16 rows are one contiguous piece of `out`,
// assembled in a tile and copied out whole. Written in place instead, 16 rows at a time (the strided `out` of
// edge_frames_out), the frames of a block are 6 passes of masked stores over 16 rows, which cost three times
// the arithmetic.
template <typename T, int L>
void frames_kernel(const T* vec, int64_t n_edges, const FramePlan& p, T* out, int64_t out_stride,
                   const T* prefix = nullptr, int64_t n_prefix = 0) {
  const int64_t n_blocks = (n_edges + L - 1) / L;
  const int64_t F = p.dim;
  at::parallel_for(0, n_blocks, 64, [&](int64_t b0, int64_t b1) {
    FrameScratch<T, L> scratch(p);
    LaneVector<T> D(F * L);
    const bool tiled = out_stride == n_prefix + F;  // dense rows
    LaneVector<T> tile(tiled ? L * out_stride : 0);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t e0 = blk * L;
      const int nb = static_cast<int>(std::min<int64_t>(L, n_edges - e0));
      T x[L], y[L], z[L];
      for (int lane = 0; lane < L; ++lane) {  // missing lanes: the polar axis
        const bool real = lane < nb;
        x[lane] = real ? vec[3 * (e0 + lane)] : T(0);
        y[lane] = real ? vec[3 * (e0 + lane) + 1] : T(1);
        z[lane] = real ? vec[3 * (e0 + lane) + 2] : T(0);
      }
      glassmd_frames::frames_of_block<T, L>(p, x, y, z, scratch, D.data());
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

// The per-edge array of the paired evaluation (glassmd::frame_conv_eval reads a block in place), for the pairs'
// rows [0, n_pairs) of `prefix` and `edge_vec` and the unpaired edges' rows after them: blocks of L = 64 bytes
// of lanes, each section starting a block, [n_blocks, n_prefix + 4, L], feature-major: the prefix (the radial
// basis), the edge vector, and a row of lane kinds saying what a lane holds: 2 a pair, 1 an unpaired edge,
// 0 padding (the last block of each section may be partial; its padding lanes hold the vector (0, 1, 0)).
// The kernel computes the frames of a block from its vectors: 93 values of basis and frame per edge were the
// largest array of a forward, and reading it back in every layer cost more than computing the frames again.
// [n_blocks, n_prefix + 4, L]: per block of L rows, the n_prefix values of each row, its edge vector and the
// lane kinds (pair blocks first: rows [0, n_pairs), then the other rows). vec(row) points at a row's vector;
// prefix(row0, nb, vecs, out) writes the values of rows row0 .. row0 + nb - 1 (vectors vecs[0 .. nb - 1]) into
// lanes 0 .. nb - 1 of the block.
template <typename T, typename Prefix, typename Vec>
Tensor write_edge_blocks(const Tensor& like, int64_t n_rows, int64_t n_pairs, int64_t n_prefix, Prefix prefix,
                         Vec vec) {
  TORCH_CHECK(n_pairs >= 0 && n_pairs <= n_rows, "edge_blocks: n_pairs must lie in [0, ", n_rows, "]");
  constexpr int64_t L = 64 / sizeof(T);
  const int64_t width = n_prefix + 4;
  const int64_t pair_blocks = (n_pairs + L - 1) / L;
  const int64_t n_blocks = pair_blocks + (n_rows - n_pairs + L - 1) / L;
  Tensor out = at::empty({n_blocks, width, L}, like.options());
  T* dst = out.data_ptr<T>();
  at::parallel_for(0, n_blocks, 256, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const bool pairs = b < pair_blocks;
      const int64_t e0 = pairs ? b * L : n_pairs + (b - pair_blocks) * L;
      const int64_t nb = std::min<int64_t>(L, (pairs ? n_pairs : n_rows) - e0);
      T* o = dst + b * width * L;
      const T* vecs[L];  // each row's vector looked up once (bessel_edge_blocks reads rows through an order)
      for (int64_t lane = 0; lane < nb; ++lane) vecs[lane] = vec(e0 + lane);
      prefix(e0, static_cast<int>(nb), vecs, o);
      for (int64_t lane = nb; lane < L; ++lane)
        for (int64_t f = 0; f < n_prefix; ++f) o[f * L + lane] = T(0);
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t lane = 0; lane < L; ++lane)
          o[(n_prefix + c) * L + lane] = lane < nb ? vecs[lane][c] : T(c == 1 ? 1 : 0);
      for (int64_t lane = 0; lane < L; ++lane)
        o[(n_prefix + 3) * L + lane] = lane >= nb ? T(kLanePadding) : pairs ? T(kLanePair) : T(kLaneEdge);
    }
  });
  return out;
}

Tensor edge_blocks_cpu(const Tensor& edge_vec_in, const Tensor& prefix_in, int64_t n_pairs) {
  const Tensor edge_vec = checked_edge_vec(edge_vec_in, "edge_blocks");
  const int64_t n_rows = edge_vec.size(0);
  TORCH_CHECK(prefix_in.device().is_cpu() && prefix_in.dim() == 2 && prefix_in.size(0) == n_rows &&
                  prefix_in.scalar_type() == edge_vec.scalar_type(),
              "edge_blocks: prefix must be [E, n] of the edges' dtype");
  const Tensor prefix = prefix_in.contiguous();
  const int64_t n_prefix = prefix.size(1);
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_edge_blocks", [&] {
    using T = scalar_t;
    constexpr int64_t L = 64 / sizeof(T);
    const T* vec = edge_vec.data_ptr<T>();
    const T* pre = prefix.data_ptr<T>();
    out = write_edge_blocks<T>(
        edge_vec, n_rows, n_pairs, n_prefix,
        [&](int64_t row0, int nb, const T* const*, T* o) {
          for (int lane = 0; lane < nb; ++lane)
            for (int64_t f = 0; f < n_prefix; ++f) o[f * L + lane] = pre[(row0 + lane) * n_prefix + f];
        },
        [&](int64_t row) { return vec + 3 * row; });
  });
  return out;
}

// sin and cos of t = k r for L lanes. For t in [0, pi] (edges within the cutoff) by Taylor polynomials of
// x = t - pi / 2 in [-pi/2, pi/2] (terms below 3e-16), which vectorise: one libm call of each per row took most
// of bessel_edge_blocks (18 ms at N = 32768); other t (longer edges) by libm.
template <int L>
void sin_cos_to_pi(double k, const double* r, double* s, double* c) {
  GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
    const double x = k * r[lane] - M_PI / 2, x2 = x * x;
    double sx = -1.0 / 121645100408832000.0;  // -1/19!
    double cx = 1.0 / 2432902008176640000.0;  // 1/20!
    const double sin_coef[9] = {1.0 / 355687428096000.0, -1.0 / 1307674368000.0, 1.0 / 6227020800.0,
                                -1.0 / 39916800.0,        1.0 / 362880.0,          -1.0 / 5040.0,
                                1.0 / 120.0,               -1.0 / 6.0,              1.0};
    const double cos_coef[10] = {-1.0 / 6402373705728000.0, 1.0 / 20922789888000.0, -1.0 / 87178291200.0,
                                 1.0 / 479001600.0,          -1.0 / 3628800.0,       1.0 / 40320.0,
                                 -1.0 / 720.0,               1.0 / 24.0,             -1.0 / 2.0,
                                 1.0};
    for (int i = 0; i < 9; ++i) sx = sx * x2 + sin_coef[i];
    for (int i = 0; i < 10; ++i) cx = cx * x2 + cos_coef[i];
    s[lane] = cx;       // sin(x + pi/2) = cos x
    c[lane] = -sx * x;  // cos(x + pi/2) = -sin x
  }
  for (int lane = 0; lane < L; ++lane) {
    const double t = k * r[lane];
    if (!(t >= 0.0 && t <= M_PI)) {
      s[lane] = std::sin(t);
      c[lane] = std::cos(t);
    }
  }
}

// glassmd::edge_blocks of the paired evaluation straight from the graph: the rows are the edges
// order[0, n_pairs) (first directions of the pairs) and order[2 n_pairs, E) (unpaired), as glassmd::pair_edges
// orders them, and their prefix is the Bessel basis sqrt(2 / r_c) sin(n pi r / r_c) / r, n = 1..n_radial
// (EdgeEmbedding.radial_basis), computed in float64 by the angle-addition recurrence. Replaces a row
// selection, the torch basis (one sin per value) and edge_blocks: 0.3 ms of a 1000-particle forward.
Tensor bessel_edge_blocks_cpu(const Tensor& edge_vec_in, const Tensor& order_in, int64_t n_pairs, int64_t n_radial,
                              double cutoff) {
  const Tensor edge_vec = checked_edge_vec(edge_vec_in, "bessel_edge_blocks");
  const int64_t n_edges = edge_vec.size(0);
  TORCH_CHECK(order_in.dim() == 1 && order_in.size(0) == n_edges, "bessel_edge_blocks: order must be [E]");
  TORCH_CHECK(n_pairs >= 0 && 2 * n_pairs <= n_edges, "bessel_edge_blocks: n_pairs must lie in [0, E / 2]");
  TORCH_CHECK(n_radial >= 1 && cutoff > 0, "bessel_edge_blocks: n_radial and cutoff must be positive");
  const Tensor order = order_in.to(at::kLong).contiguous();
  const int64_t* ord = order.data_ptr<int64_t>();
  auto edge_of = [=](int64_t row) {
    const int64_t e = ord[row < n_pairs ? row : row + n_pairs];
    TORCH_CHECK(e >= 0 && e < n_edges, "bessel_edge_blocks: order holds an edge out of range");
    return e;
  };
  const double norm = std::sqrt(2.0 / cutoff), k = M_PI / cutoff;
  Tensor out;
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_bessel_edge_blocks", [&] {
    using T = scalar_t;
    constexpr int64_t L = 64 / sizeof(T);
    const T* vec = edge_vec.data_ptr<T>();
    out = write_edge_blocks<T>(
        edge_vec, n_edges - n_pairs, n_pairs, n_radial,
        [&](int64_t, int nb, const T* const* vecs, T* o) {
          double r[L], s1[L], c1[L];
          for (int lane = 0; lane < nb; ++lane) {
            const T* v = vecs[lane];
            r[lane] = std::sqrt(double(v[0]) * v[0] + double(v[1]) * v[1] + double(v[2]) * v[2]);
          }
          for (int lane = nb; lane < L; ++lane) r[lane] = cutoff / 2;
          sin_cos_to_pi<L>(k, r, s1, c1);
          // All L lanes, in vectors (write_edge_blocks zeroes the missing ones after).
          double c2[L], scale[L], previous[L], current[L];  // sin((n - 1) t), sin(n t)
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
            c2[lane] = 2.0 * c1[lane];
            scale[lane] = norm / r[lane];
            previous[lane] = 0.0;
            current[lane] = s1[lane];
          }
          for (int64_t n = 0; n < n_radial; ++n) {
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
              o[n * L + lane] = static_cast<T>(current[lane] * scale[lane]);
              const double next = c2[lane] * current[lane] - previous[lane];
              previous[lane] = current[lane];
              current[lane] = next;
            }
          }
        },
        [&](int64_t row) { return vec + 3 * edge_of(row); });
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
  m.def("edge_blocks(Tensor edge_vec, Tensor prefix, int n_pairs) -> Tensor");
  m.def("bessel_edge_blocks(Tensor edge_vec, Tensor order, int n_pairs, int n_radial, float cutoff) -> Tensor");
  m.def("edge_frames(Tensor edge_vec, Tensor alpha_coef, Tensor beta_coef, int l_max) -> Tensor");
  // The same into a given array; declared as writing it, so TorchScript keeps the call. Model files exported
  // before edge_frame_rows call it.
  m.def("edge_frames_out(Tensor edge_vec, Tensor alpha_coef, Tensor beta_coef, int l_max, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(glassmd, CPU, m) {
  m.impl("edge_frame_rows", [](const Tensor& v, const Tensor& prefix, const Tensor& a, const Tensor& b, int64_t l_max) {
    return edge_frame_rows_cpu(v, prefix, a, b, l_max);
  });
  m.impl("edge_blocks", &edge_blocks_cpu);
  m.impl("bessel_edge_blocks", &bessel_edge_blocks_cpu);
  m.impl("edge_frames", [](const Tensor& v, const Tensor& a, const Tensor& b, int64_t l_max) {
    return edge_frame_rows_cpu(v, v.new_empty({v.dim() == 2 ? v.size(0) : 0, 0}), a, b, l_max, "edge_frames");
  });
  m.impl("edge_frames_out", &edge_frames_out_cpu);
}
