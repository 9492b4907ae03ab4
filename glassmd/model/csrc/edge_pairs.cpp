// glassmd::pair_edges: the order in which glassmd::frame_conv_eval visits the edges of a graph, with the two
// directions i -> j and j -> i of a pair side by side, so that one radial MLP and one frame serve both.
//
// A neighbour list holds most pairs twice (a full list), but not all: in a LAMMPS sub-domain an edge from a
// ghost atom to a local one has no reverse, and with a box shorter than two cutoffs one pair of atoms can be
// joined by several periodic images. So an edge is paired only with the edge of swapped ends whose vector is
// its exact opposite (to a few float32 roundings); everything else stays an unpaired edge. Pairing is mutual
// and each edge appears once in the result, so the convolution sums the same messages in another order.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

constexpr int64_t kDistanceWindow = 2048;

// Returns (order, n_pairs): edge_index[:, order] lists the first directions of the pairs (the lower edge
// index of each pair; in windows of kDistanceWindow pairs sorted by distance), their reverses in the same
// order, then the unpaired edges in their original order.
std::tuple<Tensor, int64_t> pair_edges_cpu(const Tensor& edge_index_in, const Tensor& edge_vec_in,
                                           double tolerance) {
  TORCH_CHECK(edge_index_in.dim() == 2 && edge_index_in.size(0) == 2, "pair_edges: edge_index must be [2, E]");
  const int64_t n_edges = edge_index_in.size(1);
  TORCH_CHECK(edge_vec_in.dim() == 2 && edge_vec_in.size(0) == n_edges && edge_vec_in.size(1) == 3,
              "pair_edges: edge_vec must be [E, 3] with E = edge_index.shape[1]");
  auto options = at::TensorOptions().dtype(at::kLong);
  if (n_edges == 0) return {at::empty({0}, options), 0};
  const Tensor edge_index = edge_index_in.to(at::kCPU, at::kLong).contiguous();
  // Compared in their own precision (a float64 copy of the vectors cost as much as the pairing).
  const Tensor edge_vec = edge_vec_in.is_floating_point() ? edge_vec_in.contiguous()
                                                          : edge_vec_in.to(at::kDouble).contiguous();
  const int64_t* sender = edge_index.data_ptr<int64_t>();
  const int64_t* receiver = sender + n_edges;
  // The passes over the edges run in one contiguous range per thread, with per-range results combined in range
  // order, so the result is the same on any number of threads. (Serial, they took half of the call at N = 32768:
  // 13 of 28 ms on 2 threads.)
  const int64_t n_ranges = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_edges / 4096 + 1));
  const int64_t range = (n_edges + n_ranges - 1) / n_ranges;
  auto over_ranges = [&](auto&& f) {  // f(range index, first edge, end)
    at::parallel_for(0, n_ranges, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) f(c, c * range, std::min(n_edges, (c + 1) * range));
    });
  };
  // One pass for the node range and whether the edges come grouped by sender or by receiver (a neighbour list
  // is grouped by its central atom): that grouping then needs no counting sort.
  std::vector<int64_t> range_lo(n_ranges, 0), range_hi(n_ranges, -1);
  std::vector<uint8_t> range_by_sender(n_ranges, 1), range_by_receiver(n_ranges, 1);
  over_ranges([&](int64_t c, int64_t e0, int64_t e1) {
    int64_t lo = 0, hi = -1;
    bool by_s = true, by_r = true;
    for (int64_t e = e0; e < e1; ++e) {
      lo = std::min({lo, sender[e], receiver[e]});
      hi = std::max({hi, sender[e], receiver[e]});
      by_s &= e == 0 || sender[e] >= sender[e - 1];
      by_r &= e == 0 || receiver[e] >= receiver[e - 1];
    }
    range_lo[c] = lo;
    range_hi[c] = hi;
    range_by_sender[c] = by_s;
    range_by_receiver[c] = by_r;
  });
  const int64_t lo = *std::min_element(range_lo.begin(), range_lo.end());
  const int64_t hi = *std::max_element(range_hi.begin(), range_hi.end());
  const bool by_sender = std::all_of(range_by_sender.begin(), range_by_sender.end(), [](uint8_t b) { return b; });
  const bool by_receiver =
      std::all_of(range_by_receiver.begin(), range_by_receiver.end(), [](uint8_t b) { return b; });
  TORCH_CHECK(lo >= 0, "pair_edges: negative node index in edge_index");
  const int64_t n_nodes = hi + 1;

  // Edges grouped by receiver and by sender (counting sorts). The reverse of s -> r is among the edges
  // received by s; with their senders marked in a scratch array (one per thread, stamped with s), each edge
  // sent by s finds its candidate in one lookup. A node that receives twice from one sender (periodic images)
  // falls back to scanning its received edges.
  // (Each range counts its keys; per key the ranges' places follow in range order; each range writes its edges:
  // a stable counting sort. An edge list already grouped by the key is its own order, `edges` left empty.)
  auto group = [&](const int64_t* key, bool sorted, std::vector<int64_t>& start, std::vector<int64_t>& edges) {
    std::vector<std::vector<int64_t>> place(n_ranges);
    over_ranges([&](int64_t c, int64_t e0, int64_t e1) {
      place[c].assign(n_nodes, 0);
      for (int64_t e = e0; e < e1; ++e) ++place[c][key[e]];
    });
    start.assign(n_nodes + 1, 0);
    int64_t total = 0;
    for (int64_t i = 0; i < n_nodes; ++i) {
      start[i] = total;
      for (int64_t c = 0; c < n_ranges; ++c) {
        const int64_t k = place[c][i];
        place[c][i] = total;
        total += k;
      }
    }
    start[n_nodes] = total;
    if (sorted) return;
    edges.resize(n_edges);
    over_ranges([&](int64_t c, int64_t e0, int64_t e1) {
      int64_t* cursor = place[c].data();
      for (int64_t e = e0; e < e1; ++e) edges[cursor[key[e]]++] = e;
    });
  };
  std::vector<int64_t> in_start, in_edges, out_start, out_edges;
  group(receiver, by_receiver, in_start, in_edges);
  group(sender, by_sender, out_start, out_edges);
  auto in_edge = [&](int64_t i) { return in_edges.empty() ? i : in_edges[i]; };
  auto out_edge = [&](int64_t i) { return out_edges.empty() ? i : out_edges[i]; };

  std::vector<int64_t> partner(n_edges, -1);
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_pair_edges", [&] {
    const scalar_t* vec = edge_vec.data_ptr<scalar_t>();
    auto opposite = [&](int64_t e, int64_t q) {
      const scalar_t* v = vec + 3 * e;
      const scalar_t* w = vec + 3 * q;
      const double tol = tolerance * std::max({std::abs(double(v[0])), std::abs(double(v[1])), std::abs(double(v[2]))});
      return std::abs(double(v[0] + w[0])) <= tol && std::abs(double(v[1] + w[1])) <= tol &&
             std::abs(double(v[2] + w[2])) <= tol;
    };
    // One chunk per thread: each chunk allocates two arrays of n_nodes (with chunks of 256 nodes that was
    // O(N^2) work: 64 MB of arrays per call at N = 32768).
    const int64_t grain = std::max<int64_t>(256, (n_nodes + at::get_num_threads() - 1) / at::get_num_threads());
    at::parallel_for(0, n_nodes, grain, [&](int64_t s0, int64_t s1) {
      std::vector<int64_t> slot(n_nodes), stamp(n_nodes, -1);
      for (int64_t s = s0; s < s1; ++s) {
        bool repeated = false;
        for (int64_t i = in_start[s]; i < in_start[s + 1]; ++i) {
          const int64_t q = in_edge(i);
          if (stamp[sender[q]] == s) repeated = true;
          stamp[sender[q]] = s;
          slot[sender[q]] = q;
        }
        for (int64_t i = out_start[s]; i < out_start[s + 1]; ++i) {
          const int64_t e = out_edge(i), r = receiver[e];
          if (stamp[r] != s) continue;
          if (!repeated) {
            const int64_t q = slot[r];
            if (q != e && opposite(e, q)) partner[e] = q;
            continue;
          }
          for (int64_t j = in_start[s]; j < in_start[s + 1]; ++j) {
            const int64_t q = in_edge(j);
            if (q != e && sender[q] == r && opposite(e, q)) {
              partner[e] = q;
              break;
            }
          }
        }
      }
    });
  });

  // The first directions (the lower edge of each mutual pair) and the unpaired edges, each in edge order.
  std::vector<uint8_t> kind(n_edges);  // 0: first direction, 1: second, 2: unpaired
  std::vector<int64_t> range_first(n_ranges + 1, 0), range_unpaired(n_ranges + 1, 0);
  over_ranges([&](int64_t c, int64_t e0, int64_t e1) {
    int64_t nf = 0, nu = 0;
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t q = partner[e];
      const bool mutual = q >= 0 && partner[q] == e;
      kind[e] = mutual ? (e < q ? 0 : 1) : 2;
      nf += kind[e] == 0;
      nu += kind[e] == 2;
    }
    range_first[c + 1] = nf;
    range_unpaired[c + 1] = nu;
  });
  for (int64_t c = 0; c < n_ranges; ++c) {
    range_first[c + 1] += range_first[c];
    range_unpaired[c + 1] += range_unpaired[c];
  }
  std::vector<int64_t> first(range_first[n_ranges]), unpaired(range_unpaired[n_ranges]);
  over_ranges([&](int64_t c, int64_t e0, int64_t e1) {
    int64_t f = range_first[c], u = range_unpaired[c];
    for (int64_t e = e0; e < e1; ++e) {
      if (kind[e] == 0) first[f++] = e;
      if (kind[e] == 2) unpaired[u++] = e;
    }
  });
  const int64_t n_pairs = static_cast<int64_t>(first.size());
  // Within windows of kDistanceWindow pairs, shortest first. The radial filters are ReLU networks of the
  // distance: at a given distance about half of the hidden values and half of the filter weights are exactly
  // zero, and the evaluation kernel skips the work of those that are zero in every lane of a block. In edge
  // order a block holds 16 unrelated distances and shares few zeros (3-15% of the weights); sorted, nearly
  // all of them (45-50%). Windows keep the senders and receivers of a stretch of blocks few (the node rows
  // they touch stay in cache), as in the neighbour list's own order.
  AT_DISPATCH_FLOATING_TYPES(edge_vec.scalar_type(), "glassmd_pair_edges_sort", [&] {
    const scalar_t* vec = edge_vec.data_ptr<scalar_t>();
    const int64_t n_windows = (n_pairs + kDistanceWindow - 1) / kDistanceWindow;
    at::parallel_for(0, n_windows, 1, [&](int64_t w0, int64_t w1) {
      std::vector<uint64_t> keys(kDistanceWindow), scratch(kDistanceWindow);
      std::vector<int64_t> window(kDistanceWindow);
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t k0 = w * kDistanceWindow, n = std::min(kDistanceWindow, n_pairs - k0);
        // Radix sort (stable, least significant byte first) of the float32 squared lengths, whose bit patterns
        // order as integers, with each pair's place in the window below them: std::sort of (length, edge)
        // pairs took 1 ms of a 12 ms forward at N = 1000.
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t* v = vec + 3 * first[k0 + i];
          const float length2 = static_cast<float>(double(v[0]) * v[0] + double(v[1]) * v[1] + double(v[2]) * v[2]);
          uint32_t bits;
          std::memcpy(&bits, &length2, sizeof bits);
          keys[i] = (uint64_t(bits) << 32) | uint64_t(i);
        }
        for (int shift = 32; shift < 64; shift += 8) {
          int64_t count[257] = {};
          for (int64_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 255) + 1];
          for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
          for (int64_t i = 0; i < n; ++i) scratch[count[(keys[i] >> shift) & 255]++] = keys[i];
          keys.swap(scratch);
        }
        for (int64_t i = 0; i < n; ++i) window[i] = first[k0 + (keys[i] & 0xFFFFFFFFu)];
        std::copy(window.begin(), window.begin() + n, first.begin() + k0);
      }
    });
  });
  Tensor order = at::empty({n_edges}, options);
  int64_t* o = order.data_ptr<int64_t>();
  at::parallel_for(0, n_pairs, 1 << 14, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      o[k] = first[k];
      o[n_pairs + k] = partner[first[k]];
    }
  });
  std::copy(unpaired.begin(), unpaired.end(), o + 2 * n_pairs);
  return {order, n_pairs};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(glassmd, m) {
  m.def("pair_edges(Tensor edge_index, Tensor edge_vec, float tolerance=1e-6) -> (Tensor, int)");
}

TORCH_LIBRARY_IMPL(glassmd, CPU, m) { m.impl("pair_edges", pair_edges_cpu); }
