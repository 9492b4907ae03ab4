// glassmd::frame_conv: the edge-frame convolution of glassmd.model.fast_conv fused into one pass per edge.
//
// The pure-torch kernel (FrameConvKernel.messages) runs each step of a convolution (gather the sender,
// rotate into the edge frame, weight, mix channels, rotate back, sum over senders) as a separate torch op
// over blocks of edges; at 40 neighbours and 8 layers that is ~2 GFLOP of small, memory-bound steps. Here
// all steps of one block of L edges (one SIMD register of lanes) run back to back on buffers that stay in
// L1, with the edge index as the innermost (vectorised) dimension. Same arithmetic, same parameters, same
// layouts as the torch kernel; the plan tensors (which input component and which radial weight feed each
// output component) are built by FrameConvKernel from the module's own e3nn objects. The last layer of the
// radial MLP is evaluated here too (see Radial), so its [E, n_w] output never goes through memory.
//
// In training (frame_conv_factored) the mixing matrices come as their factors, so that the backward sums the
// gradient of the mixing weight per weight row (MixGroups); frame_conv, given the matrices, serves model files
// exported before. In evaluation (frame_conv_eval) the whole radial MLP runs per block (FirstLayer), and the
// edges may come in pairs i -> j, j -> i (glassmd::pair_edges, see forward_kernel): one radial MLP and one
// frame then serve both messages, and the two directions share every load (NS = 2 streams in the block
// functions).
//
// Threads take contiguous ranges of edges and sum into private copies of the outputs (node sums, parameter
// gradients), reduced at the end in thread order: results depend on the thread count only through rounding,
// and repeat exactly for a fixed one. Measurements behind each choice: benchmarks/RESULTS.md.

#include <torch/library.h>
#include <torch/autograd.h>
#include <ATen/Parallel.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <type_traits>
#include <optional>
#include <string>
#include <vector>

#include "frame_math.h"
#include "lanes.h"

namespace {

using namespace glassmd_lanes;

using at::Tensor;

// One non-zero (output m, path-channel k) product of an l_out block.
struct Entry {
  int64_t src;   // row of the rotated sender features
  int64_t wcol;  // column of the radial weights
  int64_t mix;   // offset of M[m][0][k] in the mix tensor (channel stride K)
};

struct OutBlock {
  int64_t lo, d, K, mix_off, out_off, frame_off;
  std::vector<int64_t> entry_begin;  // per m: first entry; entry_begin[d] = end
  std::vector<int8_t> reverse_sign;  // per m: sign of the component in the frame of the reverse edge
  std::vector<int64_t> active_m;     // the m with at least one product (z[m] = 0 for the others)
};

struct RotBlock {
  int64_t off, mul, l, frame_off;
};

struct Plan {
  int64_t dim_in, dim_out, channels, n_w, frame_dim;
  std::vector<RotBlock> rot;
  std::vector<uint8_t> rotated;  // per input feature: part of a rotated (l >= 1) block
  std::vector<OutBlock> blocks;
  std::vector<Entry> entries;
  std::vector<int8_t> reverse_sign;  // per input feature: its sign in the frame of the reverse edge

  // The frame of the reverse edge is D S with S the column signs of `flip` (reverse_frame_flip): the
  // reverse edge's rotated inputs are S x' and its outputs rotate back as D (S z).
  void set_reverse_signs(const float* flip) {
    reverse_sign.assign(dim_in, 1);
    for (const RotBlock& b : rot)
      for (int64_t u = 0; u < b.mul; ++u)
        for (int64_t i = 0; i < 2 * b.l + 1; ++i)
          reverse_sign[b.off + u * (2 * b.l + 1) + i] = flip[b.frame_off + i] < 0 ? -1 : 1;
    for (OutBlock& ob : blocks) {
      ob.reverse_sign.assign(ob.d, 1);
      if (ob.lo > 0)
        for (int64_t m = 0; m < ob.d; ++m) ob.reverse_sign[m] = flip[ob.frame_off + m] < 0 ? -1 : 1;
    }
  }
};

Plan make_plan(const Tensor& rot_in, const Tensor& lo_meta, const Tensor& src_index, const Tensor& weight_index,
               const Tensor& active, int64_t dim_in, int64_t dim_out, int64_t channels, int64_t n_w,
               int64_t frame_dim, int64_t mix_numel) {
  Plan p;
  p.dim_in = dim_in;
  p.dim_out = dim_out;
  p.channels = channels;
  p.n_w = n_w;
  p.frame_dim = frame_dim;
  auto rot = rot_in.contiguous().to(at::kLong);
  auto meta = lo_meta.contiguous().to(at::kLong);
  auto src = src_index.contiguous().to(at::kLong);
  auto widx = weight_index.contiguous().to(at::kLong);
  auto act = active.contiguous().to(at::kLong);
  const int64_t* r = rot.data_ptr<int64_t>();
  p.rotated.assign(dim_in, 0);
  for (int64_t i = 0; i < rot.numel() / 4; ++i) {
    RotBlock b{r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]};
    TORCH_CHECK(b.off >= 0 && b.off + b.mul * (2 * b.l + 1) <= dim_in, "frame_conv: bad rotation plan");
    TORCH_CHECK(b.frame_off + (2 * b.l + 1) * (2 * b.l + 1) <= frame_dim, "frame_conv: frame too short");
    for (int64_t f = b.off; f < b.off + b.mul * (2 * b.l + 1); ++f) p.rotated[f] = 1;
    p.rot.push_back(b);
  }
  const int64_t* m = meta.data_ptr<int64_t>();
  const int64_t* s = src.data_ptr<int64_t>();
  const int64_t* w = widx.data_ptr<int64_t>();
  const int64_t* a = act.data_ptr<int64_t>();
  int64_t frame_off = 0;
  for (int64_t i = 0; i < meta.numel() / 6; ++i) {
    OutBlock b;
    b.lo = m[6 * i];
    b.d = 2 * b.lo + 1;
    b.K = m[6 * i + 1];
    const int64_t s_off = m[6 * i + 2], w_off = m[6 * i + 3];
    b.mix_off = m[6 * i + 4];
    b.out_off = m[6 * i + 5];
    b.frame_off = frame_off;
    if (b.lo > 0) frame_off += b.d * b.d;
    TORCH_CHECK(b.out_off + b.d * channels <= dim_out, "frame_conv: bad output plan");
    TORCH_CHECK(b.lo == 0 || b.frame_off + b.d * b.d <= frame_dim, "frame_conv: frame too short");
    for (int64_t mm = 0; mm < b.d; ++mm) {
      b.entry_begin.push_back(static_cast<int64_t>(p.entries.size()));
      for (int64_t k = 0; k < b.K; ++k) {
        const int64_t q = s_off + mm * b.K + k;
        TORCH_CHECK(q < src.numel() && q < act.numel() && w_off + k < widx.numel(), "frame_conv: bad source plan");
        if (!a[q]) continue;
        Entry e{s[q], w[w_off + k], b.mix_off + mm * channels * b.K + k};
        TORCH_CHECK(e.src >= 0 && e.src < dim_in && e.wcol >= 0 && e.wcol < n_w, "frame_conv: bad index plan");
        TORCH_CHECK(e.mix >= 0 && e.mix + (channels - 1) * b.K < mix_numel, "frame_conv: mixing matrices too short");
        p.entries.push_back(e);
      }
    }
    b.entry_begin.push_back(static_cast<int64_t>(p.entries.size()));
    // In the first layer (scalar inputs) only m = 0 of the edge frame gets products: rotating back then
    // needs one column of D, not d.
    for (int64_t mm = 0; mm < b.d; ++mm)
      if (b.entry_begin[mm + 1] > b.entry_begin[mm]) b.active_m.push_back(mm);
    p.blocks.push_back(std::move(b));
  }
  return p;
}

// A [rows, features] tensor read through its strides.
template <typename T>
struct Strided {
  const T* data;
  int64_t row_stride, col_stride;
  explicit Strided(const Tensor& t) : data(t.data_ptr<T>()), row_stride(t.stride(0)), col_stride(t.stride(1)) {}
  // Rows r0 .. r0+n-1 into out[f * L + lane].
  template <int L>
  void block_impl(int64_t r0, int n, int64_t n_features, T* out) const {
    if (row_stride == 1) {
      for (int64_t f = 0; f < n_features; ++f) {
        const T* src = data + r0 + f * col_stride;
        T* dst = out + f * L;
        for (int lane = 0; lane < n; ++lane) dst[lane] = src[lane];
      }
    } else if (n == L && L == 16 && col_stride == 1 && rows_to_lanes(row_pointers<L>(r0).data(), n_features, out)) {
      // done in registers
    } else if (n == L) {
      // Full block: one gather load per feature, contiguous stores.
      const T* base = data + r0 * row_stride;
      for (int64_t f = 0; f < n_features; ++f) {
        const T* src = base + f * col_stride;
        T* dst = out + f * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) dst[lane] = src[lane * row_stride];
      }
    } else {
      for (int lane = 0; lane < n; ++lane) {
        const T* src = data + (r0 + lane) * row_stride;
        for (int64_t f = 0; f < n_features; ++f) out[f * L + lane] = src[f * col_stride];
      }
    }
  }
  void block(int64_t r0, int n, int64_t n_features, T* out) const {
    block_impl<64 / sizeof(T)>(r0, n, n_features, out);
  }

  template <int L>
  std::array<const T*, L> row_pointers(int64_t r0) const {
    std::array<const T*, L> rows;
    for (int i = 0; i < L; ++i) rows[i] = data + (r0 + i) * row_stride;
    return rows;
  }
};

// The last layer of the radial MLP, weights = [relu](W h + b), evaluated per block inside the kernel: the
// [E, n_w] weights are never stored (as a torch tensor they are the largest array of the model, and reading
// them back from memory cost more than all the arithmetic of the convolution).
template <typename T>
struct Radial {
  const T* weight;  // [n_w, hidden]
  const T* bias;    // [n_w]
  int64_t hidden;
  bool output_relu;
};

// The first radial layer, hidden = relu(W1 B + b1), for evaluation (frame_conv_eval): the batch norm that
// follows it in the network is folded into the last layer by the caller, and dropout is off, so the hidden
// values of a block come from the edge's Bessel basis alone and no [E, hidden] array is written per layer.
template <typename T>
struct FirstLayer {
  const T* weight;  // [hidden, n_in]
  const T* bias;    // [hidden]
  int64_t n_in;
};

constexpr int64_t kRotGroup = 4;

// The message of an EdgeBlocks array whose lane kinds do not describe the edges of the call.
inline std::string edge_blocks_mismatch(int64_t n_blocks, int64_t n_edges) {
  return c10::str("frame_conv_eval: the edge blocks (", n_blocks, " blocks; lane kinds in the last row: 2 a pair, ",
                  "1 an unpaired edge, 0 padding) do not match edge_index (", n_edges,
                  " edges); pass the edges and features of one call to glassmd::edge_blocks together");
}

// The per-edge array of glassmd::edge_blocks, [n_blocks, n_basis + 4, L]: the pairs' blocks, then the unpaired
// edges' blocks, feature-major, read where they are. Block b: radial basis at basis + b * stride, edge vectors
// (x, y, z rows) at vec + b * stride; the frames of a block are computed from its vectors (frame_math.h).
template <typename T>
struct EdgeBlocks {
  const T* basis;
  const T* vec;
  int64_t stride;
  const glassmd_frames::FramePlan* frames;
  // Whether the lane kinds of block b (the row after the vectors) are `kind` in lanes [0, nb), 0 in the others.
  template <int L>
  bool lanes_match(int64_t b, T kind, int nb) const {
    const T* k = vec + b * stride + 3 * L;
    bool ok = true;
    for (int lane = 0; lane < L; ++lane) ok &= k[lane] == (lane < nb ? kind : T(0));
    return ok;
  }
};

// Edge vectors [E, 3], row-major, from which the training kernels compute the frames of each block
// (frame_conv_factored given alpha_coef and beta_coef): 3 values per edge read instead of the 83 of precomputed
// frames. Their [E, 83] array, 13 MB at N = 1000, was read back and transposed by every layer twice (forward and
// backward): with it a training step took 70-72 ms, with the vectors 61-62 (N = 1000, alternating runs).
template <typename T>
struct EdgeVectors {
  const T* vec;
  const glassmd_frames::FramePlan* frames;
};

// The radial MLP's hidden layer in training, dropout(batch_norm(relu(W1 B + b1))), computed per block inside the
// training kernels (glassmd::frame_conv_train) from the rows of the radial basis B, with the batch statistics of
// glassmd::radial_statistics: no [E, hidden] array of hidden values (nor of their gradients) goes through memory,
// and the batch norm's backward is summed in the same pass (HiddenGradSums). As an operator of its own
// (glassmd::radial_hidden) this layer took two passes over the edges forward and two backward, 6% of a step.
template <typename T>
struct TrainHidden {
  int64_t R, H;    // basis functions, hidden values
  const T* w1;     // [H, R]
  const T* b1;     // [H]
  const T* scale;  // [H]: gamma / sqrt(var + eps), and below beta - mean * scale (as radial_hidden computes them)
  const T* shift;
  const T* mean;   // [H] batch mean; and 1 / sqrt(var + eps), for the normalised activations of the backward
  const T* invstd;
  const int32_t* draws;  // [E]: bit j of draws[e] keeps hidden value j of edge e (with drop)
  bool drop;

  // The dropout factor of hidden value j for a lane drawing `bits`: 2 kept, 0 dropped; without dropout 1 for a
  // lane of the block (in_block) and 0 past it.
  T factor(int32_t bits, int64_t j, bool in_block) const {
    return drop ? T(int32_t(2 * ((uint32_t(bits) >> j) & 1u))) : T(in_block ? 1 : 0);
  }
};

// Calls f with the size d = 2l + 1 of an l block as a compile-time constant for the paper's l = 1..3, else with 0
// (read d at run time): with the size known, the loops of the rotations unroll and their index arithmetic folds
// (rotation into the edge frames of a pair block 840-906 -> 700-730 TSC, N = 1000).
template <typename F>
inline void with_block_size(int64_t d, F&& f) {
  switch (d) {
    case 3: f(std::integral_constant<int, 3>()); break;
    case 5: f(std::integral_constant<int, 5>()); break;
    case 7: f(std::integral_constant<int, 7>()); break;
    default: f(std::integral_constant<int, 0>());
  }
}

// Gathers of one block of edges into lane-major buffers [feature][L]; missing lanes are zero.
template <typename T, int L>
struct Block {
  // Per stream of messages (s = 0, and s = 1 for the reverse direction of a pair): xs, xr, z, and the messages,
  // which reuse the storage of xs (the gathered inputs are dead once rotated). A block's buffers, the radial
  // weights and the mix table are all read once per block; with a separate message buffer they came to about
  // 65 KB, more than the 48 KB of L1 (one layer at N = 4096 was 3-4% slower, A/B of the two builds).
  LaneVector<T> xs, xr, fr, hb, wb, z, rb, xs2, xr2, z2;
  LaneVector<T> wb2;    // training pair blocks: the radial weights of the reverse direction (its own dropout)
  LaneVector<T> ab;     // with TrainHidden: the relu activations before the batch norm, [hidden][L]
  int32_t bits[L] = {};  // with TrainHidden: the dropout draws of the block's lanes (0 past nb)
  const T* frame_rows = nullptr;  // the block's frames, [frame_dim][L] (in `fr`)
  Block(const Plan& p, int64_t z_size, int64_t hidden, int64_t n_basis = 0)
      : xs(std::max(p.dim_in, p.dim_out) * L),
        xr(p.dim_in * L),
        fr(p.frame_dim * L),
        hb(hidden * L),
        wb(p.n_w * L),
        z(z_size * L),
        rb(n_basis * L),
        xs2(std::max(p.dim_in, p.dim_out) * L),
        xr2(p.dim_in * L),
        z2(z_size * L),
        ab(hidden * L) {}

  // The radial weights of the reverse direction of a pair into wb2, from the hidden values in hb (wb2 is sized on
  // first use: the evaluation never needs it).
  void reverse_radial_weights(const Plan& p, const Radial<T>& r) {
    if (wb2.size() != wb.size()) wb2.assign(wb.size(), T(0));
    std::swap(wb, wb2);
    radial_weights(p, r);
    std::swap(wb, wb2);
  }
  T* xs_of(int s) { return s == 0 ? xs.data() : xs2.data(); }

  // Edges b0 .. b0+nb-1: their senders' features, frames and radial inputs.
  void gather(const Plan& p, int64_t b0, int nb, const int64_t* sender, const T* x, const Strided<T>& hidden,
              const Strided<T>& frame, const FirstLayer<T>* first = nullptr) {
    gather_senders(p, sender + b0, nb, x);
    gather_edge_rows(p, b0, nb, hidden, frame, first);
  }

  // The features of the senders of one block into the buffer of stream s. x_stride: the row stride of x
  // (0: dim_in; see SenderRows).
  void gather_senders(const Plan& p, const int64_t* senders, int nb, const T* x, int s = 0, int64_t x_stride = 0) {
    T* out = xs_of(s);
    if (nb < L) std::fill(out, out + p.dim_in * L, T(0));
    const int64_t stride = x_stride > 0 ? x_stride : p.dim_in;
    const T* xrows[L];
    for (int lane = 0; lane < nb; ++lane) xrows[lane] = x + senders[lane] * stride;
    // (a few features, as the one-hot types of the first layer: copied one by one, not by 16 x 16 transposes)
    if (!(nb == L && L == 16 && p.dim_in >= 8 && rows_to_lanes(xrows, p.dim_in, out))) {
      for (int lane = 0; lane < nb; ++lane)
        for (int64_t f = 0; f < p.dim_in; ++f) out[f * L + lane] = xrows[lane][f];
    }
  }

  // Rows r0 .. r0+nb-1 of the per-edge arrays: frames into fr, radial hidden values into hb. Weights and
  // frames are read through their strides: with the edge stride 1 (feature-major storage) every feature of a
  // block is one contiguous load. With `first`, `hidden` holds the radial basis and the hidden values are
  // computed from it.
  void gather_edge_rows(const Plan& p, int64_t r0, int nb, const Strided<T>& hidden, const Strided<T>& frame,
                        const FirstLayer<T>* first) {
    if (nb < L) {
      std::fill(fr.begin(), fr.end(), T(0));
      std::fill(hb.begin(), hb.end(), T(0));
      std::fill(rb.begin(), rb.end(), T(0));
    }
    frame.block(r0, nb, p.frame_dim, fr.data());
    frame_rows = fr.data();
    if (first == nullptr) {
      hidden.block(r0, nb, static_cast<int64_t>(hb.size() / L), hb.data());
      return;
    }
    hidden.block(r0, nb, first->n_in, rb.data());
    first_layer(*first, rb.data());
  }

  // Rows r0 .. r0+nb-1: radial hidden values into hb, frames computed from the edge vectors into fr. Missing
  // lanes get the polar axis (a valid frame; their hidden values and output gradients are zero). With th, the
  // hidden values come from the basis rows, with the dropout draws of the lanes' edges (draws[lane]).
  void gather_vector_rows(const Plan& p, int64_t r0, int nb, const Strided<T>& hidden, const EdgeVectors<T>& ev,
                          glassmd_frames::FrameScratch<T, L>& scratch, const TrainHidden<T>* th = nullptr,
                          const int32_t* draws = nullptr) {
    if (th != nullptr) {
      train_activations(*th, hidden, r0, nb);
      train_values(*th, draws, nb);
    } else {
      if (nb < L) std::fill(hb.begin(), hb.end(), T(0));
      hidden.block(r0, nb, static_cast<int64_t>(hb.size() / L), hb.data());
    }
    T vx[L], vy[L], vz[L];
    const T* v = ev.vec + 3 * r0;
    for (int lane = 0; lane < L; ++lane) {
      const bool real = lane < nb;
      vx[lane] = real ? v[3 * lane] : T(0);
      vy[lane] = real ? v[3 * lane + 1] : T(1);
      vz[lane] = real ? v[3 * lane + 2] : T(0);
    }
    glassmd_frames::frames_of_block<T, L>(*ev.frames, vx, vy, vz, scratch, fr.data());
    frame_rows = fr.data();
  }

  // Rows r0 .. r0+nb-1 of the hidden layer's activations from their radial basis (`basis`, TrainHidden):
  // ab = relu(W1 B + b1). The two directions of a pair share them (train_values then runs once per direction).
  void train_activations(const TrainHidden<T>& th, const Strided<T>& basis, int64_t r0, int nb) {
    if (nb < L) std::fill(rb.begin(), rb.end(), T(0));
    basis.block(r0, nb, th.R, rb.data());
    first_layer(FirstLayer<T>{th.w1, th.b1, th.R}, rb.data());
    std::copy(hb.begin(), hb.end(), ab.begin());
  }

  // hb = dropout(batch_norm(ab)) with the draws of the lanes' edges (draws[lane], lane < nb). Lanes past nb get
  // zero hidden values (their dropout factor is 0).
  void train_values(const TrainHidden<T>& th, const int32_t* draws, int nb) {
    for (int lane = 0; lane < L; ++lane) bits[lane] = lane < nb ? draws[lane] : 0;
    for (int64_t j = 0; j < th.H; ++j) {
      const T* a = ab.data() + j * L;
      T* h = hb.data() + j * L;
      const T sc = th.scale[j], sh = th.shift[j];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
        const T f = th.factor(bits[lane], j, lane < nb);
        h[lane] = (a[lane] * sc + sh) * f;
      }
    }
  }

  // Block b of EdgeBlocks: the frames from its edge vectors, the hidden values from its radial basis.
  void edge_block(const EdgeBlocks<T>& blocks, int64_t b, glassmd_frames::FrameScratch<T, L>& scratch,
                  const FirstLayer<T>& first) {
    const T* vec = blocks.vec + b * blocks.stride;
    glassmd_frames::frames_of_block<T, L>(*blocks.frames, vec, vec + L, vec + 2 * L, scratch, fr.data());
    frame_rows = fr.data();
    first_layer(first, blocks.basis + b * blocks.stride);
  }

  // hb = relu(W1 basis + b1), basis [n_in][L].
  void first_layer(const FirstLayer<T>& first, const T* basis) {
    const int64_t H = static_cast<int64_t>(hb.size() / L);
    if (first_layer_in_registers(first, basis, H)) return;
    for (int64_t h = 0; h < H; ++h) {
      T acc[L];
      const T b = first.bias[h];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[lane] = b;
      for (int64_t r = 0; r < first.n_in; ++r) {
        const T c = first.weight[h * first.n_in + r];
        const T* bv = basis + r * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[lane] += c * bv[lane];
      }
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) hb[h * L + lane] = acc[lane] > T(0) ? acc[lane] : T(0);
    }
  }

  // The paper's 16 hidden values of 16 edges as 16 AVX-512 sums, each basis row loaded once for all of them.
  // (first_layer keeps one sum at a time in memory, and its chain of n_in multiply-adds goes through a store and a
  // load each: TSC per pair block at N = 1000, 466 -> about 250.)
  bool first_layer_in_registers(const FirstLayer<T>& first, const T* basis, int64_t H) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && L == 16) {
      if (H != 16) return false;
      __m512 acc[16];
      for (int h = 0; h < 16; ++h) acc[h] = _mm512_set1_ps(first.bias[h]);
      for (int64_t r = 0; r < first.n_in; ++r) {
        const __m512 bv = _mm512_loadu_ps(basis + r * 16);
        for (int h = 0; h < 16; ++h)
          acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(first.weight[h * first.n_in + r]), bv, acc[h]);
      }
      for (int h = 0; h < 16; ++h) _mm512_storeu_ps(hb.data() + h * 16, _mm512_max_ps(acc[h], _mm512_setzero_ps()));
      return true;
    }
#endif
    return false;
  }

  // wb = [relu](W hb + b). (The backward's relu mask is wb > 0: no pre-activation values are kept.)
  void radial_weights(const Plan& p, const Radial<T>& r) {
    if (radial_weights_in_registers(p, r)) return;
    for (int64_t k = 0; k < p.n_w; ++k) {
      T acc[L];
      const T b = r.bias[k];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[lane] = b;
      const T* wk = r.weight + k * r.hidden;
      for (int64_t h = 0; h < r.hidden; ++h) {
        const T c = wk[h];
        const T* hv = hb.data() + h * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[lane] += c * hv[lane];
      }
      T* out = wb.data() + k * L;
      if (r.output_relu) {
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) out[lane] = acc[lane] > T(0) ? acc[lane] : T(0);
      } else {
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) out[lane] = acc[lane];
      }
    }
  }

  // The paper's 16 hidden values of 16 edges fill 16 AVX-512 registers, loaded once for all n_w outputs;
  // each output is then 16 FMAs with a broadcast weight. (The generic loop reloads them for every output.)
  bool radial_weights_in_registers(const Plan& p, const Radial<T>& r) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && L == 16) {
      if (r.hidden != 16) return false;
      __m512 h[16];
      uint32_t nonzero = 0;
      for (int i = 0; i < 16; ++i) {
        h[i] = _mm512_loadu_ps(hb.data() + i * 16);
        nonzero |= uint32_t(_mm512_cmp_ps_mask(h[i], _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0) << i;
      }
      if (nonzero != 0xFFFF && radial_outputs_of_nonzero(p, r, nonzero)) return true;
      int64_t k = 0;
      for (; k + kOutputs <= p.n_w; k += kOutputs) radial_outputs<kOutputs>(r, h, k);
      for (; k < p.n_w; ++k) radial_outputs<1>(r, h, k);
      return true;
    }
#endif
    return false;
  }

#if defined(__AVX512F__)
  // The last radial layer from the hidden values that are non-zero in some lane of the block (bit i of
  // `nonzero`): the others (a ReLU's zeros) add nothing. Pair blocks sorted by distance (glassmd::pair_edges)
  // share about half of them. Outputs in groups of 16 sums in registers, over a list of the non-zero hidden
  // values (one loop trip count per block, the same for all groups).
  static constexpr int kOutputGroup = 16;
  bool radial_outputs_of_nonzero(const Plan& p, const Radial<T>& r, uint32_t nonzero) {
    int32_t list[16];
    int n = 0;
    for (int i = 0; i < 16; ++i) {
      list[n] = i;
      n += (nonzero >> i) & 1;
    }
    int64_t k = 0;
    for (; k + kOutputGroup <= p.n_w; k += kOutputGroup) {
      __m512 acc[kOutputGroup];
      for (int t = 0; t < kOutputGroup; ++t) acc[t] = _mm512_set1_ps(r.bias[k + t]);
      const float* wk = r.weight + k * 16;
      for (int j = 0; j < n; ++j) {
        const int i = list[j];
        const __m512 hv = _mm512_loadu_ps(hb.data() + i * 16);
        for (int t = 0; t < kOutputGroup; ++t) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(wk[t * 16 + i]), hv, acc[t]);
      }
      for (int t = 0; t < kOutputGroup; ++t)
        _mm512_storeu_ps(wb.data() + (k + t) * 16,
                         r.output_relu ? _mm512_max_ps(acc[t], _mm512_setzero_ps()) : acc[t]);
    }
    for (; k < p.n_w; ++k) {
      __m512 acc = _mm512_set1_ps(r.bias[k]);
      for (int j = 0; j < n; ++j)
        acc = _mm512_fmadd_ps(_mm512_set1_ps(r.weight[k * 16 + list[j]]), _mm512_loadu_ps(hb.data() + list[j] * 16),
                              acc);
      _mm512_storeu_ps(wb.data() + k * 16, r.output_relu ? _mm512_max_ps(acc, _mm512_setzero_ps()) : acc);
    }
    return true;
  }

  // Outputs k .. k+NK-1 of the last radial layer from the hidden values in h. NK outputs side by side: their
  // 2 NK chains of multiply-adds are independent in program order (one output at a time left the FMA units
  // waiting on each chain's latency).
  static constexpr int kOutputs = 4;
  template <int NK>
  void radial_outputs(const Radial<T>& r, const __m512* h, int64_t k) {
    __m512 acc[NK][2];
    for (int t = 0; t < NK; ++t) {
      acc[t][0] = _mm512_set1_ps(r.bias[k + t]);
      acc[t][1] = _mm512_setzero_ps();
    }
    const float* wk = r.weight + k * 16;
    for (int i = 0; i < 16; i += 2)
      for (int t = 0; t < NK; ++t) {
        acc[t][0] = _mm512_fmadd_ps(_mm512_set1_ps(wk[t * 16 + i]), h[i], acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(_mm512_set1_ps(wk[t * 16 + i + 1]), h[i + 1], acc[t][1]);
      }
    for (int t = 0; t < NK; ++t) {
      const __m512 sum = _mm512_add_ps(acc[t][0], acc[t][1]);
      _mm512_storeu_ps(wb.data() + (k + t) * 16, r.output_relu ? _mm512_max_ps(sum, _mm512_setzero_ps()) : sum);
    }
  }
#endif

  // x' = D^T x for every l >= 1 block of the senders' features of NS streams; l = 0 features are copied. The
  // second stream (the reverse edges, frame D S) gets S x' (Plan::set_reverse_signs), the signs applied as the
  // rows are stored rather than in a pass of their own.
  template <int NS>
  void rotate_in(const Plan& p) {
    const T* in[2] = {xs.data(), xs2.data()};
    T* out[2] = {xr.data(), xr2.data()};
    rotate_inputs<true, NS>(p, in, out, NS == 2 ? p.reverse_sign.data() : nullptr);
  }

  // out = D^T in (to_edge_frame) or D in (back to the sender's frame, for gradients) for every l >= 1
  // block of the input-feature vectors of NS streams with one frame; l = 0 features are copied.
  // (A template parameter: with a runtime flag the index arithmetic is not hoisted, about 10% slower.)
  // sign1: per input feature, a sign for the rows of stream 1 (nullptr: none).
  template <bool to_edge_frame, int NS = 1>
  void rotate_inputs(const Plan& p, const T* const* in, T* const* out, const int8_t* sign1 = nullptr) const {
    for (int s = 0; s < NS; ++s)
      for (int64_t f = 0; f < p.dim_in; ++f)
        if (!p.rotated[f])
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) out[s][f * L + lane] = in[s][f * L + lane];
    // Channels in groups of kRotGroup (and the NS streams) share each load of a rotation entry (the loads,
    // not the FMAs, bound it).
    for (const RotBlock& b : p.rot) {
      const int64_t d = 2 * b.l + 1;
      const int64_t row_step = to_edge_frame ? 1 : d, col_step = to_edge_frame ? d : 1;
      for (int64_t u0 = 0; u0 < b.mul; u0 += kRotGroup) {
        const int64_t nu = std::min<int64_t>(kRotGroup, b.mul - u0);
        if (nu == kRotGroup) {  // all accumulators in registers; each input load feeds two output rows
          with_block_size(d, [&](auto dd) {
            rotate_block<to_edge_frame, NS, decltype(dd)::value>(b, u0, in, out, sign1);
          });
          continue;
        }
        for (int64_t i = 0; i < d; ++i) {
          T acc[NS][kRotGroup][L] = {};
          for (int64_t j = 0; j < d; ++j) {
            const T* D = frame_rows + (b.frame_off + i * row_step + j * col_step) * L;
            for (int s = 0; s < NS; ++s) {
              const T* v = in[s] + (b.off + u0 * d) * L;
              for (int64_t u = 0; u < nu; ++u)
                GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[s][u][lane] += D[lane] * v[(u * d + j) * L + lane];
            }
          }
          for (int s = 0; s < NS; ++s) {
            T* o = out[s] + (b.off + u0 * d) * L;
            for (int64_t u = 0; u < nu; ++u) {
              const T sg = s == 1 && sign1 != nullptr ? T(sign1[b.off + (u0 + u) * d + i]) : T(1);
              GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[(u * d + i) * L + lane] = sg * acc[s][u][lane];
            }
          }
        }
      }
    }
  }

  // All output rows of rotate_inputs for the kRotGroup channels from u0. DD: the block size 2l + 1 when known at
  // compile time (0: from b; see with_block_size).
  template <bool to_edge_frame, int NS, int DD>
  void rotate_block(const RotBlock& b, int64_t u0, const T* const* in, T* const* out, const int8_t* sign1) const {
    const int64_t d = DD > 0 ? DD : 2 * b.l + 1;
    int64_t i = 0;
    for (; i + 1 < d; i += 2) rotate_rows<to_edge_frame, NS, 2, DD>(b, u0, i, in, out, sign1);
    if (i < d) rotate_rows<to_edge_frame, NS, 1, DD>(b, u0, i, in, out, sign1);
  }

  // Output rows i0 .. i0+NI-1 of rotate_inputs for the kRotGroup channels from u0.
  template <bool to_edge_frame, int NS, int NI, int DD>
  void rotate_rows(const RotBlock& b, int64_t u0, int64_t i0, const T* const* in, T* const* out,
                   const int8_t* sign1) const {
    const int64_t d = DD > 0 ? DD : 2 * b.l + 1;
    const int64_t row_step = to_edge_frame ? 1 : d, col_step = to_edge_frame ? d : 1;
    T acc[NI][NS][kRotGroup][L] = {};
    for (int64_t j = 0; j < d; ++j) {
      const T* D[NI];
      for (int r = 0; r < NI; ++r) D[r] = frame_rows + (b.frame_off + (i0 + r) * row_step + j * col_step) * L;
      for (int s = 0; s < NS; ++s)
        for (int u = 0; u < kRotGroup; ++u) {
          const T* v = in[s] + (b.off + (u0 + u) * d + j) * L;
          for (int r = 0; r < NI; ++r)
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[r][s][u][lane] += D[r][lane] * v[lane];
        }
    }
    for (int r = 0; r < NI; ++r)
      for (int s = 0; s < NS; ++s)
        for (int u = 0; u < kRotGroup; ++u) {
          const int64_t f = b.off + (u0 + u) * d + i0 + r;
          const T sg = s == 1 && sign1 != nullptr ? T(sign1[f]) : T(1);
          T* o = out[s] + f * L;
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] = sg * acc[r][s][u][lane];
        }
  }
};

// Rows mp0 .. mp0+NI-1 of the rotation back to the global frame, out[c][mp] = sum_m D[mp][m] z[m][c], for the
// kRotGroup channels from c0 of NS streams: each z load feeds NI rows, each D load NS x kRotGroup products.
// DD: ob.d when known at compile time (0: at run time; see with_block_size).
template <typename T, int L, int NS, int NI, int DD>
inline void rotate_out_rows(const OutBlock& ob, const T* fr, const T* const* z, T* const* msg, int64_t C, int64_t c0,
                            int64_t mp0) {
  const int64_t d = DD > 0 ? DD : ob.d;
  T acc[NI][NS][kRotGroup][L] = {};
  auto column = [&](int64_t m) {
    const T* D[NI];
    for (int r = 0; r < NI; ++r) D[r] = fr + (ob.frame_off + (mp0 + r) * d + m) * L;
    for (int s = 0; s < NS; ++s)
      for (int c = 0; c < kRotGroup; ++c) {
        const T* zz = z[s] + (m * C + c0 + c) * L;
        for (int r = 0; r < NI; ++r)
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[r][s][c][lane] += D[r][lane] * zz[lane];
      }
  };
  if (DD > 0 && static_cast<int64_t>(ob.active_m.size()) == DD) {
    for (int m = 0; m < DD; ++m) column(m);
  } else {
    for (int64_t m : ob.active_m) column(m);
  }
  for (int r = 0; r < NI; ++r)
    for (int s = 0; s < NS; ++s)
      for (int c = 0; c < kRotGroup; ++c) {
        T* o = msg[s] + (ob.out_off + (c0 + c) * d + mp0 + r) * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] = acc[r][s][c][lane];
      }
}

// Sums of per-edge rows into [n_rows, width] outputs, one private copy per thread beyond the first: edges
// are visited in storage order (their weight and frame rows are read sequentially; visiting them sorted by
// receiver instead makes every row a cache miss, 20x slower), so two threads may hit one output row.
template <typename T>
struct ThreadSums {
  T* first;
  int64_t size;
  std::vector<std::vector<T>> others;
  ThreadSums(T* out, int64_t n_rows, int64_t width, int n_threads)
      : first(out), size(n_rows * width), others(std::max(0, n_threads - 1)) {}
  T* mine() {
    const int tid = at::get_thread_num();
    if (tid == 0) return first;
    std::vector<T>& buf = others.at(tid - 1);
    if (buf.empty()) buf.assign(size, T(0));
    return buf.data();
  }
  void reduce() {
    for (auto& buf : others) {
      if (buf.empty()) continue;
      const T* src = buf.data();
      at::parallel_for(0, size, 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) first[i] += src[i];
      });
    }
  }
};

// The products of the forward mix packed for its inner loop: per entry (in Plan::entries order) the offsets of
// its rotated-input row and radial-weight row in a lane-major block (elements, int32) and its C mixing
// coefficients side by side. Read through Plan::entries, each product also cost two index loads, two shifts, an
// offset add and four coefficient loads K apart next to its 10 vector operations; packed, a forward at N = 4096
// is 1-5% faster (A/B of the two builds in alternating runs: benchmarks/RESULTS.md, session 6).
template <typename T, int L>
struct MixTable {
  std::vector<int32_t> offsets;  // per entry: src * L, wcol * L
  std::vector<T> coef;           // per entry: M[m][c][k] for c < C
  MixTable(const Plan& p, const T* mix) : offsets(2 * p.entries.size()), coef(p.entries.size() * p.channels) {
    for (const OutBlock& ob : p.blocks)
      for (int64_t q = ob.entry_begin.front(); q < ob.entry_begin.back(); ++q) {
        const Entry& en = p.entries[q];
        offsets[2 * q] = static_cast<int32_t>(en.src * L);
        offsets[2 * q + 1] = static_cast<int32_t>(en.wcol * L);
        for (int64_t c = 0; c < p.channels; ++c) coef[q * p.channels + c] = mix[en.mix + c * ob.K];
      }
  }
};

// The products of the forward mix for pair blocks (two streams), regrouped by source: two products of one output
// m that read the same rotated input (paths of one l_in and channel with different l_filter: 156 such twins among
// the 452 products of the paper's layers) are summed as s[c] = M0[c] w0 + M1[c] w1 once for both streams, then
// z_s[c] += s[c] x_s. Per twin that is 16 vector operations instead of 20 (C = 4); with one stream it would be
// 12 instead of 10, so unpaired blocks and the training forward keep MixTable.
template <typename T, int L>
struct TwinMixTable {
  std::vector<int32_t> twin_offsets;    // per twin: src * L, wcol0 * L, wcol1 * L
  std::vector<T> twin_coef;             // per twin: M0[c] for c < C, then M1[c]
  std::vector<int32_t> single_offsets;  // per remaining product: src * L, wcol * L
  std::vector<T> single_coef;           // per remaining product: M[c]
  // At the first entry of each m (Plan::entries order) and at the end of each block: the first twin and the
  // first single product of that m.
  std::vector<int32_t> twin_begin, single_begin;
  TwinMixTable(const Plan& p, const T* mix) : twin_begin(p.entries.size() + 1), single_begin(p.entries.size() + 1) {
    const int64_t C = p.channels;
    for (const OutBlock& ob : p.blocks)
      for (int64_t m = 0; m < ob.d; ++m) {
        const int64_t q0 = ob.entry_begin[m], q1 = ob.entry_begin[m + 1];
        twin_begin[q0] = static_cast<int32_t>(twin_offsets.size() / 3);
        single_begin[q0] = static_cast<int32_t>(single_offsets.size() / 2);
        std::vector<uint8_t> used(q1 - q0, 0);
        for (int64_t q = q0; q < q1; ++q) {
          if (used[q - q0]) continue;
          const Entry& a = p.entries[q];
          int64_t twin = -1;
          for (int64_t r = q + 1; r < q1 && twin < 0; ++r)
            if (!used[r - q0] && p.entries[r].src == a.src) twin = r;
          used[q - q0] = 1;
          if (twin < 0) {
            single_offsets.insert(single_offsets.end(),
                                  {static_cast<int32_t>(a.src * L), static_cast<int32_t>(a.wcol * L)});
            for (int64_t c = 0; c < C; ++c) single_coef.push_back(mix[a.mix + c * ob.K]);
            continue;
          }
          used[twin - q0] = 1;
          const Entry& b = p.entries[twin];
          twin_offsets.insert(twin_offsets.end(), {static_cast<int32_t>(a.src * L), static_cast<int32_t>(a.wcol * L),
                                                   static_cast<int32_t>(b.wcol * L)});
          for (int64_t c = 0; c < C; ++c) twin_coef.push_back(mix[a.mix + c * ob.K]);
          for (int64_t c = 0; c < C; ++c) twin_coef.push_back(mix[b.mix + c * ob.K]);
        }
        twin_begin[q1] = static_cast<int32_t>(twin_offsets.size() / 3);
        single_begin[q1] = static_cast<int32_t>(single_offsets.size() / 2);
      }
  }
};

// The mix tables of one call: MixTable, and TwinMixTable for the pair blocks. Built per call, or once per layer by
// interaction_eval (EvalConstants).
template <typename T, int L>
struct MixTables {
  MixTable<T, L> table;
  TwinMixTable<T, L> twins;
  MixTables(const Plan& p, const T* mix) : table(p, mix), twins(p, mix) {}
};

// mix_block for NS = 2 streams and CC channels (known at compile time) from a TwinMixTable.
template <typename T, int L, int CC>
__attribute__((noinline)) void mix_block_twins(const OutBlock& ob, const TwinMixTable<T, L>& table, const T* wb,
                                               const T* const* xr, T* const* z) {
  const T* const xr0 = xr[0];
  const T* const xr1 = xr[1];
#if defined(__AVX512F__)
  // The paper's 4 channels, float: the 8 sums of an m stay in registers from the twins through the single
  // products (as lane loops GCC stored them between the two loops and loaded them back).
  if constexpr (std::is_same_v<T, float> && L == 16 && CC == 4) {
    for (int64_t m = 0; m < ob.d; ++m) {
      const int64_t q0 = ob.entry_begin[m], q1 = ob.entry_begin[m + 1];
      __m512 a0[4], a1[4];
      for (int c = 0; c < 4; ++c) a0[c] = a1[c] = _mm512_setzero_ps();
      for (int32_t u = table.twin_begin[q0]; u < table.twin_begin[q1]; ++u) {
        const int32_t* off = table.twin_offsets.data() + 3 * u;
        const float* cf = table.twin_coef.data() + 8 * u;
        const __m512 w0 = _mm512_loadu_ps(wb + off[1]), w1 = _mm512_loadu_ps(wb + off[2]);
        const __m512 x0 = _mm512_loadu_ps(xr0 + off[0]), x1 = _mm512_loadu_ps(xr1 + off[0]);
        for (int c = 0; c < 4; ++c) {
          const __m512 sc =
              _mm512_fmadd_ps(_mm512_set1_ps(cf[4 + c]), w1, _mm512_mul_ps(_mm512_set1_ps(cf[c]), w0));
          a0[c] = _mm512_fmadd_ps(sc, x0, a0[c]);
          a1[c] = _mm512_fmadd_ps(sc, x1, a1[c]);
        }
      }
      for (int32_t u = table.single_begin[q0]; u < table.single_begin[q1]; ++u) {
        const int32_t* off = table.single_offsets.data() + 2 * u;
        const float* cf = table.single_coef.data() + 4 * u;
        const __m512 wv = _mm512_loadu_ps(wb + off[1]);
        const __m512 t0 = _mm512_mul_ps(wv, _mm512_loadu_ps(xr0 + off[0]));
        const __m512 t1 = _mm512_mul_ps(wv, _mm512_loadu_ps(xr1 + off[0]));
        for (int c = 0; c < 4; ++c) {
          const __m512 coef = _mm512_set1_ps(cf[c]);
          a0[c] = _mm512_fmadd_ps(coef, t0, a0[c]);
          a1[c] = _mm512_fmadd_ps(coef, t1, a1[c]);
        }
      }
      const __m512 sg = _mm512_set1_ps(float(ob.reverse_sign[m]));
      for (int c = 0; c < 4; ++c) {
        _mm512_storeu_ps(z[0] + (m * 4 + c) * 16, a0[c]);
        _mm512_storeu_ps(z[1] + (m * 4 + c) * 16, _mm512_mul_ps(sg, a1[c]));
      }
    }
    return;
  }
#endif
  for (int64_t m = 0; m < ob.d; ++m) {
    const int64_t q0 = ob.entry_begin[m], q1 = ob.entry_begin[m + 1];
    T acc[2][CC][L] = {};
    for (int32_t u = table.twin_begin[q0]; u < table.twin_begin[q1]; ++u) {
      const int32_t* off = table.twin_offsets.data() + 3 * u;
      const T* cf = table.twin_coef.data() + 2 * CC * u;
      const T* w0 = wb + off[1];
      const T* w1 = wb + off[2];
      const T* x0 = xr0 + off[0];
      const T* x1 = xr1 + off[0];
      for (int c = 0; c < CC; ++c) {
        T sc[L];
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) sc[lane] = cf[c] * w0[lane] + cf[CC + c] * w1[lane];
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[0][c][lane] += sc[lane] * x0[lane];
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[1][c][lane] += sc[lane] * x1[lane];
      }
    }
    for (int32_t u = table.single_begin[q0]; u < table.single_begin[q1]; ++u) {
      const int32_t* off = table.single_offsets.data() + 2 * u;
      const T* cf = table.single_coef.data() + CC * u;
      const T* wv = wb + off[1];
      T t[2][L];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) t[0][lane] = wv[lane] * xr0[off[0] + lane];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) t[1][lane] = wv[lane] * xr1[off[0] + lane];
      for (int c = 0; c < CC; ++c)
        for (int s = 0; s < 2; ++s)
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[s][c][lane] += cf[c] * t[s][lane];
    }
    const T sg = T(ob.reverse_sign[m]);
    for (int c = 0; c < CC; ++c) {
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) z[0][(m * CC + c) * L + lane] = acc[0][c][lane];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) z[1][(m * CC + c) * L + lane] = sg * acc[1][c][lane];
    }
  }
}

// z_s[m][c] = sum over the non-zero products (m, k) of M[m][c][k] w_s[k] x'_s[src(m, k)], for one l_out block and
// NS streams (the two directions of a pair; wb1: the second's radial weights, which differ from wb in training,
// where each direction draws its own dropout): each entry's offsets and mixing coefficients are loaded once for
// both. CC: the channel count when known at compile time (0: C).
// With NS = 2 the second stream's z[m] are stored times ob.reverse_sign[m] (the S of D S, see
// Plan::set_reverse_signs), ready to be rotated back with D.
// Not inlined: inlined into convolve_block, the loop ran out of general registers and reloaded its three base
// pointers from the stack for every product (15% more time in the mix, TSC counts per phase at N = 4096).
template <typename T, int L, int CC, int NS>
__attribute__((noinline)) void mix_block(const OutBlock& ob, const MixTable<T, L>& table, const T* wb,
                                         const T* wb1, const T* const* xr, T* const* z, int64_t C) {
  constexpr int kMax = CC > 0 ? CC : 1;
  const int32_t* offsets = table.offsets.data();
  const T* coefs = table.coef.data();
  const T* const xr0 = xr[0];
  const T* const xr1 = xr[NS - 1];
  for (int64_t m = 0; m < ob.d; ++m) {
    const int64_t q0 = ob.entry_begin[m], q1 = ob.entry_begin[m + 1];
    if (CC > 0) {
      T acc[NS][kMax][L] = {};
      for (int64_t q = q0; q < q1; ++q) {
        const T* cf = coefs + q * kMax;
        T t[NS][L];
        for (int s = 0; s < NS; ++s) {
          const T* wv = (s == 0 ? wb : wb1) + offsets[2 * q + 1];
          const T* xv = (s == 0 ? xr0 : xr1) + offsets[2 * q];
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) t[s][lane] = wv[lane] * xv[lane];
        }
        for (int c = 0; c < kMax; ++c)
          for (int s = 0; s < NS; ++s)
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[s][c][lane] += cf[c] * t[s][lane];
      }
      for (int s = 0; s < NS; ++s) {
        const T sg = s == 1 ? T(ob.reverse_sign[m]) : T(1);
        for (int c = 0; c < kMax; ++c)
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) z[s][(m * C + c) * L + lane] = sg * acc[s][c][lane];
      }
      continue;
    }
    for (int s = 0; s < NS; ++s) std::fill(z[s] + m * C * L, z[s] + (m + 1) * C * L, T(0));
    for (int64_t q = q0; q < q1; ++q) {
      const T* cf = coefs + q * C;
      for (int s = 0; s < NS; ++s) {
        const T* wv = (s == 0 ? wb : wb1) + offsets[2 * q + 1];
        T t[L];
        const T* xv = xr[s] + offsets[2 * q];
        const T sg = s == 1 ? T(ob.reverse_sign[m]) : T(1);
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) t[lane] = sg * wv[lane] * xv[lane];
        for (int64_t c = 0; c < C; ++c) {
          T* zc = z[s] + (m * C + c) * L;
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) zc[lane] += cf[c] * t[lane];
        }
      }
    }
  }
}

// Messages of one block of edges whose frames (fr) and radial weights (wb) are in `blk`, for NS streams: the
// edges themselves, and with NS = 2 also their reverses (the frame D S, see Plan::set_reverse_signs). Gather
// the senders, rotate into the edge frames, weight and mix, rotate back, add to the receivers' rows of acc_out.
// own_reverse_weights: the reverses have their own radial weights, in wb2 (training: dropout per direction).
template <typename T, int L, int NS>
void convolve_block(const Plan& p, Block<T, L>& blk, const int64_t* const* senders, const int64_t* const* receivers,
                    int nb, const T* x, int64_t x_stride, const MixTable<T, L>& table,
                    const TwinMixTable<T, L>* twins, T* acc_out, bool own_reverse_weights = false) {
  const int64_t C = p.channels;
  for (int s = 0; s < NS; ++s) blk.gather_senders(p, senders[s], nb, x, s, x_stride);
  blk.template rotate_in<NS>(p);
  const T* xr[2] = {blk.xr.data(), blk.xr2.data()};
  T* z[2] = {blk.z.data(), blk.z2.data()};
  T* msg[2] = {blk.xs.data(), blk.xs2.data()};  // see Block
  const T* wb1 = own_reverse_weights ? blk.wb2.data() : blk.wb.data();
  for (const OutBlock& ob : p.blocks) {
    // Pair blocks with the twins' table, the others with the plain one.
    auto mix = [&](auto cc) {
      constexpr int CC = decltype(cc)::value;
      if (NS == 2 && twins != nullptr && !own_reverse_weights)
        mix_block_twins<T, L, CC>(ob, *twins, blk.wb.data(), xr, z);
      else
        mix_block<T, L, CC, NS>(ob, table, blk.wb.data(), wb1, xr, z, C);
    };
    switch (C) {  // the common channel counts keep the accumulators of one m in registers
      case 2: mix(std::integral_constant<int, 2>()); break;
      case 4: mix(std::integral_constant<int, 4>()); break;
      case 8: mix(std::integral_constant<int, 8>()); break;
      default: mix_block<T, L, 0, NS>(ob, table, blk.wb.data(), wb1, xr, z, C);
    }
    // Back to the global frame, written in e3nn's (l_out, channel, m) layout.
    if (ob.lo == 0) {
      for (int s = 0; s < NS; ++s)
        for (int64_t c = 0; c < C; ++c) {
          T* o = msg[s] + (ob.out_off + c) * L;
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] = z[s][c * L + lane];
        }
      continue;
    }
    for (int64_t c0 = 0; c0 < C; c0 += kRotGroup) {
      const int64_t nc = std::min<int64_t>(kRotGroup, C - c0);
      if (nc == kRotGroup) {
        with_block_size(ob.d, [&](auto dd) {
          constexpr int DD = decltype(dd)::value;
          int64_t mp = 0;
          for (; mp + 1 < ob.d; mp += 2) rotate_out_rows<T, L, NS, 2, DD>(ob, blk.frame_rows, z, msg, C, c0, mp);
          if (mp < ob.d) rotate_out_rows<T, L, NS, 1, DD>(ob, blk.frame_rows, z, msg, C, c0, mp);
        });
        continue;
      }
      for (int64_t mp = 0; mp < ob.d; ++mp) {
        T acc[NS][kRotGroup][L] = {};
        for (int64_t m : ob.active_m) {
          const T* D = blk.frame_rows + (ob.frame_off + mp * ob.d + m) * L;
          for (int s = 0; s < NS; ++s) {
            const T* zz = z[s] + (m * C + c0) * L;
            for (int64_t c = 0; c < nc; ++c)
              GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[s][c][lane] += D[lane] * zz[c * L + lane];
          }
        }
        for (int s = 0; s < NS; ++s)
          for (int64_t c = 0; c < nc; ++c) {
            T* o = msg[s] + (ob.out_off + (c0 + c) * ob.d + mp) * L;
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) o[lane] = acc[s][c][lane];
          }
      }
    }
  }
  for (int s = 0; s < NS; ++s) {
    T* orows[L];
    for (int lane = 0; lane < nb; ++lane) orows[lane] = acc_out + receivers[s][lane] * p.dim_out;
    // (only single blocks come in a caller's order, where receivers repeat)
    const bool added = nb == L && L == 16 &&
                       (NS == 1 ? add_lanes_to_rows_in_runs(msg[s], p.dim_out, orows)
                                : add_lanes_to_rows(msg[s], p.dim_out, orows));
    if (!added) {
      for (int lane = 0; lane < nb; ++lane)
        for (int64_t f = 0; f < p.dim_out; ++f) orows[lane][f] += msg[s][f * L + lane];
    }
  }
}

// The node features with each row padded to whole cache lines (a multiple of L values, 64-byte aligned by
// torch's allocator). A row of the paper's 66 features starts 8 bytes further into a line than the one before,
// so in place most of the 16-value loads of a gather span two lines; padded, a gather loads whole lines. The
// sender gathers of a pair block took 8% less time (TSC counts per phase, N = 4096; the copy is about 1% of them).
template <typename T, int L>
struct SenderRows {
  Tensor padded;
  const T* data;
  int64_t stride;
  // x_stride: the row stride of x when larger than dim (rows already padded, by interaction_eval).
  SenderRows(const T* x, int64_t n_nodes, int64_t dim, int64_t x_stride = 0) : data(x), stride(dim) {
    if (x_stride > dim && x_stride % L == 0) {
      stride = x_stride;
      return;
    }
    if (dim % L == 0) return;
    stride = (dim + L - 1) / L * L;
    // the padding is never read (the gathers' loads are masked to the row)
    padded = at::empty({n_nodes, stride}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    T* out = padded.data_ptr<T>();
    at::parallel_for(0, n_nodes, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) std::copy(x + i * dim, x + (i + 1) * dim, out + i * stride);
    });
    data = out;
  }
};

// Indices outside [0, n_nodes) stop the block that holds them (nothing out of bounds is touched) and fail the call;
// checking them per block costs nothing next to the gathers they feed (a separate pass, min and max over
// edge_index, took 25 us of each layer's call at N = 1000).
struct IndexGuard {
  int64_t n_nodes;
  std::atomic<bool> bad{false};
  explicit IndexGuard(int64_t n) : n_nodes(n) {}
  bool ok(const int64_t* idx, int nb) {
    bool good = true;
    for (int lane = 0; lane < nb; ++lane) good &= static_cast<uint64_t>(idx[lane]) < static_cast<uint64_t>(n_nodes);
    if (!good) bad = true;
    return good;
  }
  void check() const { TORCH_CHECK(!bad, "frame_conv: edge_index out of range [0, ", n_nodes, ")"); }
};

// Edge order of a call with n_pairs > 0 (see pair_edges): edges [0, P) and [P, 2P) are the two directions of P
// pairs (k and P + k reversed), then the unpaired edges. The per-edge arrays (frames, radial input) have
// one row per pair, for its first direction, then one per unpaired edge: the radial weights depend on the
// distance only and the reverse frame is a sign flip (Plan::set_reverse_signs), so a pair costs one radial MLP
// and one frame read for two messages.
template <typename T, int L>
void forward_kernel(const Plan& p, const T* x, int64_t n_nodes, const int64_t* sender, const int64_t* receiver,
                    int64_t n_edges, int64_t n_pairs, const Strided<T>& hidden,
                    const Radial<T>& radial, const Strided<T>& frame, const T* mix, T* out,
                    const FirstLayer<T>* first = nullptr, const EdgeBlocks<T>* edge_blocks = nullptr,
                    int64_t x_stride = 0, const EdgeVectors<T>* vectors = nullptr,
                    const TrainHidden<T>* train_hidden = nullptr, const MixTables<T, L>* tables = nullptr) {
  int64_t max_d = 1;
  for (const auto& b : p.blocks) max_d = std::max(max_d, b.d);
  const int64_t n_single = n_edges - 2 * n_pairs;
  const int64_t pair_blocks = (n_pairs + L - 1) / L, single_blocks = (n_single + L - 1) / L;
  // Work is split in half-blocks of messages, so a pair block (32 messages) weighs twice a single block;
  // a block runs in the chunk that holds its first half.
  const int64_t n_work = 2 * pair_blocks + single_blocks;
  const int64_t grain = std::max<int64_t>(8, n_work / std::max(1, at::get_num_threads()) + 1);
  IndexGuard in_range(n_nodes);
  std::atomic<bool> bad_blocks{false};
  std::optional<MixTable<T, L>> own_table;
  std::optional<TwinMixTable<T, L>> own_twins;
  // In training (vectors) each direction of a pair draws its own dropout, so their radial weights differ; without
  // dropout (batch-norm recalibration) they are the same, and the pair blocks run as in evaluation: one radial
  // layer per pair, and twins sharing both directions' products.
  const bool own_reverse_weights = vectors != nullptr && train_hidden != nullptr && train_hidden->drop;
  const bool shared_weights = n_pairs > 0 && !own_reverse_weights;
  if (tables == nullptr) {
    own_table.emplace(p, mix);
    if (shared_weights) own_twins.emplace(p, mix);
  }
  const MixTable<T, L>& table = tables != nullptr ? tables->table : *own_table;
  const TwinMixTable<T, L>* twins =
      !shared_weights ? nullptr : tables != nullptr ? &tables->twins : &*own_twins;
  const SenderRows<T, L> rows(x, n_nodes, p.dim_in, x_stride);
  ThreadSums<T> sums(out, n_nodes, p.dim_out, at::get_num_threads());
  at::parallel_for(0, n_work, grain, [&](int64_t w_begin, int64_t w_end) {
    T* acc_out = sums.mine();
    Block<T, L> blk(p, max_d * p.channels, radial.hidden,
                    first != nullptr ? first->n_in : train_hidden != nullptr ? train_hidden->R : 0);
    std::optional<glassmd_frames::FrameScratch<T, L>> frame_scratch;
    if (edge_blocks != nullptr) frame_scratch.emplace(*edge_blocks->frames);
    if (vectors != nullptr) frame_scratch.emplace(*vectors->frames);
    for (int64_t w = w_begin; w < w_end; ++w) {
      if (w < 2 * pair_blocks) {
        if (w % 2 != 0) continue;
        const int64_t k0 = (w / 2) * L;
        const int nb = static_cast<int>(std::min<int64_t>(L, n_pairs - k0));
        if (edge_blocks != nullptr && w / 2 + 2 < pair_blocks) {
          // The edge arrays are read once per layer and at large N exceed the last-level cache, where they
          // would evict the node rows that the gathers reuse: fetched ahead as non-temporal.
          const char* next = reinterpret_cast<const char*>(edge_blocks->basis + (w / 2 + 2) * edge_blocks->stride);
          for (int64_t b = 0; b < edge_blocks->stride * int64_t(sizeof(T)); b += 64)
            _mm_prefetch(next + b, _MM_HINT_NTA);
          for (int s = 0; s < 2; ++s) {
            const int64_t e = (s == 0 ? k0 : n_pairs + k0) + 2 * L;
            _mm_prefetch(reinterpret_cast<const char*>(sender + e), _MM_HINT_NTA);
            _mm_prefetch(reinterpret_cast<const char*>(sender + e) + 64, _MM_HINT_NTA);
            _mm_prefetch(reinterpret_cast<const char*>(receiver + e), _MM_HINT_NTA);
            _mm_prefetch(reinterpret_cast<const char*>(receiver + e) + 64, _MM_HINT_NTA);
          }
        }
        if (edge_blocks != nullptr) {
          if (!edge_blocks->template lanes_match<L>(w / 2, T(2), nb)) {
            bad_blocks = true;
            continue;
          }
          blk.edge_block(*edge_blocks, w / 2, *frame_scratch, *first);
        } else if (vectors != nullptr) {
          // training: pairs need reverse_flip (Call), which of the calls with vectors only frame_conv_train passes
          blk.gather_vector_rows(p, k0, nb, hidden, *vectors, *frame_scratch, train_hidden,
                                 train_hidden->draws + k0);
        } else {
          blk.gather_edge_rows(p, k0, nb, hidden, frame, first);
        }
        blk.radial_weights(p, radial);
        // In training the two directions share the frames and the hidden layer's activations, not its dropout.
        if (own_reverse_weights) {
          blk.train_values(*train_hidden, train_hidden->draws + n_pairs + k0, nb);
          blk.reverse_radial_weights(p, radial);
        }
        const int64_t* senders[2] = {sender + k0, sender + n_pairs + k0};
        const int64_t* receivers[2] = {receiver + k0, receiver + n_pairs + k0};
        if (!(in_range.ok(senders[0], nb) && in_range.ok(senders[1], nb) && in_range.ok(receivers[0], nb) &&
              in_range.ok(receivers[1], nb)))
          continue;
        convolve_block<T, L, 2>(p, blk, senders, receivers, nb, rows.data, rows.stride, table, twins, acc_out,
                                own_reverse_weights);
      } else {
        const int64_t j0 = (w - 2 * pair_blocks) * L;
        const int nb = static_cast<int>(std::min<int64_t>(L, n_single - j0));
        if (edge_blocks != nullptr) {
          if (!edge_blocks->template lanes_match<L>(pair_blocks + j0 / L, T(1), nb)) {
            bad_blocks = true;
            continue;
          }
          blk.edge_block(*edge_blocks, pair_blocks + j0 / L, *frame_scratch, *first);
        } else if (vectors != nullptr) {
          blk.gather_vector_rows(p, n_pairs + j0, nb, hidden, *vectors, *frame_scratch, train_hidden,
                                 train_hidden != nullptr ? train_hidden->draws + 2 * n_pairs + j0 : nullptr);
        } else {
          blk.gather_edge_rows(p, n_pairs + j0, nb, hidden, frame, first);
        }
        blk.radial_weights(p, radial);
        const int64_t* senders[1] = {sender + 2 * n_pairs + j0};
        const int64_t* receivers[1] = {receiver + 2 * n_pairs + j0};
        if (!(in_range.ok(senders[0], nb) && in_range.ok(receivers[0], nb))) continue;
        convolve_block<T, L, 1>(p, blk, senders, receivers, nb, rows.data, rows.stride, table, nullptr, acc_out);
      }
    }
  });
  in_range.check();
  TORCH_CHECK(!bad_blocks, edge_blocks_mismatch(pair_blocks + single_blocks, n_edges));
  sums.reduce();
}

// Rows m0 .. m0+NI-1 of the output gradient in the edge frame, gz[m][c] = sum_m' D[m'][m] go[c][m'], for the
// kRotGroup channels from c0 (the transpose of rotate_out_rows, registers used the same way).
template <typename T, int L, int NI, int DD>
inline void rotate_grad_rows(const OutBlock& ob, const T* fr, const T* go, T* gz, int64_t C, int64_t c0, int64_t m0) {
  const int64_t d = DD > 0 ? DD : ob.d;
  T acc[NI][kRotGroup][L] = {};
  for (int64_t mp = 0; mp < d; ++mp) {
    const T* D[NI];
    for (int r = 0; r < NI; ++r) D[r] = fr + (ob.frame_off + mp * d + m0 + r) * L;
    for (int c = 0; c < kRotGroup; ++c) {
      const T* gg = go + (ob.out_off + (c0 + c) * d + mp) * L;
      for (int r = 0; r < NI; ++r)
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[r][c][lane] += D[r][lane] * gg[lane];
    }
  }
  for (int r = 0; r < NI; ++r)
    for (int c = 0; c < kRotGroup; ++c) {
      T* g = gz + ((m0 + r) * C + c0 + c) * L;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) g[lane] = acc[r][c][lane];
    }
}

// Gradient of the last radial layer's weights, dW[k][h] = sum over edges of g[k] h[h]: summing it into
// per-lane accumulators every block streams all n_w x hidden x 16 of them (147 KB, out of L1) through a
// load and a store per multiply-add. Instead the g vectors of kBlocks blocks and their hidden rows (edge-major,
// one AVX-512 register per edge) are kept, then reduced as a small matrix product: kRows rows of dW stay in
// registers over all the edges of the tile, each multiply-add taking g[k][e] as a broadcast operand, and no
// sum across lanes is needed (lanes are hidden values). Float, 16 lanes, 16 hidden values, AVX-512.
template <typename T, int L>
struct RadialGradTiles {
  static constexpr int64_t kBlocks = 16;
  static constexpr int kRows = 24;   // rows of dW per pass: 24 accumulators, one hidden row, spare registers
  LaneVector<T> g, h;                // [n_w][kBlocks][L], [kBlocks * L][H]
  std::vector<T> sum_w, sum_b;       // [n_w * H], [n_w]
  int64_t n_w = 0, H = 0, used = 0;

  static bool usable(int64_t hidden) {
#if defined(__AVX512F__)
    return std::is_same_v<T, float> && L == 16 && hidden == 16;
#else
    return false;
#endif
  }
  RadialGradTiles(int64_t n_w_, int64_t hidden)
      : g(n_w_ * kBlocks * L), h(hidden * kBlocks * L), sum_w(n_w_ * hidden), sum_b(n_w_), n_w(n_w_), H(hidden) {}

  // One block's masked output gradients (gw, [n_w][L]) and hidden values (hb, [H][L]).
  // (Lane loops, not std::copy: that is a memmove call per 64-byte row, 3% of a training step.)
  void add(const T* gw, const T* hb) {
    for (int64_t k = 0; k < n_w; ++k) {
      T* dst = g.data() + (k * kBlocks + used) * L;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) dst[lane] = gw[k * L + lane];
    }
    T* rows[L];
    for (int lane = 0; lane < L; ++lane) rows[lane] = h.data() + (used * L + lane) * H;
    glassmd_lanes::lanes_to_rows(hb, H, rows);
    if (++used == kBlocks) flush();
  }

  void flush() {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && L == 16) {
      int64_t k0 = 0;
      for (; k0 + kRows <= n_w; k0 += kRows) flush_rows<kRows>(k0);
      for (; k0 + 8 <= n_w; k0 += 8) flush_rows<8>(k0);
      for (; k0 < n_w; ++k0) flush_rows<1>(k0);
      for (int64_t k = 0; k < n_w; ++k) {
        __m512 acc_b = _mm512_setzero_ps();
        for (int64_t j = 0; j < used; ++j)
          acc_b = _mm512_add_ps(acc_b, _mm512_load_ps(g.data() + (k * kBlocks + j) * 16));
        sum_b[k] += _mm512_reduce_add_ps(acc_b);
      }
    }
#endif
    used = 0;
  }

#if defined(__AVX512F__)
  template <int NK>
  void flush_rows(int64_t k0) {
    __m512 acc[NK];
#pragma GCC unroll 32
    for (int t = 0; t < NK; ++t) acc[t] = _mm512_setzero_ps();
    const float* gk = g.data() + k0 * kBlocks * 16;
    const int64_t n_edges = used * 16;
    for (int64_t e = 0; e < n_edges; ++e) {
      const __m512 hv = _mm512_load_ps(h.data() + e * 16);
#pragma GCC unroll 32  // (without it GCC left this loop rolled, the accumulators on the stack: 2x slower)
      for (int t = 0; t < NK; ++t) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(gk[t * kBlocks * 16 + e]), hv, acc[t]);
    }
#pragma GCC unroll 32
    for (int t = 0; t < NK; ++t) {
      float* s = sum_w.data() + (k0 + t) * 16;
      _mm512_storeu_ps(s, _mm512_add_ps(_mm512_loadu_ps(s), acc[t]));
    }
  }
#endif
};

// The sums of the hidden layer's backward over one thread's blocks (TrainHidden): with g the gradient of the batch
// norm's output y = gamma xhat + beta (the hidden values' gradient times the dropout factors) and rho = [relu' > 0],
//   sg = sum g, sgx = sum g xhat, srg = sum rho g (per hidden value), P = sum rho g B^T (per hidden value and basis
//   function, as a small matrix product in RadialGradTiles when it applies).
// The batch norm's gradient dL/da = gamma invstd (g - mean(g) - xhat mean(g xhat)) needs the means of g before any
// edge's value, so its sums over the edges are expanded (FrameConvTrainFunction::backward), and these, with the
// statistics' own sums (radial_statistics), give dW1 and db1 without a second pass. Lane sums go to float64 every
// kFlush blocks.
template <typename T, int L>
struct HiddenGradSums {
  static constexpr int64_t kFlush = 64;
  int64_t H, R, blocks = 0;
  LaneVector<T> sg, sgx, srg, rg, kept;  // [H][L]; rg: one block's rho g; kept: its g (keep)
  std::vector<double> Sg, Sgx, Srg, P;  // [H], P [R][H]
  bool tiled;
  RadialGradTiles<T, L> tiles;  // P^T[r][j] = sum_e B[r][e] rg[j][e]: n_w = R rows, "hidden" = H
  HiddenGradSums(int64_t hidden, int64_t n_basis)
      : H(hidden), R(n_basis), sg(hidden * L, T(0)), sgx(hidden * L, T(0)), srg(hidden * L, T(0)), rg(hidden * L),
        kept(hidden * L),
        Sg(hidden, 0.0), Sgx(hidden, 0.0), Srg(hidden, 0.0), P(n_basis * hidden, 0.0),
        tiled(RadialGradTiles<T, L>::usable(hidden)), tiles(tiled ? n_basis : 0, tiled ? hidden : 0) {}

  // One block's gradient of the batch norm's output, g = gh (its hidden values' gradient) times the dropout
  // factors of its draws `bits`, kept for add_kept (accumulate: added to the kept one). The two directions of a
  // pair share the batch norm's output, its activations and basis: their g add up, and the sums of add_kept,
  // linear in g, run once per pair block.
  void keep(const TrainHidden<T>& th, const T* gh, const int32_t* bits, int nb, bool accumulate) {
    for (int64_t j = 0; j < H; ++j) {
      const T* gj = gh + j * L;
      T* k = kept.data() + j * L;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
        const T f = th.factor(bits[lane], j, lane < nb);
        k[lane] = (accumulate ? k[lane] : T(0)) + gj[lane] * f;
      }
    }
  }

  // The sums of the kept g of one block (or pair block) with activations ab and basis rb [R][L].
  void add_kept(const TrainHidden<T>& th, const T* ab, const T* rb) {
    for (int64_t j = 0; j < H; ++j) {
      const T* a = ab + j * L;
      const T* gj = kept.data() + j * L;
      T* s = sg.data() + j * L;
      T* sx = sgx.data() + j * L;
      T* sr = srg.data() + j * L;
      T* r = rg.data() + j * L;
      const T mu = th.mean[j], is = th.invstd[j];
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
        const T g = gj[lane];
        const T rho_g = a[lane] > T(0) ? g : T(0);
        s[lane] += g;
        sx[lane] += g * ((a[lane] - mu) * is);
        sr[lane] += rho_g;
        r[lane] = rho_g;
      }
    }
    if (tiled) {
      tiles.add(rb, rg.data());
    } else {
      for (int64_t q = 0; q < R; ++q)
        for (int64_t j = 0; j < H; ++j) {
          double acc = 0;
          for (int lane = 0; lane < L; ++lane) acc += double(rb[q * L + lane]) * double(rg[j * L + lane]);
          P[q * H + j] += acc;
        }
    }
    if (++blocks % kFlush == 0) flush_lanes();
  }

  void flush_lanes() {
    for (int64_t j = 0; j < H; ++j)
      for (int lane = 0; lane < L; ++lane) {
        Sg[j] += sg[j * L + lane];
        Sgx[j] += sgx[j * L + lane];
        Srg[j] += srg[j * L + lane];
        sg[j * L + lane] = sgx[j * L + lane] = srg[j * L + lane] = T(0);
      }
  }

  void merge(const HiddenGradSums& o) {
    for (int64_t j = 0; j < H; ++j) {
      Sg[j] += o.Sg[j];
      Sgx[j] += o.Sgx[j];
      Srg[j] += o.Srg[j];
    }
    for (int64_t i = 0; i < R * H; ++i) P[i] += o.P[i];
  }

  // All sums into Sg, Sgx, Srg, P (at the end of the thread's blocks).
  void finish() {
    flush_lanes();
    if (tiled) {
      tiles.flush();
      for (int64_t i = 0; i < R * H; ++i) P[i] += tiles.sum_w[i];
    }
  }
};

// The hidden-value gradient of the last radial layer, gh[h] = sum_k W[k][h] [wb[k] > 0] gw[k], with the
// paper's 16 hidden values of 16 edges in 16 AVX-512 registers for all n_w outputs (as radial_weights_in_registers
// does forward); the generic loop loads and stores gh for every multiply-add. Also masks gw in place.
template <typename T, int L>
bool hidden_grad_in_registers(const Plan& p, const Radial<T>& r, T* gw, const T* wb, T* gh) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && L == 16) {
    if (r.hidden != 16) return false;
    __m512 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t k = 0; k < p.n_w; ++k) {
      __m512 g = _mm512_loadu_ps(gw + k * 16);
      if (r.output_relu) {
        g = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(wb + k * 16), zero, _CMP_GT_OQ), zero, g);
        _mm512_storeu_ps(gw + k * 16, g);
      }
      const float* wk = r.weight + k * 16;
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(wk[i]), g, acc[i]);
    }
    for (int i = 0; i < 16; ++i) _mm512_storeu_ps(gh + i * 16, acc[i]);
    return true;
  }
#endif
  return false;
}

// The mixing matrices as products M[m][c][k] = a[m][k] W[k][c] (W: the o3.Linear weight of one path output, a:
// its Clebsch-Gordan constant in the edge frame times the path weight). The backward sums the parameter gradient
// per group (one row W[k], all the m it feeds): sum_m a[m][k] gz[m][c] x'[src(m, k)] is formed in registers
// and one accumulator per (k, c) takes it, where the gradient of M itself needs one per product (m, k, c).
// With 4 channels that is 36 KB of per-lane accumulators instead of 115 KB (L1 instead of L2), and the
// radial-weight gradient of the group, sum_c W[k][c] y[c], comes out of the same sums. Given M alone
// (glassmd::frame_conv) every product is its own group with a = 1.
template <typename T>
struct MixGroups {
  int64_t C = 0;
  std::vector<int64_t> block_begin;   // per OutBlock: its first group; back(): the group count
  std::vector<int64_t> member_begin;  // per group: its first member (a product m, k); back(): the member count
  std::vector<int32_t> wcol;          // per group: its radial-weight column
  std::vector<T> w;                   // per group: W[k][c], c < C
  std::vector<int64_t> target;        // per group: the element of the gradient output that (k, c) sums into
  std::vector<int32_t> gz_row, src;   // per member: m * C (its row of gz) and its rotated-input row
  std::vector<T> a, a_w;              // per member: a[m][k], and a[m][k] W[k][c] for c < C
  // per group: whether it opens a bundle of kBundle groups (see mix_grads_bundle) within its OutBlock
  std::vector<uint8_t> opens_bundle;
  static constexpr int kBundle = 4;

  int64_t groups() const { return static_cast<int64_t>(wcol.size()); }

  void add_member(int64_t m, const Entry& en, T a_q) {
    gz_row.push_back(static_cast<int32_t>(m * C));
    src.push_back(static_cast<int32_t>(en.src));
    a.push_back(a_q);
    for (int64_t c = 0; c < C; ++c) a_w.push_back(a_q * w[(groups() - 1) * C + c]);
  }
  void open_group(const Entry& en, const T* w_row, const int64_t* targets) {
    member_begin.push_back(static_cast<int64_t>(a.size()));
    wcol.push_back(static_cast<int32_t>(en.wcol));
    for (int64_t c = 0; c < C; ++c) {
      w.push_back(w_row[c]);
      target.push_back(targets[c]);
    }
  }
  void close() {
    member_begin.push_back(static_cast<int64_t>(a.size()));
    find_bundles();
  }

  // Runs of kBundle groups of one OutBlock with the same count of members and the same gz rows, member by
  // member (the channels u of one path: same output components m, different inputs and weight rows).
  void find_bundles() {
    opens_bundle.assign(groups(), 0);
    for (size_t ob = 0; ob + 1 < block_begin.size(); ++ob) {
      for (int64_t g = block_begin[ob]; g + kBundle <= block_begin[ob + 1];) {
        const int64_t n = member_begin[g + 1] - member_begin[g];
        bool same = true;
        for (int u = 1; u < kBundle && same; ++u) {
          const int64_t q0 = member_begin[g + u];
          same = member_begin[g + u + 1] - q0 == n;
          for (int64_t i = 0; i < n && same; ++i) same = gz_row[q0 + i] == gz_row[member_begin[g] + i];
        }
        opens_bundle[g] = same;
        g += same ? kBundle : 1;
      }
    }
  }
};

// Every product its own group (a = 1, W[k][c] = M[m][c][k]): the gradient of the mixing matrices M.
template <typename T>
MixGroups<T> product_groups(const Plan& p, const T* mix) {
  MixGroups<T> g;
  g.C = p.channels;
  std::vector<T> row(p.channels);
  std::vector<int64_t> targets(p.channels);
  for (const OutBlock& ob : p.blocks) {
    g.block_begin.push_back(g.groups());
    for (int64_t m = 0; m < ob.d; ++m)
      for (int64_t q = ob.entry_begin[m]; q < ob.entry_begin[m + 1]; ++q) {
        const Entry& en = p.entries[q];
        for (int64_t c = 0; c < p.channels; ++c) {
          targets[c] = en.mix + c * ob.K;
          row[c] = mix[targets[c]];
        }
        g.open_group(en, row.data(), targets.data());
        g.add_member(m, en, T(1));
      }
  }
  g.block_begin.push_back(g.groups());
  g.close();
  return g;
}

// The groups of M = weight[index] * coef (FrameConvKernel.mix_matrices): the gradient of `weight`. Fails if
// M is not of the product form (the index of (m, c, k) must not depend on m, nor the constant on c).
template <typename T>
MixGroups<T> weight_groups(const Plan& p, const T* weight, int64_t weight_numel, const int64_t* index, const T* coef) {
  MixGroups<T> g;
  const int64_t C = p.channels;
  g.C = C;
  std::vector<T> row(C);
  std::vector<int64_t> targets(C);
  // The products of each k in (m, q) order, by a counting sort: a scan of all products per k took 40-50 us of
  // every layer's backward.
  std::vector<int64_t> count, start, by_k;
  for (const OutBlock& ob : p.blocks) {
    g.block_begin.push_back(g.groups());
    const int64_t q_begin = ob.entry_begin[0], q_end = ob.entry_begin[ob.d];
    auto k_of = [&](int64_t q) { return (p.entries[q].mix - ob.mix_off) % (C * ob.K); };  // >= K: in no group
    count.assign(ob.K + 1, 0);
    for (int64_t q = q_begin; q < q_end; ++q)
      if (k_of(q) < ob.K) ++count[k_of(q) + 1];
    start.assign(count.begin(), count.end());
    for (int64_t k = 0; k < ob.K; ++k) start[k + 1] += start[k];
    by_k.assign(start[ob.K], 0);
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    std::vector<int64_t> m_of(q_end - q_begin);
    for (int64_t m = 0; m < ob.d; ++m)
      for (int64_t q = ob.entry_begin[m]; q < ob.entry_begin[m + 1]; ++q) {
        m_of[q - q_begin] = m;
        if (k_of(q) < ob.K) by_k[next[k_of(q)]++] = q;
      }
    for (int64_t k = 0; k < ob.K; ++k) {
      for (int64_t i = start[k]; i < start[k + 1]; ++i) {
        const int64_t q = by_k[i];
        const Entry& en = p.entries[q];
        const bool opened = i > start[k];
        const T a_q = coef[en.mix];
        for (int64_t c = 0; c < C; ++c) {
          const int64_t j = index[en.mix + c * ob.K];
          TORCH_CHECK(j >= 0 && j < weight_numel, "frame_conv_factored: mix_index out of range");
          TORCH_CHECK(coef[en.mix + c * ob.K] == a_q && (!opened || (j == targets[c] && en.wcol == g.wcol.back())),
                      "frame_conv_factored: the mixing matrices are not products a[m][k] W[k][c]");
          targets[c] = j;
          row[c] = weight[j];
        }
        if (!opened) g.open_group(en, row.data(), targets.data());
        g.add_member(m_of[q - q_begin], en, a_q);
      }
    }
  }
  g.block_begin.push_back(g.groups());
  g.close();
  return g;
}

// mix_grads for the kBundle groups from g that share their gz rows (MixGroups::find_bundles), 4 channels,
// float, AVX-512: each gz row is loaded once for the bundle, and its 16 sums y stay in registers. Groups have
// 1-7 members, so one group at a time spent as much on entering and leaving groups as on their members
// (mix_grads: 4900-5300 TSC cycles per block of 16 edges, bundled 4100-4300). Written with intrinsics (as lane
// loops GCC kept y on the stack) and inlined into mix_grads (called once per bundle, 20% slower).
#if defined(__AVX512F__)
inline __attribute__((always_inline)) void mix_grads_bundle(const MixGroups<float>& mg, int64_t g, const float* gz,
                                                            const float* wb, const float* xr, float* gw,
                                                            float* gxr, float* gacc) {
  constexpr int U = MixGroups<float>::kBundle, C = 4, L = 16;
  const int64_t q0 = mg.member_begin[g], n = mg.member_begin[g + 1] - q0;
  const int32_t* src = mg.src.data() + q0;
  const int32_t* gz_row = mg.gz_row.data() + q0;
  const float* a = mg.a.data() + q0;
  const float* aw = mg.a_w.data() + q0 * C;
  __m512 y[U][C], wv[U];
  for (int u = 0; u < U; ++u) {
    wv[u] = _mm512_loadu_ps(wb + mg.wcol[g + u] * L);
    for (int c = 0; c < C; ++c) y[u][c] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* gzm = gz + gz_row[i] * L;
    __m512 gc[C];
    for (int c = 0; c < C; ++c) gc[c] = _mm512_loadu_ps(gzm + c * L);
    for (int u = 0; u < U; ++u) {
      const int64_t q = u * n + i;
      const __m512 ax = _mm512_mul_ps(_mm512_set1_ps(a[q]), _mm512_loadu_ps(xr + src[q] * L));
      __m512 sum = _mm512_mul_ps(_mm512_set1_ps(aw[q * C]), gc[0]);
      for (int c = 1; c < C; ++c) sum = _mm512_fmadd_ps(_mm512_set1_ps(aw[q * C + c]), gc[c], sum);
      for (int c = 0; c < C; ++c) y[u][c] = _mm512_fmadd_ps(ax, gc[c], y[u][c]);
      float* gxv = gxr + src[q] * L;
      _mm512_storeu_ps(gxv, _mm512_fmadd_ps(sum, wv[u], _mm512_loadu_ps(gxv)));
    }
  }
  for (int u = 0; u < U; ++u) {
    const float* wk = mg.w.data() + (g + u) * C;
    __m512 t = _mm512_setzero_ps();
    for (int c = 0; c < C; ++c) {
      t = _mm512_fmadd_ps(_mm512_set1_ps(wk[c]), y[u][c], t);
      float* acc = gacc + ((g + u) * C + c) * L;
      _mm512_storeu_ps(acc, _mm512_fmadd_ps(wv[u], y[u][c], _mm512_loadu_ps(acc)));
    }
    float* gwv = gw + mg.wcol[g + u] * L;
    _mm512_storeu_ps(gwv, _mm512_add_ps(_mm512_loadu_ps(gwv), t));
  }
}
#endif

// The gradients that flow through the mix of one l_out block for the groups [g0, g1): into the rotated inputs
// (gxr), the radial weights (gw) and the per-lane parameter accumulators (gacc, [groups][C][L]). CC: the
// channel count when known at compile time (the sums y[c] then stay in registers); 0: C, with y in `scratch`.
// Not inlined into backward_kernel (as mix_block forward), so that its loops have the registers to themselves.
template <typename T, int L, int CC>
__attribute__((noinline)) void mix_grads(const MixGroups<T>& mg, int64_t g0, int64_t g1, const T* gz, const T* wb,
                                         const T* xr, T* gw, T* gxr, T* gacc, T* scratch) {
  constexpr int kC = CC > 0 ? CC : 1;
  const int64_t C = CC > 0 ? CC : mg.C;
  for (int64_t g = g0; g < g1; ++g) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float> && L == 16 && CC == 4) {
      if (mg.opens_bundle[g]) {
        mix_grads_bundle(mg, g, gz, wb, xr, gw, gxr, gacc);
        g += MixGroups<T>::kBundle - 1;
        continue;
      }
    }
#endif
    T y_reg[kC][L] = {};
    T* y = CC > 0 ? &y_reg[0][0] : scratch;
    if (CC == 0) std::fill(y, y + C * L, T(0));
    const int64_t wc = mg.wcol[g] * L;
    const T* wv = wb + wc;
    for (int64_t q = mg.member_begin[g]; q < mg.member_begin[g + 1]; ++q) {
      const T* xv = xr + mg.src[q] * L;
      const T* gzm = gz + mg.gz_row[q] * L;
      const T* aw = mg.a_w.data() + q * C;
      const T a_q = mg.a[q];
      T ax[L], s[L] = {};
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) ax[lane] = a_q * xv[lane];
      for (int64_t c = 0; c < C; ++c) {
        const T* gc = gzm + c * L;
        T* yc = CC > 0 ? y_reg[c] : y + c * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
          s[lane] += aw[c] * gc[lane];
          yc[lane] += ax[lane] * gc[lane];
        }
      }
      T* gxv = gxr + mg.src[q] * L;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) gxv[lane] += s[lane] * wv[lane];
    }
    // (The sum over c in registers first: written as gw += W y per channel, the compiler cannot tell gw from
    // gacc and chains four stores and reloads of one row, 12% of the backward.)
    const T* wk = mg.w.data() + g * C;
    T t[L] = {};
    for (int64_t c = 0; c < C; ++c) {
      const T* yc = CC > 0 ? y_reg[c] : y + c * L;
      T* acc = gacc + (g * C + c) * L;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
        t[lane] += wk[c] * yc[lane];
        acc[lane] += wv[lane] * yc[lane];
      }
    }
    T* gwv = gw + wc;
    GLASSMD_LANES for (int lane = 0; lane < L; ++lane) gwv[lane] += t[lane];
  }
}

// The gradients of forward_kernel's sums (recomputing its per-block values): into x, the parameters and the radial
// hidden values (or, with TrainHidden, the hidden layer's sums). With n_pairs > 0 (training: vectors and TrainHidden)
// the edges come in forward_kernel's pair order: a pair block computes its frames and hidden-layer activations
// once, and each direction its own dropout values, radial weights and gradients (stream_grads).
template <typename T, int L>
void backward_kernel(const Plan& p, const T* grad_out, const T* x, int64_t n_nodes, const int64_t* sender,
                     const int64_t* receiver, int64_t n_edges, int64_t n_pairs, const Strided<T>& hidden,
                     const Radial<T>& radial, const Strided<T>& frame, const MixGroups<T>& groups, T* grad_x,
                     T* grad_hidden, T* grad_radial_weight, T* grad_radial_bias, T* grad_mix, int64_t grad_mix_numel,
                     const EdgeVectors<T>* vectors = nullptr, const TrainHidden<T>* train_hidden = nullptr,
                     std::vector<std::optional<HiddenGradSums<T, L>>>* hidden_sums = nullptr) {
  const int64_t H = radial.hidden;
  const int64_t C = p.channels;
  int64_t max_d = 1;
  for (const auto& b : p.blocks) max_d = std::max(max_d, b.d);
  const int n_threads = std::max(1, at::get_num_threads());
  // Parameter gradients summed per thread: the mix groups (per channel), then W, then b of the radial layer.
  const int64_t n_mix = groups.groups() * C, n_param = n_mix + p.n_w * H + p.n_w;
  std::vector<std::vector<T>> param_grad_per_thread(n_threads);
  ThreadSums<T> grad_x_sums(grad_x, n_nodes, p.dim_in, n_threads);
  // Work as in forward_kernel: half-blocks of messages, a pair block (both directions) weighing two.
  const int64_t n_single = n_edges - 2 * n_pairs;
  const int64_t pair_blocks = (n_pairs + L - 1) / L, single_blocks = (n_single + L - 1) / L;
  const int64_t n_work = 2 * pair_blocks + single_blocks;
  const int64_t grain = std::max<int64_t>(8, n_work / n_threads + 1);
  IndexGuard in_range(n_nodes);
  at::parallel_for(0, n_work, grain, [&](int64_t w_begin, int64_t w_end) {
    T* gx_acc = grad_x_sums.mine();
    Block<T, L> blk(p, max_d * C, H, train_hidden != nullptr ? train_hidden->R : 0);
    std::optional<HiddenGradSums<T, L>> hsums;
    if (train_hidden != nullptr) hsums.emplace(H, train_hidden->R);
    LaneVector<T> go(p.dim_out * L), gz(max_d * C * L), gxr(p.dim_in * L), gxr2(p.dim_in * L), gw(p.n_w * L);
    LaneVector<T> ghid(H * L), y_scratch(C * L);
    LaneVector<T> gparam(n_param * L, T(0));  // per lane: reduced at the end
    T* gmix = gparam.data();
    T* grad_W = gmix + n_mix * L;
    T* grad_b = grad_W + p.n_w * H * L;
    const bool tiled = RadialGradTiles<T, L>::usable(H);
    RadialGradTiles<T, L> tiles(tiled ? p.n_w : 0, tiled ? H : 0);
    std::optional<glassmd_frames::FrameScratch<T, L>> frame_scratch;
    if (vectors != nullptr) frame_scratch.emplace(*vectors->frames);

    // The gradients of one stream of messages whose rotated inputs (xr_s), radial weights (wb) and hidden
    // values (hb; ab and bits with TrainHidden) are in blk: into its rotated inputs (gxr_s, still in the edge
    // frame), the parameters, and the hidden layer. pair_stream: 0 an unpaired block, 1 and 2 the directions of a
    // pair block; 2, the reverse edges, had their outputs rotated back as D S z (see Plan::set_reverse_signs).
    // e0: its first edge, for grad_hidden.
    auto stream_grads = [&](int nb, const int64_t* receivers, const T* xr_s, T* gxr_s, int pair_stream, int64_t e0) {
      const bool reverse = pair_stream == 2;
      const T* grows[L];
      for (int lane = 0; lane < nb; ++lane) grows[lane] = grad_out + receivers[lane] * p.dim_out;
      if (!(nb == L && L == 16 && rows_to_lanes(grows, p.dim_out, go.data()))) {
        std::fill(go.begin(), go.end(), T(0));
        for (int lane = 0; lane < nb; ++lane)
          for (int64_t f = 0; f < p.dim_out; ++f) go[f * L + lane] = grows[lane][f];
      }
      std::fill(gxr_s, gxr_s + p.dim_in * L, T(0));
      std::fill(gw.begin(), gw.end(), T(0));
      for (const OutBlock& ob : p.blocks) {
        // Output gradient into the edge frame: gz[m][c] = sum_m' D[m'][m] go[c][m'] (times S[m] for reverses).
        if (ob.lo > 0 && C % kRotGroup == 0) {
          for (int64_t c0 = 0; c0 < C; c0 += kRotGroup)
            with_block_size(ob.d, [&](auto dd) {
              constexpr int DD = decltype(dd)::value;
              if (static_cast<int64_t>(ob.active_m.size()) < ob.d) {
                // Only the rows the mix reads (the first layer's one-hot inputs feed m = 0 alone).
                for (int64_t m : ob.active_m)
                  rotate_grad_rows<T, L, 1, DD>(ob, blk.frame_rows, go.data(), gz.data(), C, c0, m);
                return;
              }
              int64_t m = 0;
              for (; m + 1 < ob.d; m += 2)
                rotate_grad_rows<T, L, 2, DD>(ob, blk.frame_rows, go.data(), gz.data(), C, c0, m);
              if (m < ob.d) rotate_grad_rows<T, L, 1, DD>(ob, blk.frame_rows, go.data(), gz.data(), C, c0, m);
            });
        } else
        for (int64_t c = 0; c < C; ++c) {
          for (int64_t m = 0; m < ob.d; ++m) {
            T* g = gz.data() + (m * C + c) * L;
            if (ob.lo == 0) {
              GLASSMD_LANES for (int lane = 0; lane < L; ++lane) g[lane] = go[(ob.out_off + c) * L + lane];
              continue;
            }
            T acc[L] = {};
            for (int64_t mp = 0; mp < ob.d; ++mp) {
              const T* D = blk.frame_rows + (ob.frame_off + mp * ob.d + m) * L;
              const T* gg = go.data() + (ob.out_off + c * ob.d + mp) * L;
              GLASSMD_LANES for (int lane = 0; lane < L; ++lane) acc[lane] += D[lane] * gg[lane];
            }
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) g[lane] = acc[lane];
          }
        }
        if (reverse && ob.lo > 0)
          for (int64_t m = 0; m < ob.d; ++m) {
            if (ob.reverse_sign[m] > 0) continue;
            T* g = gz.data() + m * C * L;
            for (int64_t i = 0; i < C * L; ++i) g[i] = -g[i];
          }
        const int64_t ob_index = &ob - p.blocks.data();
        const int64_t g0 = groups.block_begin[ob_index], g1 = groups.block_begin[ob_index + 1];
        const T* wb = blk.wb.data();
        switch (C) {
          case 2: mix_grads<T, L, 2>(groups, g0, g1, gz.data(), wb, xr_s, gw.data(), gxr_s, gmix, nullptr); break;
          case 4: mix_grads<T, L, 4>(groups, g0, g1, gz.data(), wb, xr_s, gw.data(), gxr_s, gmix, nullptr); break;
          case 8: mix_grads<T, L, 8>(groups, g0, g1, gz.data(), wb, xr_s, gw.data(), gxr_s, gmix, nullptr); break;
          default:
            mix_grads<T, L, 0>(groups, g0, g1, gz.data(), wb, xr_s, gw.data(), gxr_s, gmix, y_scratch.data());
        }
      }
      // Through the radial layer: gw -> pre-activation (relu' = [wb > 0]) -> (hidden, W, b). Lanes past nb
      // have zero hidden values and zero output gradients, so they add nothing.
      T* gh = ghid.data();
      std::fill(gh, gh + H * L, T(0));
      if (tiled && hidden_grad_in_registers<T, L>(p, radial, gw.data(), blk.wb.data(), gh)) {
        // gw masked and gh computed; dW and db in RadialGradTiles
      } else
      for (int64_t k = 0; k < p.n_w; ++k) {
        T* g = gw.data() + k * L;
        if (radial.output_relu) {
          const T* wbk = blk.wb.data() + k * L;  // the block's radial weights of output k
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) g[lane] = wbk[lane] > T(0) ? g[lane] : T(0);
        }
        const T* wk = radial.weight + k * H;
        if (tiled) {  // dW and db in RadialGradTiles; here only the hidden-value gradient
          for (int64_t h = 0; h < H; ++h) {
            const T c = wk[h];
            T* ghv = gh + h * L;
            GLASSMD_LANES for (int lane = 0; lane < L; ++lane) ghv[lane] += c * g[lane];
          }
          continue;
        }
        T* gbk = grad_b + k * L;
        GLASSMD_LANES for (int lane = 0; lane < L; ++lane) gbk[lane] += g[lane];
        for (int64_t h = 0; h < H; ++h) {
          const T c = wk[h];
          const T* hv = blk.hb.data() + h * L;
          T* ghv = gh + h * L;
          T* gWv = grad_W + (k * H + h) * L;
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) {
            ghv[lane] += c * g[lane];
            gWv[lane] += g[lane] * hv[lane];
          }
        }
      }
      if (tiled) tiles.add(gw.data(), blk.hb.data());
      if (hsums) {  // the hidden layer's backward, summed here (TrainHidden): once per pair block
        hsums->keep(*train_hidden, gh, blk.bits, nb, pair_stream == 2);
        if (pair_stream != 1) hsums->add_kept(*train_hidden, blk.ab.data(), blk.rb.data());
        return;
      }
      T* ghrows[L];
      for (int lane = 0; lane < nb; ++lane) ghrows[lane] = grad_hidden + (e0 + lane) * H;  // written once each
      if (!(nb == L && L == 16 && lanes_to_rows(gh, H, ghrows))) {
        for (int lane = 0; lane < nb; ++lane)
          for (int64_t h = 0; h < H; ++h) ghrows[lane][h] = gh[h * L + lane];
      }
    };
    // Rotated-input gradients back to the senders' frames, gx[u][b] = sum_a D[b][a] gxr[u][a] (in the storage of
    // the gathered inputs, no longer needed), and into the senders' rows.
    auto sender_grads = [&](int ns, int nb, const int64_t* const* senders) {
      const T* in[2] = {gxr.data(), gxr2.data()};
      T* out[2] = {blk.xs.data(), blk.xs2.data()};
      if (ns == 2) blk.template rotate_inputs<false, 2>(p, in, out);
      else blk.template rotate_inputs<false, 1>(p, in, out);
      for (int s = 0; s < ns; ++s) {
        T* gxrows[L];
        for (int lane = 0; lane < nb; ++lane) gxrows[lane] = gx_acc + senders[s][lane] * p.dim_in;
        if (!(nb == L && L == 16 && add_lanes_to_rows(out[s], p.dim_in, gxrows))) {
          for (int lane = 0; lane < nb; ++lane)
            for (int64_t f = 0; f < p.dim_in; ++f) gxrows[lane][f] += out[s][f * L + lane];
        }
      }
    };

    for (int64_t w = w_begin; w < w_end; ++w) {
      if (w < 2 * pair_blocks) {
        // Both directions of L pairs (training only, as in forward_kernel): one frame and one
        // set of hidden-layer activations per pair, each direction with its own dropout draws.
        if (w % 2 != 0) continue;
        const int64_t k0 = (w / 2) * L;
        const int nb = static_cast<int>(std::min<int64_t>(L, n_pairs - k0));
        const int64_t* senders[2] = {sender + k0, sender + n_pairs + k0};
        if (!(in_range.ok(senders[0], nb) && in_range.ok(senders[1], nb) && in_range.ok(receiver + k0, nb) &&
              in_range.ok(receiver + n_pairs + k0, nb)))
          continue;
        blk.gather_senders(p, senders[0], nb, x, 0);
        blk.gather_senders(p, senders[1], nb, x, 1);
        blk.gather_vector_rows(p, k0, nb, hidden, *vectors, *frame_scratch, train_hidden, train_hidden->draws + k0);
        blk.template rotate_in<2>(p);
        blk.radial_weights(p, radial);
        stream_grads(nb, receiver + k0, blk.xr.data(), gxr.data(), 1, k0);
        if (train_hidden->drop) {  // without dropout the reverse's hidden values and radial weights are the same
          blk.train_values(*train_hidden, train_hidden->draws + n_pairs + k0, nb);
          blk.radial_weights(p, radial);
        }
        stream_grads(nb, receiver + n_pairs + k0, blk.xr2.data(), gxr2.data(), 2, n_pairs + k0);
        // The reverses' rotated inputs were S D^T x (rotate_in): their gradient goes back as D S.
        for (int64_t f = 0; f < p.dim_in; ++f) {
          if (p.reverse_sign[f] > 0) continue;
          T* g = gxr2.data() + f * L;
          GLASSMD_LANES for (int lane = 0; lane < L; ++lane) g[lane] = -g[lane];
        }
        sender_grads(2, nb, senders);
        continue;
      }
      const int64_t j0 = (w - 2 * pair_blocks) * L;
      const int nb = static_cast<int>(std::min<int64_t>(L, n_single - j0));
      const int64_t e0 = 2 * n_pairs + j0, r0 = n_pairs + j0;  // first edge, first row of per-edge arrays
      const int64_t* senders[1] = {sender + e0};
      if (!(in_range.ok(senders[0], nb) && in_range.ok(receiver + e0, nb))) continue;
      blk.gather_senders(p, senders[0], nb, x);
      if (vectors != nullptr)
        blk.gather_vector_rows(p, r0, nb, hidden, *vectors, *frame_scratch, train_hidden,
                               train_hidden != nullptr ? train_hidden->draws + e0 : nullptr);
      else
        blk.gather_edge_rows(p, r0, nb, hidden, frame, nullptr);
      blk.radial_weights(p, radial);
      blk.template rotate_in<1>(p);
      stream_grads(nb, receiver + e0, blk.xr.data(), gxr.data(), 0, e0);
      sender_grads(1, nb, senders);
    }
    if (hsums) {
      hsums->finish();
      auto& slot = (*hidden_sums)[at::get_thread_num()];
      if (!slot) slot = std::move(hsums);
      else slot->merge(*hsums);
    }
    std::vector<T>& mine = param_grad_per_thread[at::get_thread_num()];
    if (mine.empty()) mine.assign(n_param, T(0));
    for (int64_t i = 0; i < n_param; ++i) {
      T s = 0;
      GLASSMD_LANES for (int lane = 0; lane < L; ++lane) s += gparam[i * L + lane];
      mine[i] += s;
    }
    if (tiled) {
      tiles.flush();
      for (int64_t i = 0; i < p.n_w * H; ++i) mine[n_mix + i] += tiles.sum_w[i];
      for (int64_t k = 0; k < p.n_w; ++k) mine[n_mix + p.n_w * H + k] += tiles.sum_b[k];
    }
  });
  in_range.check();
  grad_x_sums.reduce();
  std::fill(grad_mix, grad_mix + grad_mix_numel, T(0));
  std::fill(grad_radial_weight, grad_radial_weight + p.n_w * H, T(0));
  std::fill(grad_radial_bias, grad_radial_bias + p.n_w, T(0));
  for (const auto& part : param_grad_per_thread) {
    if (part.empty()) continue;
    for (int64_t i = 0; i < p.n_w * H; ++i) grad_radial_weight[i] += part[n_mix + i];
    for (int64_t i = 0; i < p.n_w; ++i) grad_radial_bias[i] += part[n_mix + p.n_w * H + i];
    for (int64_t i = 0; i < n_mix; ++i) grad_mix[groups.target[i]] += part[i];
  }
}

// The number of pairs of an EdgeBlocks array [n_blocks, n_basis + 4, L], from its last row (the lane kinds of
// edge_blocks: 2 a pair, 1 an unpaired edge, 0 padding), checked against the edge count. The blocks must be
// those of ceil(P / L) pair blocks then ceil(S / L) edge blocks, each filled from lane 0: the pair blocks are
// found by bisection on their first lane, and every block's lanes are checked where the kernel reads the block
// (EdgeBlocks::lanes_match). (Reading every kind row here, out of cache, took 60-140 us of each layer's call.)
template <typename T>
int64_t edge_block_pairs(const Tensor& frame, int64_t n_edges) {
  const int64_t n_blocks = frame.size(0), L = frame.size(2), kind_row = frame.size(1) - 1;
  const T* base = frame.data_ptr<T>();
  auto kind = [&](int64_t b) { return base + b * frame.stride(0) + kind_row * frame.stride(1); };
  int64_t lo = 0, hi = n_blocks;  // pair blocks: [0, lo)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (kind(mid)[0] == T(2))
      lo = mid + 1;
    else
      hi = mid;
  }
  int64_t pairs = 0;
  if (lo > 0) {
    int64_t last = 0;
    for (int64_t lane = 0; lane < L; ++lane) last += kind(lo - 1)[lane] == T(2);
    pairs = (lo - 1) * L + last;
  }
  const int64_t edges = n_edges - 2 * pairs;
  TORCH_CHECK(edges >= 0 && lo == (pairs + L - 1) / L && n_blocks == lo + (edges + L - 1) / L,
              edge_blocks_mismatch(n_blocks, n_edges));
  return pairs;
}

struct Consts {
  Tensor rot_in, lo_meta, src_index, weight_index, active;
  int64_t dim_out, channels;
};

// Whether x is a view of rows padded to whole 64-byte lines (interaction_eval's input; see SenderRows).
inline bool padded_rows(const Tensor& x) {
  return x.dim() == 2 && x.size(0) > 0 && x.stride(1) == 1 && x.stride(0) > x.size(1) &&
         (x.stride(0) * x.element_size()) % 64 == 0 && x.storage_offset() == 0;
}

// The inputs of one call, checked and laid out for the kernels.
struct Call {
  Tensor x, edge_index, hidden, radial_weight, radial_bias, frame, mix;
  bool output_relu;
  Plan plan;
  Tensor first_weight, first_bias;  // defined for frame_conv_eval: `hidden` is then the radial basis
  Tensor reverse_flip;              // frame_conv_eval with paired edges (see forward_kernel)
  std::optional<glassmd_frames::FramePlan> frames;  // frame_conv_eval with edge blocks: frames from vectors
  // frame_conv_factored: mix = mix_weight[mix_index] * mix_coef, and gradients go to mix_weight (MixGroups)
  Tensor mix_weight, mix_index, mix_coef;
  int64_t n_pairs = 0;
  bool blocked = false;  // hidden and frame are EdgeBlocks (glassmd::edge_blocks), not rows
  bool vectors = false;  // frame is the [E, 3] edge vectors (EdgeVectors), not the frames

  Call(const Tensor& x_in, const Tensor& edge_index_in, const Tensor& hidden_in, const Tensor& w_in,
       const Tensor& b_in, bool relu, const Tensor& frame_in, const Tensor& mix_in, const Consts& k,
       const Tensor& first_w = Tensor(), const Tensor& first_b = Tensor(), const Tensor& flip = Tensor(),
       const Tensor& alpha_coef = Tensor(), const Tensor& beta_coef = Tensor(), bool from_vectors = false,
       int64_t train_hidden_width = 0, const Plan* prebuilt_plan = nullptr)
      // padded rows are read in place by the evaluation only (the backward kernels take x contiguous)
      : x(padded_rows(x_in) && first_w.defined() ? x_in : x_in.contiguous()),
        edge_index(edge_index_in.to(at::kLong).contiguous()),
        hidden(hidden_in),
        radial_weight(w_in.contiguous()),
        radial_bias(b_in.contiguous()),
        frame(frame_in),
        mix(mix_in.contiguous()),
        output_relu(relu),
        first_weight(first_w.defined() ? first_w.contiguous() : first_w),
        first_bias(first_b.defined() ? first_b.contiguous() : first_b),
        reverse_flip(flip.defined() ? flip.contiguous() : flip),
        vectors(from_vectors) {
    TORCH_CHECK(x.device().is_cpu(), "glassmd::frame_conv runs on the CPU; use the torch kernel on ", x.device());
    TORCH_CHECK(edge_index.dim() == 2 && edge_index.size(0) == 2, "frame_conv: edge_index must be [2, E]");
    const int64_t n_edges = edge_index.size(1);
    blocked = frame.dim() == 3;
    int64_t frame_dim = frame.dim() == 2 ? frame.size(1) : 0;
    if (vectors) {
      TORCH_CHECK(frame.dim() == 2 && frame.size(1) == 3,
                  "frame_conv_factored: with alpha_coef and beta_coef, `frame` must be the [E, 3] edge vectors");
      TORCH_CHECK(alpha_coef.defined() && beta_coef.defined() && alpha_coef.dim() == 2 && beta_coef.dim() == 2,
                  "frame_conv_factored: alpha_coef and beta_coef must be the [n, frame_dim] EdgeFrames constants");
      const int64_t l_max = glassmd_frames::FramePlan::l_max_of(alpha_coef.size(1));
      TORCH_CHECK(l_max >= 1, "frame_conv_factored: alpha_coef has ", alpha_coef.size(1),
                  " columns, not a frame size");
      frames.emplace(alpha_coef, beta_coef, l_max);
      frame_dim = frames->dim;
      frame = frame.contiguous();
    }
    if (blocked) {
      const int64_t lanes = static_cast<int64_t>(64 / x.element_size());
      TORCH_CHECK(first_weight.defined() && reverse_flip.defined(),
                  "frame_conv: edge blocks (3-d edge features) are read by frame_conv_eval only");
      TORCH_CHECK(alpha_coef.defined() && beta_coef.defined() && alpha_coef.dim() == 2,
                  "frame_conv_eval: edge blocks need alpha_coef and beta_coef (EdgeFrames) to compute the frames");
      const int64_t l_max = glassmd_frames::FramePlan::l_max_of(alpha_coef.size(1));
      TORCH_CHECK(l_max >= 1, "frame_conv_eval: alpha_coef has ", alpha_coef.size(1), " columns, not a frame size");
      frames.emplace(alpha_coef, beta_coef, l_max);
      frame_dim = frames->dim;
      TORCH_CHECK(hidden.dim() == 3 && hidden.size(0) == frame.size(0) && frame.size(1) == 4 &&
                      hidden.size(2) == lanes && frame.size(2) == lanes && hidden.stride(2) == 1 &&
                      frame.stride(2) == 1 && hidden.stride(1) == lanes && frame.stride(1) == lanes &&
                      hidden.stride(0) == frame.stride(0),
                  "frame_conv_eval: edge blocks must be views of one [n_blocks, n_basis + 4, ", lanes,
                  "] array from glassmd::edge_blocks (basis, and vectors with lane kinds)");
      TORCH_CHECK(frame.scalar_type() == x.scalar_type() &&
                      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
                  "frame_conv_eval: edge blocks must be float32 or float64, of the dtype of x");
      n_pairs = x.scalar_type() == at::kFloat ? edge_block_pairs<float>(frame, n_edges)
                                              : edge_block_pairs<double>(frame, n_edges);
    } else {
      TORCH_CHECK(x.dim() == 2 && hidden.dim() == 2 && frame.dim() == 2, "frame_conv: bad ranks");
      TORCH_CHECK(hidden.size(0) == frame.size(0), "frame_conv: radial features and frames differ in rows");
      // Fewer rows than edges: the first 2 * n_pairs edges are pairs sharing a row (forward_kernel).
      n_pairs = n_edges - frame.size(0);
    }
    TORCH_CHECK(x.dim() == 2 && mix.dim() == 1, "frame_conv: bad ranks");
    if (!blocked && !reverse_flip.defined())
      TORCH_CHECK(n_pairs == 0, "frame_conv: radial features and frames need one row per edge");
    if (!blocked && reverse_flip.defined())
      TORCH_CHECK(n_pairs >= 0 && 2 * n_pairs <= n_edges,
                  "frame_conv: paired edges need one row of radial features and frames per pair and per "
                  "unpaired edge");
    if (reverse_flip.defined()) {
      TORCH_CHECK(reverse_flip.dim() == 1 && reverse_flip.size(0) == frame_dim &&
                      reverse_flip.scalar_type() == x.scalar_type(),
                  "frame_conv_eval: reverse_flip must hold one sign per frame column");
    }
    const int64_t hidden_width = train_hidden_width > 0    ? train_hidden_width
                                 : first_weight.defined() ? first_weight.size(0)
                                                          : hidden.size(1);
    TORCH_CHECK(radial_weight.dim() == 2 && radial_weight.size(1) == hidden_width && radial_bias.dim() == 1 &&
                    radial_bias.size(0) == radial_weight.size(0),
                "frame_conv: radial layer shapes disagree");
    if (first_weight.defined()) {
      TORCH_CHECK(first_weight.dim() == 2 && first_weight.size(1) == hidden.size(1) && first_bias.dim() == 1 &&
                      first_bias.size(0) == first_weight.size(0),
                  "frame_conv_eval: first radial layer shapes disagree with the basis");
      for (const Tensor* t : {&first_weight, &first_bias})
        TORCH_CHECK(t->scalar_type() == x.scalar_type(), "frame_conv: all float inputs must have one dtype");
    }
    for (const Tensor* t : {&hidden, &radial_weight, &radial_bias, &frame, &mix})
      TORCH_CHECK(t->scalar_type() == x.scalar_type(), "frame_conv: all float inputs must have one dtype");
    // The range of edge_index is checked by the kernels as they read it (forward_kernel), or before
    // (backward_cpu): two more passes over the edges per layer cost as much as a layer's small torch ops.
    if (prebuilt_plan != nullptr) {  // interaction_eval's, for the same tables and sizes (EvalConstants)
      plan = *prebuilt_plan;
      return;
    }
    plan = make_plan(k.rot_in, k.lo_meta, k.src_index, k.weight_index, k.active, x.size(1), k.dim_out, k.channels,
                     radial_weight.size(0), frame_dim, mix.numel());
    if (n_pairs > 0) plan.set_reverse_signs(reverse_flip.to(at::kFloat).contiguous().data_ptr<float>());
  }

  int64_t n_edges() const { return edge_index.size(1); }
  const int64_t* sender() const { return edge_index.data_ptr<int64_t>(); }
  const int64_t* receiver() const { return edge_index.data_ptr<int64_t>() + n_edges(); }
  template <typename T>
  Radial<T> radial() const {
    return Radial<T>{radial_weight.data_ptr<T>(), radial_bias.data_ptr<T>(), radial_weight.size(1), output_relu};
  }
  // frame_conv_train: the hidden layer computed in the kernels from `hidden`, the radial basis (TrainHidden)
  struct HiddenLayer {
    Tensor w1, b1, scale, shift, mean, invstd, draws;
    bool drop;
  };
  std::optional<HiddenLayer> hidden_layer;
  template <typename T>
  TrainHidden<T> train_hidden() const {
    if (!hidden_layer) return TrainHidden<T>{};
    const HiddenLayer& h = *hidden_layer;
    return TrainHidden<T>{hidden.size(1), h.w1.size(0), h.w1.data_ptr<T>(),
                          h.b1.data_ptr<T>(), h.scale.data_ptr<T>(), h.shift.data_ptr<T>(), h.mean.data_ptr<T>(),
                          h.invstd.data_ptr<T>(), h.draws.data_ptr<int32_t>(), h.drop};
  }
  template <typename T>
  EdgeVectors<T> edge_vectors() const {
    return vectors ? EdgeVectors<T>{frame.data_ptr<T>(), &*frames} : EdgeVectors<T>{nullptr, nullptr};
  }
};

// tables: MixTables<scalar_t, L> built for a.plan and a.mix (interaction_eval's EvalConstants), or null.
Tensor forward_cpu(const Call& a, const void* tables = nullptr) {
  auto out = at::zeros({a.x.size(0), a.plan.dim_out}, a.x.options());
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "glassmd_frame_conv", [&] {
    constexpr int L = 64 / sizeof(scalar_t);
    FirstLayer<scalar_t> first{};
    if (a.first_weight.defined())
      first = {a.first_weight.data_ptr<scalar_t>(), a.first_bias.data_ptr<scalar_t>(), a.first_weight.size(1)};
    EdgeBlocks<scalar_t> blocks{};
    if (a.blocked)
      blocks = {a.hidden.data_ptr<scalar_t>(), a.frame.data_ptr<scalar_t>(), a.frame.stride(0), &*a.frames};
    const EdgeVectors<scalar_t> vectors = a.edge_vectors<scalar_t>();
    const TrainHidden<scalar_t> train_hidden = a.train_hidden<scalar_t>();
    forward_kernel<scalar_t, L>(a.plan, a.x.data_ptr<scalar_t>(), a.x.size(0), a.sender(), a.receiver(),
                                a.n_edges(), a.n_pairs, Strided<scalar_t>(a.hidden), a.radial<scalar_t>(),
                                Strided<scalar_t>(a.frame), a.mix.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                a.first_weight.defined() ? &first : nullptr, a.blocked ? &blocks : nullptr,
                                padded_rows(a.x) ? a.x.stride(0) : 0, a.vectors ? &vectors : nullptr,
                                a.hidden_layer ? &train_hidden : nullptr,
                                static_cast<const MixTables<scalar_t, L>*>(tables));
  });
  return out;
}

// Gradients with respect to x, the radial hidden features, W, b and the mixing matrices. With the hidden layer in
// the kernels (frame_conv_train) the second is instead its sums [H, 3 + R] in float64 (HiddenGradSums: sg, sgx,
// srg, then P).
std::vector<Tensor> backward_cpu(const Tensor& grad_out_in, const Call& a) {
  auto grad_out = grad_out_in.contiguous();
  auto grad_x = at::zeros_like(a.x);
  auto grad_hidden = a.hidden_layer ? Tensor()  // every row written:
                                    : at::empty({a.n_edges(), a.hidden.size(1)}, a.hidden.options());
  auto grad_w = at::empty_like(a.radial_weight);
  auto grad_b = at::empty_like(a.radial_bias);
  const bool factored = a.mix_weight.defined();
  auto grad_mix = at::empty_like(factored ? a.mix_weight : a.mix);
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "glassmd_frame_conv_backward", [&] {
    constexpr int L = 64 / sizeof(scalar_t);
    const MixGroups<scalar_t> groups =
        factored ? weight_groups<scalar_t>(a.plan, a.mix_weight.data_ptr<scalar_t>(), a.mix_weight.numel(),
                                           a.mix_index.data_ptr<int64_t>(), a.mix_coef.data_ptr<scalar_t>())
                 : product_groups<scalar_t>(a.plan, a.mix.data_ptr<scalar_t>());
    const EdgeVectors<scalar_t> vectors = a.edge_vectors<scalar_t>();
    const TrainHidden<scalar_t> train_hidden = a.train_hidden<scalar_t>();
    std::vector<std::optional<HiddenGradSums<scalar_t, L>>> hidden_sums(std::max(1, at::get_num_threads()));
    backward_kernel<scalar_t, L>(a.plan, grad_out.data_ptr<scalar_t>(), a.x.data_ptr<scalar_t>(), a.x.size(0),
                                 a.sender(), a.receiver(), a.n_edges(), a.n_pairs, Strided<scalar_t>(a.hidden),
                                 a.radial<scalar_t>(), Strided<scalar_t>(a.frame), groups,
                                 grad_x.data_ptr<scalar_t>(),
                                 grad_hidden.defined() ? grad_hidden.data_ptr<scalar_t>() : nullptr,
                                 grad_w.data_ptr<scalar_t>(), grad_b.data_ptr<scalar_t>(),
                                 grad_mix.data_ptr<scalar_t>(), grad_mix.numel(),
                                 a.vectors ? &vectors : nullptr, a.hidden_layer ? &train_hidden : nullptr,
                                 &hidden_sums);
    if (a.hidden_layer) {  // in thread order
      const int64_t H = train_hidden.H, R = train_hidden.R;
      grad_hidden = at::zeros({H, 3 + R}, at::TensorOptions().dtype(at::kDouble));
      double* out = grad_hidden.data_ptr<double>();
      for (const auto& part : hidden_sums) {
        if (!part) continue;
        for (int64_t j = 0; j < H; ++j) {
          out[j * (3 + R)] += part->Sg[j];
          out[j * (3 + R) + 1] += part->Sgx[j];
          out[j * (3 + R) + 2] += part->Srg[j];
          for (int64_t r = 0; r < R; ++r) out[j * (3 + R) + 3 + r] += part->P[r * H + j];
        }
      }
    }
  });
  return {grad_x, grad_hidden, grad_w, grad_b, grad_mix};
}

Tensor frame_conv_cpu(const Tensor& x, const Tensor& edge_index, const Tensor& hidden, const Tensor& radial_weight,
                      const Tensor& radial_bias, bool output_relu, const Tensor& frame, const Tensor& mix,
                      const Tensor& rot_in, const Tensor& lo_meta, const Tensor& src_index,
                      const Tensor& weight_index, const Tensor& active, int64_t dim_out, int64_t channels) {
  return forward_cpu(Call(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame, mix,
                          Consts{rot_in, lo_meta, src_index, weight_index, active, dim_out, channels}));
}

// Evaluation only: the whole radial MLP inside the kernel (see FirstLayer). No gradients.
Tensor frame_conv_eval_cpu(const Tensor& x, const Tensor& edge_index, const Tensor& basis, const Tensor& first_weight,
                           const Tensor& first_bias, const Tensor& radial_weight, const Tensor& radial_bias,
                           bool output_relu, const Tensor& frame, const Tensor& mix, const Tensor& rot_in,
                           const Tensor& lo_meta, const Tensor& src_index, const Tensor& weight_index,
                           const Tensor& active, int64_t dim_out, int64_t channels,
                           const std::optional<Tensor>& reverse_flip, const std::optional<Tensor>& alpha_coef,
                           const std::optional<Tensor>& beta_coef) {
  return forward_cpu(Call(x, edge_index, basis, radial_weight, radial_bias, output_relu, frame, mix,
                          Consts{rot_in, lo_meta, src_index, weight_index, active, dim_out, channels},
                          first_weight, first_bias, reverse_flip.value_or(Tensor()), alpha_coef.value_or(Tensor()),
                          beta_coef.value_or(Tensor())));
}

Tensor frame_conv_eval_autograd(const Tensor& x, const Tensor& edge_index, const Tensor& basis,
                                const Tensor& first_weight, const Tensor& first_bias, const Tensor& radial_weight,
                                const Tensor& radial_bias, bool output_relu, const Tensor& frame, const Tensor& mix,
                                const Tensor& rot_in, const Tensor& lo_meta, const Tensor& src_index,
                                const Tensor& weight_index, const Tensor& active, int64_t dim_out, int64_t channels,
                                const std::optional<Tensor>& reverse_flip, const std::optional<Tensor>& alpha_coef,
                                const std::optional<Tensor>& beta_coef) {
  if (torch::autograd::GradMode::is_enabled()) {
    for (const Tensor* t : {&x, &basis, &first_weight, &first_bias, &radial_weight, &radial_bias, &frame, &mix})
      TORCH_CHECK(!t->requires_grad(),
                  "glassmd::frame_conv_eval computes no gradients; use glassmd::frame_conv (training mode) or "
                  "call it under torch.no_grad()");
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return frame_conv_eval_cpu(x, edge_index, basis, first_weight, first_bias, radial_weight, radial_bias,
                             output_relu, frame, mix, rot_in, lo_meta, src_index, weight_index, active, dim_out,
                             channels, reverse_flip, alpha_coef, beta_coef);
}

// The constants of one layer's evaluation (the folded radial and mixing matrices, the batch norm's map, the plan
// and the mix tables), kept between calls: a model evaluated again and again (fix glassgnn every N steps, a
// benchmark) folded the same parameters at each call, 28 us of each layer's call at N = 1000 (2.4% of a forward).
// An entry serves a call only if every input it was built from is equal byte for byte to a copy kept in the entry
// (about 80 KB per layer, compared in a few microseconds), so parameters changed in place or through .data, new
// tensors, or another model never meet stale constants.
struct EvalConstants {
  std::vector<Tensor> inputs;  // contiguous copies of the tensors the constants derive from
  std::vector<double> scalars;
  Tensor last_weight, last_bias, mix;
  std::vector<double> feature_scale, feature_shift;
  Plan plan;
  std::shared_ptr<void> tables;  // MixTables<T, L> of the features' dtype

  bool built_from(const std::vector<Tensor>& in, const std::vector<double>& sc) const {
    if (sc != scalars || in.size() != inputs.size()) return false;
    for (size_t i = 0; i < in.size(); ++i) {
      const Tensor& kept = inputs[i];
      if (kept.scalar_type() != in[i].scalar_type() || kept.sizes() != in[i].sizes() || !in[i].device().is_cpu())
        return false;
      const Tensor now = in[i].contiguous();
      if (std::memcmp(kept.data_ptr(), now.data_ptr(), kept.nbytes()) != 0) return false;
    }
    return true;
  }
};

class EvalConstantsCache {
 public:
  std::shared_ptr<const EvalConstants> find(const std::vector<Tensor>& in, const std::vector<double>& sc) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!(*it)->built_from(in, sc)) continue;
      auto hit = *it;
      entries_.erase(it);
      entries_.push_front(hit);  // most recent first: a model's layers are found in a few comparisons
      return hit;
    }
    return nullptr;
  }
  void add(std::shared_ptr<const EvalConstants> c) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.push_front(std::move(c));
    if (entries_.size() > kEntries) entries_.pop_back();
  }

 private:
  static constexpr size_t kEntries = 32;  // four models of the paper's 8 layers
  std::mutex mutex_;
  std::deque<std::shared_ptr<const EvalConstants>> entries_;
};

EvalConstantsCache& eval_constants_cache() {
  static EvalConstantsCache cache;
  return cache;
}

// Rows per thread, at least, of interaction_eval's input copy and batch-norm map. With 1024 a layer of N < 2048
// copied and mapped every row on one thread while the other waited.
constexpr int64_t kRowGrain = 64;

// glassmd::interaction_eval: one whole interaction layer in evaluation (InteractionLayer.forward), that is
// norm(h + conv(cat(h[:, :C], node_attr, h[:, C:]))) (first layer: norm(conv(node_attr))), with the paired edge
// blocks of glassmd::bessel_edge_blocks. The parameters come as the modules hold them; the folds that
// RadialMLP.evaluation_layers, FrameConvKernel.mix_matrices and EquivariantBatchNorm.evaluation_affine compute
// are done here. Those and the concatenation, residual and affine map were about 15 small torch operators per
// layer (~80 us at N = 1000, 7% of a forward).
//   radial: first.weight, first.bias, norm.running_mean, norm.running_var, norm.weight, norm.bias, last.weight,
//           last.bias (RadialMLP.net)
//   mixing: mix.weight, mix_index, mix_coef
//   plan: rot_in, lo_meta, src_index, weight_index, active, reverse_flip, alpha_coef, beta_coef (FrameConvKernel)
//   norm: block_layout, running_mean, running_var, running_sq, weight_scalar, bias_scalar, weight_vector
Tensor interaction_eval_cpu(const Tensor& h_in, const Tensor& node_attr_in, const Tensor& edge_index,
                            const Tensor& basis, const Tensor& vectors, at::TensorList radial, double radial_eps,
                            bool output_relu, at::TensorList mixing, at::TensorList plan, int64_t dim_out,
                            int64_t channels, at::TensorList norm, double norm_eps) {
  TORCH_CHECK(radial.size() == 8 && mixing.size() == 3 && plan.size() == 8 && norm.size() == 7,
              "interaction_eval: expected 8 radial, 3 mixing, 8 plan and 7 norm tensors");
  const Tensor h = h_in.contiguous(), node_attr = node_attr_in.contiguous();
  TORCH_CHECK(h.dim() == 2 && node_attr.dim() == 2 && h.size(0) == node_attr.size(0),
              "interaction_eval: h and node_attr must be [n, *] with the same n");
  TORCH_CHECK(h.scalar_type() == node_attr.scalar_type(), "interaction_eval: h and node_attr differ in dtype");
  const int64_t n = h.size(0), C = channels, n_types = node_attr.size(1);
  const bool first = h.size(1) == 0;
  TORCH_CHECK(first || (h.size(1) == dim_out && h.size(1) >= C),
              "interaction_eval: h must have 0 or dim_out = ", dim_out, " features, not ", h.size(1));
  const int64_t dim_in = first ? n_types : dim_out + n_types;
  // The input rows, padded to whole lines for the kernel's gathers.
  const int64_t lanes = 64 / h.element_size(), stride = (dim_in + lanes - 1) / lanes * lanes;
  Tensor storage = at::empty({std::max<int64_t>(n, 1), stride}, h.options());
  Tensor x = storage.narrow(0, 0, n).narrow(1, 0, dim_in);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "glassmd_interaction_input", [&] {
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* ap = node_attr.data_ptr<scalar_t>();
    scalar_t* xp = storage.data_ptr<scalar_t>();
    const int64_t dh = h.size(1);
    at::parallel_for(0, n, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        scalar_t* row = xp + i * stride;
        const scalar_t* hi = hp + i * dh;
        if (first) {
          std::copy(ap + i * n_types, ap + (i + 1) * n_types, row);
          continue;
        }
        std::copy(hi, hi + C, row);
        std::copy(ap + i * n_types, ap + (i + 1) * n_types, row + C);
        std::copy(hi + C, hi + dh, row + C + n_types);
      }
    });
  });
  // The folds, in loops over the parameters (as torch operators they were a dozen small calls per layer), the
  // plan and the mix tables: once per layer and parameter values (EvalConstants).
  const std::vector<Tensor> key_inputs = {radial[6], radial[7], radial[0], radial[1], radial[2], radial[3],
                                          radial[4], radial[5], mixing[0], mixing[1], mixing[2], plan[0],
                                          plan[1],   plan[2],   plan[3],   plan[4],   plan[5],   plan[6],
                                          plan[7],   norm[0],   norm[1],   norm[2],   norm[3],   norm[4],
                                          norm[5],   norm[6]};
  const std::vector<double> key_scalars = {radial_eps, norm_eps, double(output_relu), double(dim_out),
                                           double(channels), double(dim_in), double(n_types),
                                           double(static_cast<int>(h.scalar_type()))};
  std::shared_ptr<const EvalConstants> constants = eval_constants_cache().find(key_inputs, key_scalars);
  if (!constants) {
    auto built = std::make_shared<EvalConstants>();
    // The folds, in loops over the parameters (as torch operators they were a dozen small calls per layer).
    auto checked = [&](const Tensor& t, const char* what) {
      TORCH_CHECK(t.scalar_type() == h.scalar_type() && t.device().is_cpu(), "interaction_eval: ", what,
                  " must be CPU tensors of the features' dtype");
      return t.contiguous();
    };
    const Tensor w1 = checked(radial[0], "radial parameters"), w2 = checked(radial[6], "radial parameters");
    TORCH_CHECK(w2.dim() == 2 && radial[7].numel() == w2.size(0) && radial[2].numel() == w2.size(1) &&
                    radial[3].numel() == w2.size(1) && radial[4].numel() == w2.size(1) &&
                    radial[5].numel() == w2.size(1),
                "interaction_eval: radial batch norm and last layer shapes disagree");
    const Tensor mix_weight = checked(mixing[0], "mixing weights"), mix_coef = checked(mixing[2], "mixing weights");
    const Tensor mix_index = mixing[1].to(at::kLong).contiguous();
    TORCH_CHECK(mix_index.numel() == mix_coef.numel(), "interaction_eval: mix_index and mix_coef differ in size");
    Tensor last_weight = at::empty_like(w2), last_bias = at::empty({w2.size(0)}, w2.options());
    Tensor mix = at::empty_like(mix_coef);
    std::vector<double> feature_scale(dim_out, 1.0), feature_shift(dim_out, 0.0);
    const Tensor layout = norm[0].to(at::kLong).contiguous();
    TORCH_CHECK(layout.dim() == 2 && layout.size(1) == 3, "interaction_eval: block_layout must be [blocks, 3]");
    AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "glassmd_interaction_folds", [&] {
      using T = scalar_t;
      // RadialMLP.evaluation_layers: batch norm h -> a h + c folded into the last layer
      const Tensor mean = checked(radial[2], "radial parameters"), var = checked(radial[3], "radial parameters");
      const Tensor gamma = checked(radial[4], "radial parameters"), beta = checked(radial[5], "radial parameters");
      const Tensor b2 = checked(radial[7], "radial parameters");
      const int64_t n_w = w2.size(0), hidden = w2.size(1);
      std::vector<T> a(hidden), c(hidden);
      for (int64_t j = 0; j < hidden; ++j) {
        a[j] = gamma.data_ptr<T>()[j] / std::sqrt(var.data_ptr<T>()[j] + static_cast<T>(radial_eps));
        c[j] = beta.data_ptr<T>()[j] - mean.data_ptr<T>()[j] * a[j];
      }
      const T* w = w2.data_ptr<T>();
      T* lw = last_weight.data_ptr<T>();
      T* lb = last_bias.data_ptr<T>();
      for (int64_t k = 0; k < n_w; ++k) {
        T bias = b2.data_ptr<T>()[k];
        for (int64_t j = 0; j < hidden; ++j) {
          lw[k * hidden + j] = w[k * hidden + j] * a[j];
          bias += w[k * hidden + j] * c[j];
        }
        lb[k] = bias;
      }
      // FrameConvKernel.mix_matrices
      const int64_t* idx = mix_index.data_ptr<int64_t>();
      const T* mw = mix_weight.data_ptr<T>();
      const T* mc = mix_coef.data_ptr<T>();
      T* mx = mix.data_ptr<T>();
      for (int64_t i = 0; i < mix.numel(); ++i) {
        TORCH_CHECK(idx[i] >= 0 && idx[i] < mix_weight.numel(), "interaction_eval: mix_index out of range");
        mx[i] = mw[idx[i]] * mc[i];
      }
      // EquivariantBatchNorm.evaluation_affine
      const Tensor rm = checked(norm[1], "norm statistics"), rv = checked(norm[2], "norm statistics");
      const Tensor rs = checked(norm[3], "norm statistics"), ws = checked(norm[4], "norm parameters");
      const Tensor bs = checked(norm[5], "norm parameters"), wv = checked(norm[6], "norm parameters");
      const int64_t* b = layout.data_ptr<int64_t>();
      int64_t n_scalar = 0, n_vector = 0;
      for (int64_t k = 0; k < layout.size(0); ++k) {
        const int64_t off = b[3 * k], mul = b[3 * k + 1], d = b[3 * k + 2];
        TORCH_CHECK(off >= 0 && mul >= 0 && d >= 1 && off + mul * d <= dim_out,
                    "interaction_eval: block_layout does not fit the features");
        const bool scalar = d == 1;
        for (int64_t u = 0; u < mul; ++u) {
          const int64_t stat = (scalar ? n_scalar : n_vector) + u;
          TORCH_CHECK(stat < (scalar ? std::min({rm.numel(), rv.numel(), ws.numel(), bs.numel()})
                                     : std::min(rs.numel(), wv.numel())),
                      "interaction_eval: too few batch-norm statistics for block_layout");
          const double second = scalar ? double(rv.data_ptr<T>()[stat]) : double(rs.data_ptr<T>()[stat]);
          const double weight = scalar ? double(ws.data_ptr<T>()[stat]) : double(wv.data_ptr<T>()[stat]);
          const double sc = weight / std::sqrt(second + norm_eps);
          const double sh = scalar ? double(bs.data_ptr<T>()[stat]) - double(rm.data_ptr<T>()[stat]) * sc : 0.0;
          for (int64_t i = 0; i < d; ++i) {
            feature_scale[off + u * d + i] = sc;
            feature_shift[off + u * d + i] = sh;
          }
        }
        (scalar ? n_scalar : n_vector) += mul;
      }
    });
    const Call call(x, edge_index, basis, last_weight, last_bias, output_relu, vectors, mix,
                    Consts{plan[0], plan[1], plan[2], plan[3], plan[4], dim_out, channels}, w1, radial[1], plan[5],
                    plan[6], plan[7]);
    built->plan = call.plan;
    built->plan.set_reverse_signs(plan[5].to(at::kFloat).contiguous().data_ptr<float>());
    AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "glassmd_interaction_tables", [&] {
      constexpr int L = 64 / sizeof(scalar_t);
      built->tables = std::make_shared<MixTables<scalar_t, L>>(built->plan, mix.data_ptr<scalar_t>());
    });
    built->last_weight = last_weight;
    built->last_bias = last_bias;
    built->mix = mix;
    built->feature_scale = std::move(feature_scale);
    built->feature_shift = std::move(feature_shift);
    for (const Tensor& t : key_inputs) built->inputs.push_back(t.contiguous().clone());
    built->scalars = key_scalars;
    eval_constants_cache().add(built);
    constants = built;
  }
  Tensor out = forward_cpu(Call(x, edge_index, basis, constants->last_weight, constants->last_bias, output_relu,
                                vectors, constants->mix,
                                Consts{plan[0], plan[1], plan[2], plan[3], plan[4], dim_out, channels},
                                radial[0], radial[1], plan[5], plan[6], plan[7], false, 0, &constants->plan),
                           constants->tables.get());
  const std::vector<double>& feature_scale = constants->feature_scale;
  const std::vector<double>& feature_shift = constants->feature_shift;
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "glassmd_interaction_norm", [&] {
    const std::vector<scalar_t> sc(feature_scale.begin(), feature_scale.end());
    const std::vector<scalar_t> sh(feature_shift.begin(), feature_shift.end());
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* hp = first ? nullptr : h.data_ptr<scalar_t>();
    at::parallel_for(0, n, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        scalar_t* row = o + i * dim_out;
        if (hp != nullptr) {
          const scalar_t* hi = hp + i * dim_out;
          GLASSMD_LANES for (int64_t f = 0; f < dim_out; ++f) row[f] = (hi[f] + row[f]) * sc[f] + sh[f];
        } else {
          GLASSMD_LANES for (int64_t f = 0; f < dim_out; ++f) row[f] = row[f] * sc[f] + sh[f];
        }
      }
    });
  });
  return out;
}

Tensor interaction_eval_autograd(const Tensor& h, const Tensor& node_attr, const Tensor& edge_index,
                                 const Tensor& basis, const Tensor& vectors, at::TensorList radial, double radial_eps,
                                 bool output_relu, at::TensorList mixing, at::TensorList plan, int64_t dim_out,
                                 int64_t channels, at::TensorList norm, double norm_eps) {
  if (torch::autograd::GradMode::is_enabled()) {
    TORCH_CHECK(!h.requires_grad() && !vectors.requires_grad(),
                "glassmd::interaction_eval computes no gradients: call it under torch.no_grad()");
    for (at::TensorList list : {radial, mixing, norm})
      for (const Tensor& t : list)
        TORCH_CHECK(!t.requires_grad(),
                    "glassmd::interaction_eval computes no gradients: call it under torch.no_grad()");
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return interaction_eval_cpu(h, node_attr, edge_index, basis, vectors, radial, radial_eps, output_relu, mixing, plan,
                              dim_out, channels, norm, norm_eps);
}

// The mixing matrices of frame_conv_factored, M = mix_weight[mix_index] * mix_coef (FrameConvKernel.mix_matrices).
Tensor factored_mix(const Tensor& mix_weight, const Tensor& mix_index, const Tensor& mix_coef) {
  TORCH_CHECK(mix_weight.dim() == 1 && mix_index.dim() == 1 && mix_coef.dim() == 1 &&
                  mix_index.size(0) == mix_coef.size(0),
              "frame_conv_factored: mix_weight, mix_index and mix_coef must be flat, the last two of one length");
  TORCH_CHECK(mix_index.scalar_type() == at::kLong && mix_coef.scalar_type() == mix_weight.scalar_type(),
              "frame_conv_factored: mix_index must be int64 and mix_coef of the dtype of mix_weight");
  return mix_weight.index_select(0, mix_index) * mix_coef;
}

// With alpha_coef and beta_coef (EdgeFrames' constants), `frame` is the [E, 3] edge vectors and the kernels compute
// the frames per block (EdgeVectors).
Call factored_call(const Tensor& x, const Tensor& edge_index, const Tensor& hidden, const Tensor& radial_weight,
                   const Tensor& radial_bias, bool output_relu, const Tensor& frame, const Tensor& matrices,
                   const Consts& k, const Tensor& alpha_coef, const Tensor& beta_coef) {
  const bool from_vectors = alpha_coef.defined() && alpha_coef.numel() > 0;
  return Call(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame, matrices, k, Tensor(), Tensor(),
              Tensor(), from_vectors ? alpha_coef : Tensor(), from_vectors ? beta_coef : Tensor(), from_vectors);
}

Tensor frame_conv_factored_cpu(const Tensor& x, const Tensor& edge_index, const Tensor& hidden,
                               const Tensor& radial_weight, const Tensor& radial_bias, bool output_relu,
                               const Tensor& frame, const Tensor& mix_weight, const Tensor& mix_index,
                               const Tensor& mix_coef, const Tensor& rot_in, const Tensor& lo_meta,
                               const Tensor& src_index, const Tensor& weight_index, const Tensor& active,
                               int64_t dim_out, int64_t channels, const std::optional<Tensor>& alpha_coef,
                               const std::optional<Tensor>& beta_coef) {
  return forward_cpu(factored_call(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame,
                                   factored_mix(mix_weight, mix_index, mix_coef),
                                   Consts{rot_in, lo_meta, src_index, weight_index, active, dim_out, channels},
                                   alpha_coef.value_or(Tensor()), beta_coef.value_or(Tensor())));
}

// frame_conv and frame_conv_factored with gradients. `mix` is M, or with `factored` the weight of
// M = mix[mix_index] * mix_coef, and then its gradient is that of the weight (MixGroups). (autograd::Function
// takes no undefined tensors: frame_conv passes empty ones for mix_index and mix_coef, and without the frame
// constants alpha_coef and beta_coef, empty ones for them.)
class FrameConvFunction : public torch::autograd::Function<FrameConvFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& edge_index,
                        const Tensor& hidden, const Tensor& radial_weight, const Tensor& radial_bias,
                        bool output_relu, const Tensor& frame, const Tensor& mix, const Tensor& mix_index,
                        const Tensor& mix_coef, const Tensor& rot_in, const Tensor& lo_meta,
                        const Tensor& src_index, const Tensor& weight_index, const Tensor& active, int64_t dim_out,
                        int64_t channels, bool factored, const Tensor& alpha_coef, const Tensor& beta_coef) {
    TORCH_CHECK(!frame.requires_grad(),
                "glassmd::frame_conv has no gradient with respect to the edge frames or vectors (positions); "
                "use the torch kernel for forces");
    TORCH_CHECK(!mix_coef.requires_grad(),
                "glassmd::frame_conv_factored has no gradient with respect to mix_coef");
    ctx->save_for_backward({x, edge_index, hidden, radial_weight, radial_bias, frame, mix, mix_index, mix_coef,
                            rot_in, lo_meta, src_index, weight_index, active, alpha_coef, beta_coef});
    ctx->saved_data["output_relu"] = output_relu;
    ctx->saved_data["dim_out"] = dim_out;
    ctx->saved_data["channels"] = channels;
    ctx->saved_data["factored"] = factored;
    at::AutoDispatchBelowADInplaceOrView guard;
    const Tensor matrices = factored ? factored_mix(mix, mix_index, mix_coef) : mix;
    return forward_cpu(factored_call(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame, matrices,
                                     Consts{rot_in, lo_meta, src_index, weight_index, active, dim_out, channels},
                                     alpha_coef, beta_coef));
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    auto s = ctx->get_saved_variables();
    Consts k{s[9], s[10], s[11], s[12], s[13], ctx->saved_data["dim_out"].toInt(),
             ctx->saved_data["channels"].toInt()};
    const bool factored = ctx->saved_data["factored"].toBool();
    at::AutoDispatchBelowADInplaceOrView guard;
    Call call = factored_call(s[0], s[1], s[2], s[3], s[4], ctx->saved_data["output_relu"].toBool(), s[5],
                              factored ? factored_mix(s[6], s[7], s[8]) : s[6], k, s[14], s[15]);
    if (factored) {
      call.mix_weight = s[6].contiguous();
      call.mix_index = s[7].contiguous();
      call.mix_coef = s[8].contiguous();
    }
    auto g = backward_cpu(grad_outputs[0], call);
    Tensor none;
    return {g[0], none, g[1], g[2], g[3], none, none, g[4], none, none, none, none, none, none, none, none, none,
            none, none, none};
  }
};

Tensor frame_conv_autograd(const Tensor& x, const Tensor& edge_index, const Tensor& hidden,
                           const Tensor& radial_weight, const Tensor& radial_bias, bool output_relu,
                           const Tensor& frame, const Tensor& mix, const Tensor& rot_in, const Tensor& lo_meta,
                           const Tensor& src_index, const Tensor& weight_index, const Tensor& active,
                           int64_t dim_out, int64_t channels) {
  const Tensor none = at::empty({0}, x.options());
  return FrameConvFunction::apply(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame, mix, none,
                                  none, rot_in, lo_meta, src_index, weight_index, active, dim_out, channels, false,
                                  none, none);
}

Tensor frame_conv_factored_autograd(const Tensor& x, const Tensor& edge_index, const Tensor& hidden,
                                    const Tensor& radial_weight, const Tensor& radial_bias, bool output_relu,
                                    const Tensor& frame, const Tensor& mix_weight, const Tensor& mix_index,
                                    const Tensor& mix_coef, const Tensor& rot_in, const Tensor& lo_meta,
                                    const Tensor& src_index, const Tensor& weight_index, const Tensor& active,
                                    int64_t dim_out, int64_t channels, const std::optional<Tensor>& alpha_coef,
                                    const std::optional<Tensor>& beta_coef) {
  const Tensor none = at::empty({0}, x.options());
  TORCH_CHECK(alpha_coef.has_value() == beta_coef.has_value(),
              "frame_conv_factored: give both alpha_coef and beta_coef, or neither");
  return FrameConvFunction::apply(x, edge_index, hidden, radial_weight, radial_bias, output_relu, frame, mix_weight,
                                  mix_index, mix_coef, rot_in, lo_meta, src_index, weight_index, active, dim_out,
                                  channels, true, alpha_coef.value_or(none), beta_coef.value_or(none));
}

// glassmd::frame_conv_train: frame_conv_factored (edge vectors, factored mix) with the radial MLP's hidden layer,
// dropout(batch_norm(relu(W1 B + b1))), computed in the kernels (TrainHidden) from the radial basis B [E, R]:
//   radial: W1, b1, gamma, beta (the hidden layer and its batch norm), W2, b2 (the last layer)
//   statistics: mean, var (biased), sums of glassmd::radial_statistics (float64), for batch norm in training
//   draws: one int32 per edge whose bit j keeps hidden value j (BitDropout), used with `drop`
//   mixing: mix_weight, mix_index, mix_coef; plan: rot_in, lo_meta, src_index, weight_index, active, alpha_coef,
//   beta_coef and optionally reverse_flip (FrameConvKernel)
// Edges may come paired (glassmd::pair_edges, as GlassGNN.edge_inputs gives them): the basis and the vectors then
// have one row per pair (its first direction) and per unpaired edge, fewer than the edges, and reverse_flip is
// needed; draws stay one per edge. The statistics are then those of radial_statistics with n_pairs.
// Gradients go to x, W1, b1, gamma, beta, W2, b2 and mix_weight.
Call train_call(const Tensor& x, const Tensor& edge_index, const Tensor& basis, const Tensor& edge_vec,
                const std::vector<Tensor>& radial, const Tensor& draws, bool drop, const Tensor& mean,
                const Tensor& var, double eps, bool output_relu, const std::vector<Tensor>& mixing,
                const std::vector<Tensor>& plan, int64_t dim_out, int64_t channels) {
  TORCH_CHECK(radial.size() == 6 && mixing.size() == 3 && (plan.size() == 7 || plan.size() == 8),
              "frame_conv_train: expected 6 radial, 3 mixing and 7 or 8 plan tensors");
  const Tensor w1 = radial[0].contiguous(), b1 = radial[1].contiguous();
  const Tensor gamma = radial[2].contiguous(), beta = radial[3].contiguous();
  TORCH_CHECK(basis.dim() == 2 && w1.dim() == 2 && w1.size(1) == basis.size(1) && b1.numel() == w1.size(0) &&
                  gamma.numel() == w1.size(0) && beta.numel() == w1.size(0),
              "frame_conv_train: basis [E, R], W1 [H, R], and H values of b1, gamma and beta");
  const int64_t H = w1.size(0);
  TORCH_CHECK(H <= 30, "frame_conv_train: at most 30 hidden values (one random bit each)");
  TORCH_CHECK(draws.scalar_type() == at::kInt && draws.dim() == 1 && edge_index.dim() == 2 &&
                  draws.size(0) == edge_index.size(1),
              "frame_conv_train: draws must be one int32 per edge");
  TORCH_CHECK(mean.numel() == H && var.numel() == H, "frame_conv_train: mean and var must have H values");
  for (const Tensor* t : {&w1, &b1, &gamma, &beta})
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "frame_conv_train: all float inputs must have one dtype");
  Call call(x, edge_index, basis.contiguous(), radial[4], radial[5], output_relu, edge_vec,
            factored_mix(mixing[0], mixing[1], mixing[2]),
            Consts{plan[0], plan[1], plan[2], plan[3], plan[4], dim_out, channels}, Tensor(), Tensor(),
            plan.size() == 8 && plan[7].numel() > 0 ? plan[7] : Tensor(), plan[5], plan[6], true, H);
  TORCH_CHECK(call.hidden.size(0) == call.frame.size(0),
              "frame_conv_train: the basis and the edge vectors need one row each per edge (or per pair and "
              "unpaired edge)");
  // As radial_hidden computes them: in float64, then in the dtype of the features. (Plain loops over the H values:
  // as tensor operators these small maps were about 15 calls per layer and pass, ~4% of a training step at N = 80.)
  const Tensor m = mean.to(at::kDouble).contiguous(), v = var.to(at::kDouble).contiguous();
  const Tensor g = gamma.to(at::kDouble).contiguous(), bt = beta.to(at::kDouble).contiguous();
  const auto dtype = x.scalar_type();
  const Tensor bn = at::empty({4, H}, x.options().dtype(dtype));  // rows: scale, shift, mean, invstd
  AT_DISPATCH_FLOATING_TYPES(dtype, "frame_conv_train_norm", [&] {
    const double *mp = m.data_ptr<double>(), *vp = v.data_ptr<double>();
    const double *gp = g.data_ptr<double>(), *bp = bt.data_ptr<double>();
    scalar_t* out = bn.data_ptr<scalar_t>();
    for (int64_t j = 0; j < H; ++j) {
      const double invstd = 1.0 / std::sqrt(vp[j] + eps), scale = gp[j] * invstd;
      out[j] = static_cast<scalar_t>(scale);
      out[H + j] = static_cast<scalar_t>(bp[j] - mp[j] * scale);
      out[2 * H + j] = static_cast<scalar_t>(mp[j]);
      out[3 * H + j] = static_cast<scalar_t>(invstd);
    }
  });
  call.hidden_layer = Call::HiddenLayer{w1, b1, bn[0], bn[1], bn[2], bn[3], draws.contiguous(), drop};
  call.mix_weight = mixing[0].contiguous();
  call.mix_index = mixing[1].contiguous();
  call.mix_coef = mixing[2].contiguous();
  return call;
}

class FrameConvTrainFunction : public torch::autograd::Function<FrameConvTrainFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x, const Tensor& edge_index,
                        const Tensor& basis, const Tensor& edge_vec, const Tensor& w1, const Tensor& b1,
                        const Tensor& gamma, const Tensor& beta, const Tensor& w2, const Tensor& b2,
                        const Tensor& draws, bool drop, const Tensor& mean, const Tensor& var, const Tensor& sums,
                        double eps, bool output_relu, const Tensor& mix_weight, const Tensor& mix_index,
                        const Tensor& mix_coef, const Tensor& rot_in, const Tensor& lo_meta, const Tensor& src_index,
                        const Tensor& weight_index, const Tensor& active, const Tensor& alpha_coef,
                        const Tensor& beta_coef, const Tensor& reverse_flip, int64_t dim_out, int64_t channels) {
    TORCH_CHECK(!edge_vec.requires_grad() && !basis.requires_grad(),
                "glassmd::frame_conv_train has no gradient with respect to the edge vectors or radial basis "
                "(positions); use the torch kernel for forces");
    ctx->save_for_backward({x, edge_index, basis, edge_vec, w1, b1, gamma, beta, w2, b2, draws, mean, var, sums,
                            mix_weight, mix_index, mix_coef, rot_in, lo_meta, src_index, weight_index, active,
                            alpha_coef, beta_coef, reverse_flip});
    ctx->saved_data["drop"] = drop;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["output_relu"] = output_relu;
    ctx->saved_data["dim_out"] = dim_out;
    ctx->saved_data["channels"] = channels;
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_cpu(train_call(x, edge_index, basis, edge_vec, {w1, b1, gamma, beta, w2, b2}, draws, drop, mean,
                                  var, eps, output_relu, {mix_weight, mix_index, mix_coef},
                                  {rot_in, lo_meta, src_index, weight_index, active, alpha_coef, beta_coef,
                                   reverse_flip},
                                  dim_out, channels));
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    auto s = ctx->get_saved_variables();
    at::AutoDispatchBelowADInplaceOrView guard;
    const double eps = ctx->saved_data["eps"].toDouble();
    Call call = train_call(s[0], s[1], s[2], s[3], {s[4], s[5], s[6], s[7], s[8], s[9]}, s[10],
                           ctx->saved_data["drop"].toBool(), s[11], s[12], eps,
                           ctx->saved_data["output_relu"].toBool(), {s[14], s[15], s[16]},
                           {s[17], s[18], s[19], s[20], s[21], s[22], s[23], s[24]},
                           ctx->saved_data["dim_out"].toInt(), ctx->saved_data["channels"].toInt());
    auto g = backward_cpu(grad_outputs[0], call);
    // The hidden layer's gradients from the sums of the kernels (HiddenGradSums, [H, 3 + R]) and of the batch
    // statistics (radial_statistics, [H, 2R + 3]: sum rho B, sum a B, sum rho, sum a, sum a^2), in float64.
    const Tensor k_sums = g[1].contiguous(), st = s[13].to(at::kDouble).contiguous();
    const Tensor mean = s[11].to(at::kDouble).contiguous(), var = s[12].to(at::kDouble).contiguous();
    const Tensor gamma = s[6].to(at::kDouble).contiguous();
    const int64_t R = s[2].size(1), H = k_sums.size(0);
    const double E = static_cast<double>(s[1].size(1));  // directed edges (a pair's row counts twice)
    const auto dtype = s[0].scalar_type();
    const Tensor grad_w1 = at::empty({H, R}, s[4].options()), grad_b1 = at::empty({H}, s[5].options());
    const Tensor grad_gamma = at::empty({H}, s[6].options()), grad_beta = at::empty({H}, s[7].options());
    AT_DISPATCH_FLOATING_TYPES(dtype, "frame_conv_train_hidden_grad", [&] {
      const double *ks = k_sums.data_ptr<double>(), *sp = st.data_ptr<double>();
      const double *mp = mean.data_ptr<double>(), *vp = var.data_ptr<double>(), *gp = gamma.data_ptr<double>();
      scalar_t *gw1 = grad_w1.data_ptr<scalar_t>(), *gb1 = grad_b1.data_ptr<scalar_t>();
      scalar_t *gg = grad_gamma.data_ptr<scalar_t>(), *gbt = grad_beta.data_ptr<scalar_t>();
      for (int64_t j = 0; j < H; ++j) {
        const double* kj = ks + j * (3 + R);  // sg, sgx, srg, then P
        const double* sj = sp + j * (2 * R + 3);  // Q = sum rho B, A = sum a B, sum rho, sum a
        const double mu = mp[j], invstd = 1.0 / std::sqrt(vp[j] + eps);
        const double k = gp[j] * invstd;
        const double g_mean = kj[0] / E, gx_mean = kj[1] / E;
        for (int64_t r = 0; r < R; ++r) {
          const double q = sj[r], u = (sj[R + r] - mu * q) * invstd;  // u: sum rho xhat B
          gw1[j * R + r] = static_cast<scalar_t>(k * (kj[3 + r] - g_mean * q - gx_mean * u));
        }
        const double s_rho = sj[2 * R], s_rho_xhat = (sj[2 * R + 1] - mu * s_rho) * invstd;
        gb1[j] = static_cast<scalar_t>(k * (kj[2] - g_mean * s_rho - gx_mean * s_rho_xhat));
        gg[j] = static_cast<scalar_t>(kj[1]);
        gbt[j] = static_cast<scalar_t>(kj[0]);
      }
    });
    Tensor none;
    return {g[0],  none, none, none, grad_w1, grad_b1, grad_gamma, grad_beta,
            g[2],  g[3], none, none, none, none, none, none, none, g[4], none, none, none, none, none,
            none,  none, none, none, none, none, none};
  }
};

Tensor frame_conv_train_autograd(const Tensor& x, const Tensor& edge_index, const Tensor& basis,
                                 const Tensor& edge_vec, at::TensorList radial, const Tensor& draws, bool drop,
                                 const Tensor& mean, const Tensor& var, const Tensor& sums, double eps,
                                 bool output_relu, at::TensorList mixing, at::TensorList plan, int64_t dim_out,
                                 int64_t channels) {
  TORCH_CHECK(radial.size() == 6 && mixing.size() == 3 && (plan.size() == 7 || plan.size() == 8),
              "frame_conv_train: expected 6 radial, 3 mixing and 7 or 8 plan tensors");
  TORCH_CHECK(sums.dim() == 2 && sums.size(0) == radial[0].size(0) && sums.size(1) == 2 * basis.size(1) + 3,
              "frame_conv_train: sums must be the [H, 2R + 3] of glassmd::radial_statistics");
  TORCH_CHECK(!mixing[2].requires_grad(), "glassmd::frame_conv_train has no gradient with respect to mix_coef");
  // (autograd::Function takes no undefined tensors: without reverse_flip an empty one, which train_call reads as
  // none)
  const Tensor flip = plan.size() == 8 ? plan[7] : at::empty({0}, x.options());
  return FrameConvTrainFunction::apply(x, edge_index, basis, edge_vec, radial[0], radial[1], radial[2], radial[3],
                                       radial[4], radial[5], draws, drop, mean, var, sums, eps, output_relu,
                                       mixing[0], mixing[1], mixing[2], plan[0], plan[1], plan[2], plan[3], plan[4],
                                       plan[5], plan[6], flip, dim_out, channels);
}

Tensor frame_conv_train_cpu(const Tensor& x, const Tensor& edge_index, const Tensor& basis, const Tensor& edge_vec,
                            at::TensorList radial, const Tensor& draws, bool drop, const Tensor& mean,
                            const Tensor& var, const Tensor& sums, double eps, bool output_relu,
                            at::TensorList mixing, at::TensorList plan, int64_t dim_out, int64_t channels) {
  return forward_cpu(train_call(x, edge_index, basis, edge_vec, radial.vec(), draws, drop, mean, var, eps,
                                output_relu, mixing.vec(), plan.vec(), dim_out, channels));
}

}  // namespace

TORCH_LIBRARY(glassmd, m) {
  m.def(
      "frame_conv(Tensor x, Tensor edge_index, Tensor hidden, Tensor radial_weight, Tensor radial_bias, "
      "bool output_relu, Tensor frame, Tensor mix, Tensor rot_in, Tensor lo_meta, Tensor src_index, "
      "Tensor weight_index, Tensor active, int dim_out, int channels) -> Tensor");
  // frame_conv with the mixing matrices given as mix_weight[mix_index] * mix_coef; its gradient goes to mix_weight.
  // With alpha_coef and beta_coef (EdgeFrames' constants) `frame` is the [E, 3] edge vectors (EdgeVectors).
  m.def(
      "frame_conv_factored(Tensor x, Tensor edge_index, Tensor hidden, Tensor radial_weight, Tensor radial_bias, "
      "bool output_relu, Tensor frame, Tensor mix_weight, Tensor mix_index, Tensor mix_coef, Tensor rot_in, "
      "Tensor lo_meta, Tensor src_index, Tensor weight_index, Tensor active, int dim_out, int channels, "
      "Tensor? alpha_coef=None, Tensor? beta_coef=None) -> Tensor");
  m.def(
      "frame_conv_eval(Tensor x, Tensor edge_index, Tensor basis, Tensor first_weight, Tensor first_bias, "
      "Tensor radial_weight, Tensor radial_bias, bool output_relu, Tensor frame, Tensor mix, Tensor rot_in, "
      "Tensor lo_meta, Tensor src_index, Tensor weight_index, Tensor active, int dim_out, int channels, "
      "Tensor? reverse_flip=None, Tensor? alpha_coef=None, Tensor? beta_coef=None) -> Tensor");
  m.def(
      "frame_conv_train(Tensor x, Tensor edge_index, Tensor basis, Tensor edge_vec, Tensor[] radial, Tensor draws, "
      "bool drop, Tensor mean, Tensor var, Tensor sums, float eps, bool output_relu, Tensor[] mixing, Tensor[] plan, "
      "int dim_out, int channels) -> Tensor");
  m.def(
      "interaction_eval(Tensor h, Tensor node_attr, Tensor edge_index, Tensor basis, Tensor vectors, "
      "Tensor[] radial, float radial_eps, bool output_relu, Tensor[] mixing, Tensor[] plan, int dim_out, "
      "int channels, Tensor[] norm, float norm_eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(glassmd, CPU, m) {
  m.impl("frame_conv", frame_conv_cpu);
  m.impl("frame_conv_factored", frame_conv_factored_cpu);
  m.impl("frame_conv_eval", frame_conv_eval_cpu);
  m.impl("interaction_eval", interaction_eval_cpu);
  m.impl("frame_conv_train", frame_conv_train_cpu);
}

TORCH_LIBRARY_IMPL(glassmd, Autograd, m) {
  m.impl("frame_conv", frame_conv_autograd);
  m.impl("frame_conv_factored", frame_conv_factored_autograd);
  m.impl("frame_conv_eval", frame_conv_eval_autograd);
  m.impl("interaction_eval", interaction_eval_autograd);
  m.impl("frame_conv_train", frame_conv_train_autograd);
}
