// SimAM (Yang et al., ICML 2021, Sec. 3.2, Eq. 5-6) as one fused CPU operator for Paddle:
// the forward and the input gradient of paddle_impl.models.alexnet._SimAMFunction, each in
// a few passes over every H x W plane while it is in cache (its statistics, accumulated in
// double, then its elements, in the tensor's type), the planes shared among the threads of
// Paddle's own OpenMP runtime (libiomp5, which this library links: paddle_impl.set_threads
// sets their number).
//
// Per plane of P = H * W values, with mu the mean, c = x - mu, n = P - 1,
// k = 1 / (4 (sum(c^2) / n + e_lambda)) and s = sigmoid(k c^2 + 1/2):
//   forward:  y = x s (s is a second output, kept for the gradient);
//   gradient: with t = gy x s (1 - s) c, A = sum(t) and B = sum(t c),
//             gx = gy s + 2 k (t - A / P) - 8 k^2 B c / n.
#include <vector>

#include "fused.h"
#include "moments.h"
#include "paddle/extension.h"

namespace {

// mean and k of one plane, accumulated in double (kept too) and in the tensor's type
template <typename T>
struct PlaneStats {
  double k_d;
  T mu, k;
};

template <typename T>
PlaneStats<T> plane_stats(const T* x, int64_t plane, double e_lambda) {
  const moments::Moments m = moments::two_pass(x, plane);
  const double k = 0.25 / (m.squares / (plane - 1) + e_lambda);
  return {k, static_cast<T>(m.mean), static_cast<T>(k)};
}

template <typename T>
void forward(const T* x, T* y, T* s, int64_t planes, int64_t plane, double e_lambda) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t o = p * plane;
    const PlaneStats<T> st = plane_stats(x + o, plane, e_lambda);
#pragma omp simd
    for (int64_t i = 0; i < plane; ++i) {
      const T c = x[o + i] - st.mu;
      const T sig = T(1) / (T(1) + fused::exp_nonpositive_of(-(st.k * c * c + T(0.5))));
      s[o + i] = sig;
      y[o + i] = x[o + i] * sig;
    }
  }
}

template <typename T>
void backward(const T* x, const T* s, const T* gy, T* gx, int64_t planes, int64_t plane,
              double e_lambda) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t o = p * plane;
    const PlaneStats<T> st = plane_stats(x + o, plane, e_lambda);
    const T mu = st.mu, k = st.k;
    const double k_d = st.k_d;
    double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < plane; ++i) {
      const T c = x[o + i] - mu;
      const T t = gy[o + i] * x[o + i] * (s[o + i] - s[o + i] * s[o + i]) * c;
      a += t;
      b += static_cast<double>(t) * c;
    }
    const T shift = static_cast<T>(2 * k_d * a / plane);
    const T slope = static_cast<T>(8 * k_d * k_d * b / (plane - 1));
#pragma omp simd
    for (int64_t i = 0; i < plane; ++i) {
      const T c = x[o + i] - mu;
      const T t = gy[o + i] * x[o + i] * (s[o + i] - s[o + i] * s[o + i]) * c;
      gx[o + i] = gy[o + i] * s[o + i] + T(2) * k * t - shift - slope * c;
    }
  }
}

void check(const paddle::Tensor& x) {
  PD_CHECK(x.is_cpu(), "simam runs on the CPU");
  PD_CHECK(x.shape().size() == 4, "simam takes [N, C, H, W]");
  PD_CHECK(x.shape()[2] * x.shape()[3] > 1, "simam needs H * W > 1");
}

}  // namespace

// Each operator reads its tensors in memory order, so views are made dense first (a no-op
// for a dense tensor).
std::vector<paddle::Tensor> SimAMForward(const paddle::Tensor& x_in, double e_lambda) {
  const auto x = x_in.contiguous();
  check(x);
  const int64_t plane = x.shape()[2] * x.shape()[3];
  auto y = paddle::empty_like(x), s = paddle::empty_like(x);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "SimAMForward", ([&] {
    forward<data_t>(x.data<data_t>(), y.data<data_t>(), s.data<data_t>(), x.numel() / plane,
                    plane, e_lambda);
  }));
  return {y, s};
}

std::vector<paddle::Tensor> SimAMBackward(const paddle::Tensor& x_in, const paddle::Tensor& s_in,
                                          const paddle::Tensor& gy_in, double e_lambda) {
  const auto x = x_in.contiguous(), s = s_in.contiguous(), gy = gy_in.contiguous();
  check(x);
  const int64_t plane = x.shape()[2] * x.shape()[3];
  auto gx = paddle::empty_like(x);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "SimAMBackward", ([&] {
    backward<data_t>(x.data<data_t>(), s.data<data_t>(), gy.data<data_t>(), gx.data<data_t>(),
                     x.numel() / plane, plane, e_lambda);
  }));
  return {gx};
}

std::vector<std::vector<int64_t>> SimAMShapes(const std::vector<int64_t>& x) { return {x, x}; }
std::vector<paddle::DataType> SimAMTypes(const paddle::DataType& x) { return {x, x}; }

PD_BUILD_OP(simam)
    .Inputs({"X"})
    .Outputs({"Y", "S"})
    .Attrs({"e_lambda: double"})
    .SetKernelFn(PD_KERNEL(SimAMForward))
    .SetInferShapeFn(PD_INFER_SHAPE(SimAMShapes))
    .SetInferDtypeFn(PD_INFER_DTYPE(SimAMTypes));

PD_BUILD_GRAD_OP(simam)
    .Inputs({"X", "S", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X")})
    .Attrs({"e_lambda: double"})
    .SetKernelFn(PD_KERNEL(SimAMBackward));
