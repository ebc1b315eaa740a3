// Layer norm over every axis but the batch one, without affine parameters (torch's
// F.layer_norm(x, x.shape[1:]), UPANets' normalisation), as one MXNet operator for the CPU,
// float32 and float64, forward and gradient, loaded with mx.library.load (lib_api.h):
//   y = (x - mean) / sqrt(var + eps), mean and var over each sample's K values.
// The mean and a two-pass variance are summed in double, and y is computed in double and
// rounded once: as accurate as the float64 reference allows a float32 result, where MXNet's
// own LayerNorm (one axis, float32 sums) is 84 float32 tolerances off on activations whose
// mean is large against their spread. The gradient, from torch's formula,
//   dx = (dy - mean(dy) - y * mean(dy * y)) / sqrt(var + eps),
// recomputes the statistics from x (two passes) rather than keep them. Samples are shared
// among the threads of MXNet's OpenMP runtime (libgomp, which this library links too).
#include <cmath>
#include <cstdint>
#include <vector>

#include "library.h"
#include "moments.h"

namespace {

double epsilon(const Attrs& attrs) {
  auto it = attrs.find("eps");
  return it == attrs.end() ? 1e-5 : std::stod(it->second);
}

// The mean and 1 / sqrt(var + eps) of x[0 .. k).
template <typename T>
void moments_of(const T* x, int64_t k, double eps, double* mean, double* rstd) {
  const moments::Moments m = moments::two_pass(x, k);
  *mean = m.mean;
  *rstd = 1.0 / std::sqrt(m.squares / k + eps);
}

template <typename T>
void normalise(const T* x, T* y, int64_t n, int64_t k, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    const T* xs = x + b * k;
    T* ys = y + b * k;
    double m, r;
    moments_of(xs, k, eps, &m, &r);
#pragma omp simd
    for (int64_t i = 0; i < k; ++i) ys[i] = static_cast<T>((xs[i] - m) * r);
  }
}

template <typename T>
void normalise_grad(const T* gy, const T* x, T* gx, int64_t n, int64_t k, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    const T* xs = x + b * k;
    const T* gs = gy + b * k;
    T* out = gx + b * k;
    double m, r;
    moments_of(xs, k, eps, &m, &r);
    double sg = 0, sgy = 0;
#pragma omp simd reduction(+ : sg, sgy)
    for (int64_t i = 0; i < k; ++i) {
      sg += gs[i];
      sgy += gs[i] * ((xs[i] - m) * r);
    }
    const double mg = sg / k, mgy = sgy / k;
#pragma omp simd
    for (int64_t i = 0; i < k; ++i)
      out[i] = static_cast<T>((gs[i] - mg - (xs[i] - m) * r * mgy) * r);
  }
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource&) {
  MXTensor& x = inputs->at(0);
  const int64_t n = x.shape[0], k = x.size() / n;
  if (x.dtype == kFloat64)
    normalise(x.data<double>(), outputs->at(0).data<double>(), n, k, epsilon(attrs));
  else
    normalise(x.data<float>(), outputs->at(0).data<float>(), n, k, epsilon(attrs));
  return MX_SUCCESS;
}

// inputs: dy, x, y; outputs: dx.
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource&) {
  MXTensor &gy = inputs->at(0), &x = inputs->at(1), &gx = outputs->at(0);
  const int64_t n = x.shape[0], k = x.size() / n;
  if (x.dtype == kFloat64)
    normalise_grad(gy.data<double>(), x.data<double>(), gx.data<double>(), n, k, epsilon(attrs));
  else
    normalise_grad(gy.data<float>(), x.data<float>(), gx.data<float>(), n, k, epsilon(attrs));
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const Attrs&, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  if (in->at(0).size() < 2) {
    MX_ERROR_MSG << "layer_norm_chw takes [N, ...] data of at least two axes";
    return MX_FAIL;
  }
  out->at(0) = in->at(0);
  return MX_SUCCESS;
}

}  // namespace

OPERATOR(layer_norm_chw, 1)
