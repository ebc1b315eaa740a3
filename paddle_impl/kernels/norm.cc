// A batch norm in inference (its running statistics) as one fused CPU operator for Paddle,
// forward and gradient: y[n, c, i] = x[n, c, i] * scale[c] + shift[c], with the per-channel
// scale = weight / sqrt(running_var + eps) and shift = bias - running_mean * scale computed
// by the caller (paddle_impl.layers), so that the gradients of scale and shift reach the
// weight, bias and statistics through Paddle's own operations. One pass over the tensor,
// the (n, c) planes shared among the threads of Paddle's own OpenMP runtime; Paddle's kernel
// takes several (on [2, 18, 49, 3136]: 6.3 ms, against 0.83 for torch's).
#include <vector>

#include "paddle/extension.h"

namespace {

template <typename T>
void affine(const T* x, const T* scale, const T* shift, T* y, int64_t n, int64_t c,
            int64_t inner) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t o = (b * c + ch) * inner;
      const T s = scale[ch], t = shift[ch];
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) y[o + i] = x[o + i] * s + t;
    }
  }
}

template <typename T>
void affine_grad(const T* x, const T* scale, const T* gy, T* gx, T* gscale, T* gshift,
                 int64_t n, int64_t c, int64_t inner) {
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < c; ++ch) {
    double sx = 0, s1 = 0;  // sums over the batch and the plane, in double
    for (int64_t b = 0; b < n; ++b) {
      const int64_t o = (b * c + ch) * inner;
#pragma omp simd reduction(+ : sx, s1)
      for (int64_t i = 0; i < inner; ++i) {
        gx[o + i] = gy[o + i] * scale[ch];
        sx += static_cast<double>(gy[o + i]) * x[o + i];
        s1 += gy[o + i];
      }
    }
    gscale[ch] = static_cast<T>(sx);
    gshift[ch] = static_cast<T>(s1);
  }
}

void check(const paddle::Tensor& x, const paddle::Tensor& scale, const paddle::Tensor& shift) {
  PD_CHECK(x.is_cpu() && scale.is_cpu() && shift.is_cpu(), "channel_affine runs on the CPU");
  PD_CHECK(x.shape().size() >= 2 && scale.shape().size() == 1 &&
               scale.shape()[0] == x.shape()[1] && shift.shape() == scale.shape(),
           "channel_affine takes [N, C, ...] and two [C]");
  PD_CHECK(x.dtype() == scale.dtype() && x.dtype() == shift.dtype(),
           "channel_affine: the tensors differ in type");
}

}  // namespace

// Each operator reads its tensors in memory order, so views are made dense first (a no-op
// for a dense tensor).
std::vector<paddle::Tensor> AffineForward(const paddle::Tensor& x_in, const paddle::Tensor& scale,
                                          const paddle::Tensor& shift) {
  const auto x = x_in.contiguous();
  check(x, scale, shift);
  const int64_t n = x.shape()[0], c = x.shape()[1];
  auto y = paddle::empty_like(x);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "AffineForward", ([&] {
    affine<data_t>(x.data<data_t>(), scale.data<data_t>(), shift.data<data_t>(),
                   y.data<data_t>(), n, c, x.numel() / (n * c));
  }));
  return {y};
}

std::vector<paddle::Tensor> AffineBackward(const paddle::Tensor& x_in, const paddle::Tensor& scale,
                                           const paddle::Tensor& shift,
                                           const paddle::Tensor& gy_in) {
  const auto x = x_in.contiguous(), gy = gy_in.contiguous();
  check(x, scale, shift);
  const int64_t n = x.shape()[0], c = x.shape()[1];
  auto gx = paddle::empty_like(x), gscale = paddle::empty_like(scale),
       gshift = paddle::empty_like(shift);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "AffineBackward", ([&] {
    affine_grad<data_t>(x.data<data_t>(), scale.data<data_t>(), gy.data<data_t>(),
                        gx.data<data_t>(), gscale.data<data_t>(), gshift.data<data_t>(), n, c,
                        x.numel() / (n * c));
  }));
  return {gx, gscale, gshift};
}

PD_BUILD_OP(channel_affine)
    .Inputs({"X", "Scale", "Shift"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(AffineForward));

PD_BUILD_GRAD_OP(channel_affine)
    .Inputs({"X", "Scale", "Shift", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X"), paddle::Grad("Scale"), paddle::Grad("Shift")})
    .SetKernelFn(PD_KERNEL(AffineBackward));
