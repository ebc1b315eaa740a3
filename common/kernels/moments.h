// Two-pass moments of n values, summed in double: the mean, then the sum of the squared
// deviations from it (no one-pass cancellation where the mean is large against the spread).
// Framework-free; the fused kernels of paddle_impl/kernels (SimAM's plane statistics) and
// gluon_impl/kernels (the layer norm) include it (common.toolchain.SHARED_HEADERS).
#pragma once

#include <cstdint>

namespace moments {

struct Moments {
  double mean;     // sum(x) / n
  double squares;  // sum((x - mean)^2)
};

template <typename T>
Moments two_pass(const T* x, int64_t n) {
  double sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const double mean = sum / n;
  double squares = 0;
#pragma omp simd reduction(+ : squares)
  for (int64_t i = 0; i < n; ++i) squares += (x[i] - mean) * (x[i] - mean);
  return {mean, squares};
}

}  // namespace moments
