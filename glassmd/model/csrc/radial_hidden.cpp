// glassmd::radial_hidden: the hidden layer of the radial MLPs in training mode,
// dropout(batchnorm(relu(basis W^T + b))), as one operator with its own backward.
//
// Every layer of a training step runs this on all edges (tens of thousands of rows of 16 values). As a
// chain of torch operators (addmm, relu, batch norm, the dropout mask and two products, each with its
// backward) it took a quarter of the step: batch norm over many rows of few channels is slow in torch,
// and every operator is a full pass over memory. Here it is two passes forward and two backward, each
// reading the basis (10 values a row) and recomputing the activations from it.
//
// Sums over edges run in fixed blocks of rows whose partial results are added in block order, so results
// do not depend on the number of threads (training runs repeat bit for bit). Batch statistics are added
// across blocks in float64.
//
// Dropout (p = 1/2) takes its masks from the bits of one random integer per edge, as BitDropout does.

#include <torch/library.h>
#include <torch/autograd.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "lanes.h"
#include "row_blocks.h"

namespace {

using at::Tensor;
using glassmd_rows::block_count;
using glassmd_rows::kBlock;
using glassmd_rows::sum_blocks;

void check_inputs(const Tensor& basis, const Tensor& weight, const Tensor& bias, const Tensor& gamma,
                  const Tensor& beta, const Tensor& draws) {
  TORCH_CHECK(basis.dim() == 2 && weight.dim() == 2 && weight.size(1) == basis.size(1),
              "radial_hidden: basis must be [E, R] and weight [H, R]");
  const int64_t hidden = weight.size(0);
  TORCH_CHECK(hidden <= 30, "radial_hidden: at most 30 hidden values (one random bit each)");
  TORCH_CHECK(bias.numel() == hidden && gamma.numel() == hidden && beta.numel() == hidden,
              "radial_hidden: bias, gamma and beta must have H values");
  TORCH_CHECK(basis.size(0) > 1, "radial_hidden: batch norm in training needs more than one edge");
  TORCH_CHECK(draws.scalar_type() == at::kInt && draws.numel() == basis.size(0),
              "radial_hidden: draws must be one int32 per edge");
  TORCH_CHECK(basis.device().is_cpu(), "radial_hidden runs on CPU");
}

// The dropout factors of one row: 2 for the hidden values an edge keeps, 0 for the others (1 without dropout).
// HC: H when known at compile time. (One vector shift and convert per row; as a scalar loop over the bits it
// was the largest part of a backward row.)
template <typename T, int HC>
inline void dropout_factors(bool drop, int32_t bits, int64_t H_rt, T* factor) {
  const int64_t H = HC > 0 ? HC : H_rt;
  const uint32_t word = static_cast<uint32_t>(bits);
  if (!drop) {
    GLASSMD_LANES for (int64_t c = 0; c < H; c++) factor[c] = T(1);
    return;
  }
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) factor[c] = T(static_cast<int32_t>(2 * ((word >> c) & 1u)));
}

// Rows are processed with the hidden index innermost (16 values: one vector register of floats); per-block
// sums are taken in T over at most kBlock rows, then in double across blocks.
constexpr int64_t kMaxHidden = 32;

// The relu activations of one row, a = relu(W x + b), into a[0..H). They are recomputed wherever a pass needs
// them (10 multiply-adds per value) rather than stored: an [E, H] array written once and read three times cost
// more than the arithmetic. HC: H when known at compile time (the paper's 16: every loop one register), 0: H;
// RC: likewise R (the paper's 10 basis functions: the loops over them unrolled, sums kept in registers).
template <typename T, int HC, int RC>
inline void activations(const T* x, const T* wt, const T* b, int64_t R_rt, int64_t H_rt, T* a) {
  const int64_t H = HC > 0 ? HC : H_rt;
  const int64_t R = RC > 0 ? RC : R_rt;
  T v[kMaxHidden];
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) v[c] = b[c];
  for (int64_t r = 0; r < R; r++) {
    const T xr = x[r];
    GLASSMD_LANES for (int64_t c = 0; c < H; c++) v[c] += xr * wt[r * H + c];
  }
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) a[c] = v[c] > T(0) ? v[c] : T(0);
}

// Forward: hidden values, batch mean and biased batch variance.
template <typename T, int HC, int RC>
void forward_impl(const Tensor& basis, const Tensor& weight, const Tensor& bias, const Tensor& gamma,
                  const Tensor& beta, const Tensor& draws, double eps, bool drop, Tensor& out, Tensor& mean_out,
                  Tensor& var_out) {
  const int64_t E = basis.size(0), R = RC > 0 ? RC : basis.size(1), H = HC > 0 ? HC : weight.size(0);
  const Tensor weight_t = weight.t().contiguous();  // [R, H]
  const T* x = basis.data_ptr<T>();
  const T* wt = weight_t.data_ptr<T>();
  const T* b = bias.data_ptr<T>();
  const int32_t* bits = draws.data_ptr<int32_t>();
  T* y = out.data_ptr<T>();
  const int64_t n_blocks = block_count(E);
  std::vector<double> sums(n_blocks * H, 0.0), squares(n_blocks * H, 0.0);

  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; blk++) {
      T s[kMaxHidden] = {}, q[kMaxHidden] = {}, u[kMaxHidden];
      for (int64_t e = blk * kBlock; e < std::min(E, (blk + 1) * kBlock); e++) {
        activations<T, HC, RC>(x + e * R, wt, b, R, H, u);
        GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
          s[c] += u[c];
          q[c] += u[c] * u[c];
        }
      }
      GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
        sums[blk * H + c] = s[c];
        squares[blk * H + c] = q[c];
      }
    }
  });
  const std::vector<double> sum = sum_blocks(sums, n_blocks, H), square = sum_blocks(squares, n_blocks, H);

  T scale[kMaxHidden], shift[kMaxHidden];
  const T* g = gamma.data_ptr<T>();
  const T* be = beta.data_ptr<T>();
  T* mean = mean_out.data_ptr<T>();
  T* var = var_out.data_ptr<T>();
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
    const double m = sum[c] / E;
    const double v = std::max(square[c] / E - m * m, 0.0);
    mean[c] = T(m);
    var[c] = T(v);
    const double invstd = 1.0 / std::sqrt(v + eps);
    scale[c] = T(g[c] * invstd);
    shift[c] = T(be[c] - m * g[c] * invstd);
  }

  at::parallel_for(0, E, 1024, [&](int64_t e0, int64_t e1) {
    T factor[kMaxHidden], u[kMaxHidden];
    for (int64_t e = e0; e < e1; e++) {
      dropout_factors<T, HC>(drop, bits[e], H, factor);
      activations<T, HC, RC>(x + e * R, wt, b, R, H, u);
      T* ye = y + e * H;
      GLASSMD_LANES for (int64_t c = 0; c < H; c++) ye[c] = (u[c] * scale[c] + shift[c]) * factor[c];
    }
  });
}

// Backward: gradients of basis (if wanted), weight, bias, gamma, beta.
template <typename T, int HC, int RC>
void backward_impl(const Tensor& grad_out, const Tensor& basis, const Tensor& weight, const Tensor& bias,
                   const Tensor& gamma, const Tensor& mean_t, const Tensor& var_t, const Tensor& draws, double eps,
                   bool drop, bool want_basis, Tensor& g_basis, Tensor& g_weight, Tensor& g_bias,
                   Tensor& g_gamma, Tensor& g_beta) {
  const int64_t E = basis.size(0), R = RC > 0 ? RC : basis.size(1), H = HC > 0 ? HC : weight.size(0);
  const Tensor weight_t = weight.t().contiguous();  // [R, H]
  const T* go = grad_out.data_ptr<T>();
  const T* x = basis.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  const T* wt = weight_t.data_ptr<T>();
  const T* bi = bias.data_ptr<T>();
  const int32_t* bits = draws.data_ptr<int32_t>();
  const T* mean = mean_t.data_ptr<T>();
  const T* var = var_t.data_ptr<T>();
  const T* gam = gamma.data_ptr<T>();
  const int64_t n_blocks = block_count(E);
  T invstd[kMaxHidden];
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) invstd[c] = T(1.0 / std::sqrt(double(var[c]) + eps));

  // Pass 1: the sums of the upstream gradient and of its product with the normalised activations.
  std::vector<double> sums(n_blocks * H, 0.0), dots(n_blocks * H, 0.0);
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    T factor[kMaxHidden], ae[kMaxHidden];
    for (int64_t blk = b0; blk < b1; blk++) {
      T s[kMaxHidden] = {}, d[kMaxHidden] = {};
      for (int64_t e = blk * kBlock; e < std::min(E, (blk + 1) * kBlock); e++) {
        dropout_factors<T, HC>(drop, bits[e], H, factor);
        activations<T, HC, RC>(x + e * R, wt, bi, R, H, ae);
        const T* ge = go + e * H;
        GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
          const T gy = ge[c] * factor[c];
          s[c] += gy;
          d[c] += gy * ((ae[c] - mean[c]) * invstd[c]);
        }
      }
      GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
        sums[blk * H + c] = s[c];
        dots[blk * H + c] = d[c];
      }
    }
  });
  const std::vector<double> sum_gy = sum_blocks(sums, n_blocks, H), sum_gy_xhat = sum_blocks(dots, n_blocks, H);
  T* gg = g_gamma.data_ptr<T>();
  T* gb = g_beta.data_ptr<T>();
  T k[kMaxHidden], mean_gy[kMaxHidden], mean_gy_xhat[kMaxHidden];
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
    gg[c] = T(sum_gy_xhat[c]);
    gb[c] = T(sum_gy[c]);
    k[c] = gam[c] * invstd[c];
    mean_gy[c] = T(sum_gy[c] / E);
    mean_gy_xhat[c] = T(sum_gy_xhat[c] / E);
  }

  // Pass 2: the gradient before the relu, and from it those of the first linear layer.
  std::vector<double> w_part(n_blocks * R * H, 0.0), b_part(n_blocks * H, 0.0);  // weight part as [R, H]
  T* gx = want_basis ? g_basis.data_ptr<T>() : nullptr;
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    // With R and H known the weight gradient of a block lives in registers (the paper's: 10 vectors of 16).
    constexpr int64_t kLocal = RC > 0 && HC > 0 ? RC * HC : 1;
    T gw_local[kLocal];
    std::vector<T> gw_heap(kLocal > 1 ? 0 : R * H);
    T* gw = kLocal > 1 ? gw_local : gw_heap.data();
    T factor[kMaxHidden], pre[kMaxHidden], ae[kMaxHidden];
    for (int64_t blk = b0; blk < b1; blk++) {
      std::fill(gw, gw + R * H, T(0));
      T gbias[kMaxHidden] = {};
      for (int64_t e = blk * kBlock; e < std::min(E, (blk + 1) * kBlock); e++) {
        dropout_factors<T, HC>(drop, bits[e], H, factor);
        const T* xe = x + e * R;
        activations<T, HC, RC>(xe, wt, bi, R, H, ae);
        const T* ge = go + e * H;
        GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
          const T xhat = (ae[c] - mean[c]) * invstd[c];
          const T ga = k[c] * (ge[c] * factor[c] - mean_gy[c] - xhat * mean_gy_xhat[c]);
          pre[c] = ae[c] > T(0) ? ga : T(0);
          gbias[c] += pre[c];
        }
        for (int64_t r = 0; r < R; r++) {
          const T xr = xe[r];
          GLASSMD_LANES for (int64_t c = 0; c < H; c++) gw[r * H + c] += pre[c] * xr;
        }
        if (gx) {
          for (int64_t r = 0; r < R; r++) {
            T v = 0;
            GLASSMD_LANES for (int64_t c = 0; c < H; c++) v += pre[c] * w[c * R + r];
            gx[e * R + r] = v;
          }
        }
      }
      for (int64_t i = 0; i < R * H; i++) w_part[blk * R * H + i] = gw[i];
      GLASSMD_LANES for (int64_t c = 0; c < H; c++) b_part[blk * H + c] = gbias[c];
    }
  });
  const std::vector<double> gw = sum_blocks(w_part, n_blocks, R * H), gbias = sum_blocks(b_part, n_blocks, H);
  T* gwp = g_weight.data_ptr<T>();
  T* gbp = g_bias.data_ptr<T>();
  GLASSMD_LANES for (int64_t c = 0; c < H; c++)
    for (int64_t r = 0; r < R; r++) gwp[c * R + r] = T(gw[r * H + c]);
  GLASSMD_LANES for (int64_t c = 0; c < H; c++) gbp[c] = T(gbias[c]);
}

// Calls f(hc, rc) with compile-time (H, R) = (16, 10) for the paper's radial MLP, else (0, 0) (runtime sizes).
template <typename F>
void with_radial_shape(int64_t H, int64_t R, F&& f) {
  if (H == 16 && R == 10)
    f(std::integral_constant<int, 16>(), std::integral_constant<int, 10>());
  else if (H == 16)
    f(std::integral_constant<int, 16>(), std::integral_constant<int, 0>());
  else
    f(std::integral_constant<int, 0>(), std::integral_constant<int, 0>());
}

std::tuple<Tensor, Tensor, Tensor> radial_hidden_forward(const Tensor& basis_in, const Tensor& weight_in,
                                                         const Tensor& bias_in, const Tensor& gamma_in,
                                                         const Tensor& beta_in, const Tensor& draws_in, double eps,
                                                         bool drop) {
  check_inputs(basis_in, weight_in, bias_in, gamma_in, beta_in, draws_in);
  const auto dtype = basis_in.scalar_type();
  const Tensor basis = basis_in.contiguous(), weight = weight_in.to(dtype).contiguous();
  const Tensor bias = bias_in.to(dtype).contiguous(), gamma = gamma_in.to(dtype).contiguous();
  const Tensor beta = beta_in.to(dtype).contiguous(), draws = draws_in.contiguous();
  const int64_t E = basis.size(0), H = weight.size(0);
  Tensor out = at::empty({E, H}, basis.options());
  Tensor mean = at::empty({H}, basis.options());
  Tensor var = at::empty({H}, basis.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "radial_hidden", [&] {
    with_radial_shape(H, basis.size(1), [&](auto hc, auto rc) {
      forward_impl<scalar_t, decltype(hc)::value, decltype(rc)::value>(basis, weight, bias, gamma, beta, draws, eps,
                                                                        drop, out, mean, var);
    });
  });
  return {out, mean, var};
}

class RadialHiddenFunction : public torch::autograd::Function<RadialHiddenFunction> {
 public:
  static torch::autograd::tensor_list forward(torch::autograd::AutogradContext* ctx, const Tensor& basis,
                                              const Tensor& weight, const Tensor& bias, const Tensor& gamma,
                                              const Tensor& beta, const Tensor& draws, double eps, bool drop) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, mean, var] = radial_hidden_forward(basis, weight, bias, gamma, beta, draws, eps, drop);
    // The backward reads rows of the basis: a column slice of a wider array is saved as a contiguous copy.
    ctx->save_for_backward({basis, weight, bias, gamma, mean, var, draws.contiguous()});
    ctx->saved_data["basis_rows"] = basis.is_contiguous() ? Tensor() : basis.contiguous();
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["drop"] = drop;
    ctx->mark_non_differentiable({mean, var});
    return {out, mean, var};
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    auto s = ctx->get_saved_variables();
    const Tensor rows = ctx->saved_data["basis_rows"].toTensor();
    const bool want_basis = ctx->needs_input_grad(0);
    const Tensor basis = rows.defined() ? rows : s[0];
    const Tensor &weight = s[1], &mean = s[4], &var = s[5];
    const Tensor& draws = s[6];
    const auto dtype = basis.scalar_type();
    const int64_t E = basis.size(0);
    const Tensor w = weight.to(dtype).contiguous(), bi = s[2].to(dtype).contiguous(), g = s[3].to(dtype).contiguous();
    const int64_t H = w.size(0);
    const Tensor grad = grad_outputs[0].defined() ? grad_outputs[0].to(dtype).contiguous()
                                                  : at::zeros({E, H}, basis.options());
    Tensor g_basis = want_basis ? at::empty_like(basis) : Tensor();
    Tensor g_weight = at::empty_like(w), g_bias = at::empty({H}, w.options());
    Tensor g_gamma = at::empty({H}, w.options()), g_beta = at::empty({H}, w.options());
    AT_DISPATCH_FLOATING_TYPES(dtype, "radial_hidden_backward", [&] {
      with_radial_shape(H, basis.size(1), [&](auto hc, auto rc) {
        backward_impl<scalar_t, decltype(hc)::value, decltype(rc)::value>(
            grad, basis, w, bi, g, mean, var, draws, ctx->saved_data["eps"].toDouble(),
            ctx->saved_data["drop"].toBool(), want_basis, g_basis, g_weight, g_bias, g_gamma, g_beta);
      });
    });
    return {g_basis, g_weight.to(weight.scalar_type()), g_bias, g_gamma, g_beta, Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> radial_hidden_autograd(const Tensor& basis, const Tensor& weight,
                                                          const Tensor& bias, const Tensor& gamma,
                                                          const Tensor& beta, const Tensor& draws, double eps,
                                                          bool drop) {
  auto out = RadialHiddenFunction::apply(basis, weight, bias, gamma, beta, draws, eps, drop);
  return {out[0], out[1], out[2]};
}

std::tuple<Tensor, Tensor, Tensor> radial_hidden_cpu(const Tensor& basis, const Tensor& weight, const Tensor& bias,
                                                     const Tensor& gamma, const Tensor& beta, const Tensor& draws,
                                                     double eps, bool drop) {
  return radial_hidden_forward(basis, weight, bias, gamma, beta, draws, eps, drop);
}

// One block of rows of statistics_impl for the paper's shape (float, 16 hidden values, 10 basis functions): the
// 23 sums of the block in AVX-512 registers (in memory, each multiply-add went through a load and a store: the
// pass took longer than the whole radial_hidden forward).
template <typename T, int HC, int RC>
bool statistics_block_in_registers(const T* x, const T* wt, const T* b, int64_t blk, int64_t E, double* out) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && HC == 16 && RC == 10) {
    __m512 q[10], a[10], s_rho = _mm512_setzero_ps(), s_a = _mm512_setzero_ps(), s_aa = _mm512_setzero_ps();
    __m512 w[10];
    for (int r = 0; r < 10; ++r) {
      q[r] = a[r] = _mm512_setzero_ps();
      w[r] = _mm512_loadu_ps(wt + r * 16);
    }
    const __m512 bias = _mm512_loadu_ps(b), zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    for (int64_t e = blk * kBlock; e < std::min(E, (blk + 1) * kBlock); e++) {
      const float* xe = x + e * 10;
      __m512 v = bias;
      for (int r = 0; r < 10; ++r) v = _mm512_fmadd_ps(_mm512_set1_ps(xe[r]), w[r], v);
      const __m512 u = _mm512_max_ps(v, zero);
      const __mmask16 pos = _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
      const __m512 rho = _mm512_maskz_mov_ps(pos, one);
      s_rho = _mm512_add_ps(s_rho, rho);
      s_a = _mm512_add_ps(s_a, u);
      s_aa = _mm512_fmadd_ps(u, u, s_aa);
      for (int r = 0; r < 10; ++r) {
        const __m512 xr = _mm512_set1_ps(xe[r]);
        q[r] = _mm512_fmadd_ps(rho, xr, q[r]);
        a[r] = _mm512_fmadd_ps(u, xr, a[r]);
      }
    }
    // the layout of statistics_impl's partials: [R][H] sum rho B, [R][H] sum a B, then [3][H]
    alignas(64) float tmp[16];
    auto put = [&](__m512 vsum, double* dst) {
      _mm512_store_ps(tmp, vsum);
      for (int c = 0; c < 16; ++c) dst[c] = tmp[c];
    };
    for (int r = 0; r < 10; ++r) {
      put(q[r], out + r * 16);
      put(a[r], out + 160 + r * 16);
    }
    put(s_rho, out + 320);
    put(s_a, out + 336);
    put(s_aa, out + 352);
    return true;
  }
#endif
  return false;
}

// glassmd::radial_statistics: the batch statistics of the activations a = relu(W1 B + b1) over the edges, for the
// hidden layer that glassmd::frame_conv_train computes in its kernels, with the sums its backward expands the
// batch norm's gradient into: (mean, biased var, sums [H, 2R + 3] = sum rho B, sum a B, sum rho, sum a, sum a^2),
// rho = [a > 0], all float64. One pass over the basis; fixed blocks of rows, so no dependence on the thread count.
// With n_pairs > 0 the first n_pairs rows are pairs of edges (glassmd::pair_edges: both directions have the basis of
// one distance) and count twice: the statistics are those of the directed edges.
template <typename T, int HC, int RC>
void statistics_impl(const Tensor& basis, const Tensor& weight, const Tensor& bias, int64_t n_pairs,
                     Tensor& sums_out) {
  const int64_t rows = basis.size(0), R = RC > 0 ? RC : basis.size(1), H = HC > 0 ? HC : weight.size(0);
  const Tensor weight_t = weight.t().contiguous();  // [R, H]
  const T* wt = weight_t.data_ptr<T>();
  const T* b = bias.data_ptr<T>();
  // The pair rows [0, n_pairs) and the other rows in blocks of their own, in one parallel pass.
  const int64_t pair_blocks = block_count(n_pairs), n_blocks = pair_blocks + block_count(rows - n_pairs);
  const int64_t W = (2 * R + 3) * H;  // per block: [2R + 3][H]
  std::vector<double> partial(n_blocks * W, 0.0);
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> acc(W);
    T u[kMaxHidden], rho[kMaxHidden];
    for (int64_t bi = b0; bi < b1; bi++) {
      const bool pair = bi < pair_blocks;
      const T* x = basis.data_ptr<T>() + (pair ? 0 : n_pairs * R);
      const int64_t E = pair ? n_pairs : rows - n_pairs, blk = pair ? bi : bi - pair_blocks;
      if (statistics_block_in_registers<T, HC, RC>(x, wt, b, blk, E, partial.data() + bi * W)) continue;
      std::fill(acc.begin(), acc.end(), T(0));
      T* qb = acc.data();          // [R][H]: sum rho B
      T* ab = qb + R * H;          // [R][H]: sum a B
      T* tail = ab + R * H;        // [3][H]: sum rho, sum a, sum a^2
      for (int64_t e = blk * kBlock; e < std::min(E, (blk + 1) * kBlock); e++) {
        const T* xe = x + e * R;
        activations<T, HC, RC>(xe, wt, b, R, H, u);
        GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
          rho[c] = u[c] > T(0) ? T(1) : T(0);
          tail[c] += rho[c];
          tail[H + c] += u[c];
          tail[2 * H + c] += u[c] * u[c];
        }
        for (int64_t r = 0; r < R; r++) {
          const T xr = xe[r];
          GLASSMD_LANES for (int64_t c = 0; c < H; c++) {
            qb[r * H + c] += rho[c] * xr;
            ab[r * H + c] += u[c] * xr;
          }
        }
      }
      for (int64_t i = 0; i < W; i++) partial[bi * W + i] = acc[i];
    }
  });
  // Each range in block order; pair rows count twice.
  const std::vector<double> pairs = sum_blocks(partial, pair_blocks, W);
  const std::vector<double> others = sum_blocks(partial, n_blocks - pair_blocks, W, pair_blocks);
  double* out = sums_out.data_ptr<double>();  // [H, 2R + 3]
  auto total = [&](int64_t i) { return pairs[i] * 2.0 + others[i]; };
  for (int64_t c = 0; c < H; c++) {
    for (int64_t r = 0; r < R; r++) {
      out[c * (2 * R + 3) + r] = total(r * H + c);
      out[c * (2 * R + 3) + R + r] = total(R * H + r * H + c);
    }
    for (int64_t t = 0; t < 3; t++) out[c * (2 * R + 3) + 2 * R + t] = total(2 * R * H + t * H + c);
  }
}

std::tuple<Tensor, Tensor, Tensor> radial_statistics_cpu(const Tensor& basis_in, const Tensor& weight_in,
                                                         const Tensor& bias_in, int64_t n_pairs) {
  TORCH_CHECK(basis_in.device().is_cpu(), "radial_statistics runs on CPU");
  TORCH_CHECK(basis_in.dim() == 2 && weight_in.dim() == 2 && weight_in.size(1) == basis_in.size(1) &&
                  bias_in.numel() == weight_in.size(0),
              "radial_statistics: basis must be [E, R], weight [H, R] and bias [H]");
  TORCH_CHECK(weight_in.size(0) <= kMaxHidden, "radial_statistics: at most ", kMaxHidden, " hidden values");
  TORCH_CHECK(n_pairs >= 0 && n_pairs <= basis_in.size(0), "radial_statistics: n_pairs (", n_pairs,
              ") must be between 0 and the number of rows (", basis_in.size(0), ")");
  TORCH_CHECK(basis_in.size(0) + n_pairs > 1, "radial_statistics: batch norm in training needs more than one edge");
  const auto dtype = basis_in.scalar_type();
  const Tensor basis = basis_in.contiguous(), weight = weight_in.to(dtype).contiguous();
  const Tensor bias = bias_in.to(dtype).contiguous();
  const int64_t E = basis.size(0) + n_pairs, H = weight.size(0), R = basis.size(1);
  const auto f64 = basis.options().dtype(at::kDouble);
  Tensor sums = at::empty({H, 2 * R + 3}, f64);
  AT_DISPATCH_FLOATING_TYPES(dtype, "radial_statistics", [&] {
    with_radial_shape(H, R, [&](auto hc, auto rc) {
      statistics_impl<scalar_t, decltype(hc)::value, decltype(rc)::value>(basis, weight, bias, n_pairs, sums);
    });
  });
  // (Loops over the H values: as tensor operators, these and the sums of two ranges were 8 calls per layer.)
  Tensor mean = at::empty({H}, f64), var = at::empty({H}, f64);
  const double* sp = sums.data_ptr<double>();
  for (int64_t c = 0; c < H; c++) {
    const double m = sp[c * (2 * R + 3) + 2 * R + 1] / double(E);
    mean.data_ptr<double>()[c] = m;
    var.data_ptr<double>()[c] = std::max(sp[c * (2 * R + 3) + 2 * R + 2] / double(E) - m * m, 0.0);
  }
  return {mean, var, sums};
}

// glassmd::dropout_bits: BitDropout's random integers, 31 uniform bits per row, from one seed (drawn by the caller
// from torch's generator, so that torch.manual_seed and saved generator states repeat them). Row i gets
// splitmix64(seed + (i + 1) * golden)'s top 31 bits: a counter-based generator, so the bits of any subset or order
// of the rows come without drawing the others (`order`: the rows wanted, in that order; the training kernels read
// the draws in their pair order). torch's random_ took 78 us for the 40k edges of N = 1000, 8 times a step.
Tensor dropout_bits_cpu(int64_t seed, int64_t n, const std::optional<Tensor>& order_in) {
  TORCH_CHECK(n >= 0, "dropout_bits: the number of rows must not be negative, got ", n);
  Tensor order;
  if (order_in.has_value() && order_in->defined()) {
    TORCH_CHECK(order_in->dim() == 1, "dropout_bits: order must be one-dimensional");
    order = order_in->to(at::kCPU, at::kLong).contiguous();
  }
  const int64_t m = order.defined() ? order.numel() : n;
  Tensor out = at::empty({m}, at::TensorOptions().dtype(at::kInt));
  const int64_t* idx = order.defined() ? order.data_ptr<int64_t>() : nullptr;
  int32_t* bits = out.data_ptr<int32_t>();
  const uint64_t base = static_cast<uint64_t>(seed);
  std::atomic<bool> bad{false};
  at::parallel_for(0, m, 16384, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = idx != nullptr ? idx[i] : i;
      if (static_cast<uint64_t>(row) >= static_cast<uint64_t>(n)) {
        bad = true;
        bits[i] = 0;
        continue;
      }
      uint64_t z = base + (static_cast<uint64_t>(row) + 1) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      bits[i] = static_cast<int32_t>(z >> 33);
    }
  });
  TORCH_CHECK(!bad, "dropout_bits: order holds a row outside [0, ", n, ")");
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(glassmd, m) {
  // (no dispatch key to take from a call without tensors: one kernel for all)
  m.def("dropout_bits(int seed, int n, Tensor? order=None) -> Tensor", dropout_bits_cpu);
  m.def("radial_statistics(Tensor basis, Tensor weight, Tensor bias, int n_pairs=0) -> (Tensor, Tensor, Tensor)");
  m.def(
      "radial_hidden(Tensor basis, Tensor weight, Tensor bias, Tensor gamma, Tensor beta, Tensor draws, "
      "float eps, bool drop) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(glassmd, CPU, m) {
  m.impl("radial_hidden", radial_hidden_cpu);
  m.impl("radial_statistics", radial_statistics_cpu);
}

TORCH_LIBRARY_IMPL(glassmd, Autograd, m) { m.impl("radial_hidden", radial_hidden_autograd); }
