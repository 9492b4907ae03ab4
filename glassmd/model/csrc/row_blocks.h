// Sums over the rows of an array (edges, nodes) that do not depend on the number of threads: the rows are cut
// into fixed blocks, each block's partial sums are taken on whichever thread runs it, and the partials are added
// in block order in float64. Training runs then repeat bit for bit at any thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace glassmd_rows {

constexpr int64_t kBlock = 256;  // rows per partial sum

inline int64_t block_count(int64_t rows) { return (rows + kBlock - 1) / kBlock; }

// Adds the per-block partials [n_blocks, width] from block `first` on, in block order.
inline std::vector<double> sum_blocks(const std::vector<double>& partial, int64_t n_blocks, int64_t width,
                                      int64_t first = 0) {
  std::vector<double> total(width, 0.0);
  for (int64_t b = first; b < first + n_blocks; b++)
    for (int64_t c = 0; c < width; c++) total[c] += partial[b * width + c];
  return total;
}

}  // namespace glassmd_rows
