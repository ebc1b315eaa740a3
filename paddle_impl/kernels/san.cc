// SAN's operators (Zhao, Jia, Koltun, CVPR 2020, Sec. 3) as fused CPU operators for Paddle,
// forward and gradient, with the semantics of paddle_impl.san_ops on already padded inputs
// (read its module docstring). The composed versions walk the k*k window offsets as k*k
// passes over the whole tensor, or unfold it; these walk them over one channel's plane while
// it is in cache, the planes shared among the threads of Paddle's own OpenMP runtime.
//
// * aggregation (Eq. 1): out[n, c, p] = sum_j w[n, c mod C_w, j, p] * x[n, c, window_j(p)],
//   the offsets j in row-major order, summed in that order;
// * subtraction2 (Eq. 3's relation x_i - x_j): out[n, c, j, p] = x1[n, c, centre(p)] -
//   x2[n, c, window_j(p)];
// * window_softmax: the softmax over the k*k axis of [N, C, k*k, L] attention weights.
#include <algorithm>
#include <vector>

#include "fused.h"
#include "paddle/extension.h"

namespace {

struct Geometry {
  int64_t n, c, cw, hp, wp, oh, ow;
  int k, stride, dilation;
  int64_t taps() const { return static_cast<int64_t>(k) * k; }
  int64_t plane() const { return oh * ow; }
  // the input row read by output row y at tap row kh, and the column offset of tap column kw
  int64_t row(int64_t y, int kh) const { return (y * stride + kh * dilation) * wp; }
  int64_t col(int kw) const { return static_cast<int64_t>(kw) * dilation; }
};

template <typename T>
void forward(const T* x, const T* w, T* out, const Geometry& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      const T* xc = x + (b * g.c + ch) * g.hp * g.wp;
      const T* wc = w + (b * g.cw + ch % g.cw) * g.taps() * g.plane();
      T* o = out + (b * g.c + ch) * g.plane();
      std::fill(o, o + g.plane(), T(0));
      for (int64_t j = 0; j < g.taps(); ++j) {
        const int kh = j / g.k, kw = j % g.k;
        for (int64_t y = 0; y < g.oh; ++y) {
          const T* xr = xc + g.row(y, kh) + g.col(kw);
          const T* wr = wc + j * g.plane() + y * g.ow;
          T* orow = o + y * g.ow;
#pragma omp simd
          for (int64_t i = 0; i < g.ow; ++i) orow[i] += wr[i] * xr[i * g.stride];
        }
      }
    }
  }
}

template <typename T>
void grad_input(const T* w, const T* gy, T* gx, const Geometry& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      T* gxc = gx + (b * g.c + ch) * g.hp * g.wp;
      const T* wc = w + (b * g.cw + ch % g.cw) * g.taps() * g.plane();
      const T* gc = gy + (b * g.c + ch) * g.plane();
      std::fill(gxc, gxc + g.hp * g.wp, T(0));
      for (int64_t j = 0; j < g.taps(); ++j) {
        const int kh = j / g.k, kw = j % g.k;
        for (int64_t y = 0; y < g.oh; ++y) {
          T* gr = gxc + g.row(y, kh) + g.col(kw);
          const T* wr = wc + j * g.plane() + y * g.ow;
          const T* grow = gc + y * g.ow;
          for (int64_t i = 0; i < g.ow; ++i) gr[i * g.stride] += grow[i] * wr[i];
        }
      }
    }
  }
}

template <typename T>
void grad_weight(const T* x, const T* gy, T* gw, const Geometry& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t cwi = 0; cwi < g.cw; ++cwi) {
      T* gwc = gw + (b * g.cw + cwi) * g.taps() * g.plane();
      std::fill(gwc, gwc + g.taps() * g.plane(), T(0));
      for (int64_t ch = cwi; ch < g.c; ch += g.cw) {  // the channels sharing this weight
        const T* xc = x + (b * g.c + ch) * g.hp * g.wp;
        const T* gc = gy + (b * g.c + ch) * g.plane();
        for (int64_t j = 0; j < g.taps(); ++j) {
          const int kh = j / g.k, kw = j % g.k;
          for (int64_t y = 0; y < g.oh; ++y) {
            const T* xr = xc + g.row(y, kh) + g.col(kw);
            const T* grow = gc + y * g.ow;
            T* gwr = gwc + j * g.plane() + y * g.ow;
#pragma omp simd
            for (int64_t i = 0; i < g.ow; ++i) gwr[i] += grow[i] * xr[i * g.stride];
          }
        }
      }
    }
  }
}

// subtraction2 on planes: x1 [N, C, H, W] (its centres are (y s, i s)), x2 padded
template <typename T>
void subtract(const T* x1, const T* x2, T* out, int64_t h, int64_t w, const Geometry& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      const T* c1 = x1 + (b * g.c + ch) * h * w;
      const T* c2 = x2 + (b * g.c + ch) * g.hp * g.wp;
      T* o = out + (b * g.c + ch) * g.taps() * g.plane();
      for (int64_t j = 0; j < g.taps(); ++j) {
        const int kh = j / g.k, kw = j % g.k;
        for (int64_t y = 0; y < g.oh; ++y) {
          const T* centre = c1 + y * g.stride * w;
          const T* xr = c2 + g.row(y, kh) + g.col(kw);
          T* orow = o + j * g.plane() + y * g.ow;
#pragma omp simd
          for (int64_t i = 0; i < g.ow; ++i) orow[i] = centre[i * g.stride] - xr[i * g.stride];
        }
      }
    }
  }
}

template <typename T>
void subtract_grad(const T* gy, T* g1, T* g2, int64_t h, int64_t w, const Geometry& g) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      T* c1 = g1 + (b * g.c + ch) * h * w;
      T* c2 = g2 + (b * g.c + ch) * g.hp * g.wp;
      const T* gc = gy + (b * g.c + ch) * g.taps() * g.plane();
      std::fill(c1, c1 + h * w, T(0));
      std::fill(c2, c2 + g.hp * g.wp, T(0));
      for (int64_t j = 0; j < g.taps(); ++j) {
        const int kh = j / g.k, kw = j % g.k;
        for (int64_t y = 0; y < g.oh; ++y) {
          T* centre = c1 + y * g.stride * w;
          T* xr = c2 + g.row(y, kh) + g.col(kw);
          const T* grow = gc + j * g.plane() + y * g.ow;
          for (int64_t i = 0; i < g.ow; ++i) {
            centre[i * g.stride] += grow[i];
            xr[i * g.stride] -= grow[i];
          }
        }
      }
    }
  }
}

// softmax over the taps of each (n, c) block [taps, L], in the order of the composed version
// (the largest tap subtracted, the exponentials summed over the taps in order)
template <typename T>
void softmax(const T* x, T* y, int64_t blocks, int64_t taps, int64_t plane) {
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const T* xb = x + blk * taps * plane;
    T* yb = y + blk * taps * plane;
    std::vector<T> top(xb, xb + plane), sum(plane, T(0));
    for (int64_t j = 1; j < taps; ++j) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p) top[p] = std::max(top[p], xb[j * plane + p]);
    }
    for (int64_t j = 0; j < taps; ++j) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p) {
        yb[j * plane + p] = fused::exp_nonpositive_of(xb[j * plane + p] - top[p]);
        sum[p] += yb[j * plane + p];
      }
    }
    for (int64_t j = 0; j < taps; ++j) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p) yb[j * plane + p] /= sum[p];
    }
  }
}

// its gradient: gx = y (gy - sum_j gy y)
template <typename T>
void softmax_grad(const T* y, const T* gy, T* gx, int64_t blocks, int64_t taps, int64_t plane) {
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t o = blk * taps * plane;
    std::vector<T> dot(plane, T(0));
    for (int64_t j = 0; j < taps; ++j) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p) dot[p] += gy[o + j * plane + p] * y[o + j * plane + p];
    }
    for (int64_t j = 0; j < taps; ++j) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p)
        gx[o + j * plane + p] = y[o + j * plane + p] * (gy[o + j * plane + p] - dot[p]);
    }
  }
}

Geometry geometry(const paddle::Tensor& x, const paddle::Tensor& w, int k, int stride,
                  int dilation, int oh, int ow) {
  PD_CHECK(x.is_cpu() && w.is_cpu(), "aggregation runs on the CPU");
  PD_CHECK(x.shape().size() == 4 && w.shape().size() == 4, "aggregation takes 4-D tensors");
  Geometry g{x.shape()[0], x.shape()[1], w.shape()[1], x.shape()[2], x.shape()[3], oh, ow,
             k, stride, dilation};
  PD_CHECK(w.shape()[0] == g.n && g.c % g.cw == 0 && w.shape()[2] == g.taps() &&
               w.shape()[3] == g.plane(), "aggregation: the weight does not fit the input");
  PD_CHECK((oh - 1) * stride + (k - 1) * dilation < g.hp &&
               (ow - 1) * stride + (k - 1) * dilation < g.wp,
           "aggregation: the windows pass the padded input");
  return g;
}

}  // namespace

// Each operator reads its tensors in memory order, so views are made dense first (a no-op
// for a dense tensor).
std::vector<paddle::Tensor> AggregationForward(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                                               int kernel, int stride, int dilation, int out_h,
                                               int out_w) {
  const auto x = x_in.contiguous(), w = w_in.contiguous();
  const Geometry g = geometry(x, w, kernel, stride, dilation, out_h, out_w);
  auto out = paddle::empty({g.n, g.c, g.oh, g.ow}, x.dtype(), x.place());
  PD_DISPATCH_FLOATING_TYPES(x.type(), "AggregationForward", ([&] {
    forward<data_t>(x.data<data_t>(), w.data<data_t>(), out.data<data_t>(), g);
  }));
  return {out};
}

std::vector<paddle::Tensor> AggregationBackward(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                                                const paddle::Tensor& gy_in, int kernel, int stride,
                                                int dilation, int out_h, int out_w) {
  const auto x = x_in.contiguous(), w = w_in.contiguous(), gy = gy_in.contiguous();
  const Geometry g = geometry(x, w, kernel, stride, dilation, out_h, out_w);
  auto gx = paddle::empty_like(x), gw = paddle::empty_like(w);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "AggregationBackward", ([&] {
    grad_input<data_t>(w.data<data_t>(), gy.data<data_t>(), gx.data<data_t>(), g);
    grad_weight<data_t>(x.data<data_t>(), gy.data<data_t>(), gw.data<data_t>(), g);
  }));
  return {gx, gw};
}

std::vector<std::vector<int64_t>> AggregationShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w, int kernel,
                                                   int stride, int dilation, int out_h,
                                                   int out_w) {
  return {{x[0], x[1], out_h, out_w}};
}

std::vector<paddle::DataType> FirstInputType(const paddle::DataType& x,
                                              const paddle::DataType& w) {
  return {x};
}

PD_BUILD_OP(aggregation)
    .Inputs({"X", "W"})
    .Outputs({"Out"})
    .Attrs({"kernel: int", "stride: int", "dilation: int", "out_h: int", "out_w: int"})
    .SetKernelFn(PD_KERNEL(AggregationForward))
    .SetInferShapeFn(PD_INFER_SHAPE(AggregationShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstInputType));

PD_BUILD_GRAD_OP(aggregation)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .Attrs({"kernel: int", "stride: int", "dilation: int", "out_h: int", "out_w: int"})
    .SetKernelFn(PD_KERNEL(AggregationBackward));

// subtraction2: x1 [N, C, H, W] and x2 padded [N, C, Hp, Wp] -> [N, C, k*k, L]
Geometry subtraction_geometry(const paddle::Tensor& x1, const paddle::Tensor& x2, int k,
                              int stride, int dilation, int oh, int ow) {
  PD_CHECK(x1.is_cpu() && x2.is_cpu(), "subtraction2 runs on the CPU");
  PD_CHECK(x1.shape().size() == 4 && x2.shape().size() == 4, "subtraction2 takes 4-D tensors");
  Geometry g{x2.shape()[0], x2.shape()[1], 1, x2.shape()[2], x2.shape()[3], oh, ow,
             k, stride, dilation};
  PD_CHECK(x1.shape()[0] == g.n && x1.shape()[1] == g.c, "subtraction2: x1 and x2 differ");
  PD_CHECK((oh - 1) * stride < x1.shape()[2] && (ow - 1) * stride < x1.shape()[3] &&
               (oh - 1) * stride + (k - 1) * dilation < g.hp &&
               (ow - 1) * stride + (k - 1) * dilation < g.wp,
           "subtraction2: the windows pass the inputs");
  return g;
}

std::vector<paddle::Tensor> Subtraction2Forward(const paddle::Tensor& x1_in,
                                                const paddle::Tensor& x2_in, int kernel,
                                                int stride, int dilation, int out_h, int out_w) {
  const auto x1 = x1_in.contiguous(), x2 = x2_in.contiguous();
  const Geometry g = subtraction_geometry(x1, x2, kernel, stride, dilation, out_h, out_w);
  auto out = paddle::empty({g.n, g.c, g.taps(), g.plane()}, x1.dtype(), x1.place());
  PD_DISPATCH_FLOATING_TYPES(x1.type(), "Subtraction2Forward", ([&] {
    subtract<data_t>(x1.data<data_t>(), x2.data<data_t>(), out.data<data_t>(), x1.shape()[2],
                     x1.shape()[3], g);
  }));
  return {out};
}

std::vector<paddle::Tensor> Subtraction2Backward(const paddle::Tensor& x1_in,
                                                 const paddle::Tensor& x2_in,
                                                 const paddle::Tensor& gy_in, int kernel,
                                                 int stride, int dilation, int out_h, int out_w) {
  const auto x1 = x1_in.contiguous(), x2 = x2_in.contiguous(), gy = gy_in.contiguous();
  const Geometry g = subtraction_geometry(x1, x2, kernel, stride, dilation, out_h, out_w);
  auto g1 = paddle::empty_like(x1), g2 = paddle::empty_like(x2);
  PD_DISPATCH_FLOATING_TYPES(x1.type(), "Subtraction2Backward", ([&] {
    subtract_grad<data_t>(gy.data<data_t>(), g1.data<data_t>(), g2.data<data_t>(),
                          x1.shape()[2], x1.shape()[3], g);
  }));
  return {g1, g2};
}

std::vector<std::vector<int64_t>> Subtraction2Shape(const std::vector<int64_t>& x1,
                                                    const std::vector<int64_t>& x2, int kernel,
                                                    int stride, int dilation, int out_h,
                                                    int out_w) {
  return {{x1[0], x1[1], static_cast<int64_t>(kernel) * kernel,
           static_cast<int64_t>(out_h) * out_w}};
}

PD_BUILD_OP(subtraction2)
    .Inputs({"X1", "X2"})
    .Outputs({"Out"})
    .Attrs({"kernel: int", "stride: int", "dilation: int", "out_h: int", "out_w: int"})
    .SetKernelFn(PD_KERNEL(Subtraction2Forward))
    .SetInferShapeFn(PD_INFER_SHAPE(Subtraction2Shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(FirstInputType));

PD_BUILD_GRAD_OP(subtraction2)
    .Inputs({"X1", "X2", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X1"), paddle::Grad("X2")})
    .Attrs({"kernel: int", "stride: int", "dilation: int", "out_h: int", "out_w: int"})
    .SetKernelFn(PD_KERNEL(Subtraction2Backward));

// window_softmax: the softmax over axis 2 of [N, C, k*k, L]
std::vector<paddle::Tensor> WindowSoftmaxForward(const paddle::Tensor& x_in) {
  const auto x = x_in.contiguous();
  PD_CHECK(x.is_cpu() && x.shape().size() == 4, "window_softmax takes a CPU [N, C, k*k, L]");
  auto y = paddle::empty_like(x);
  PD_DISPATCH_FLOATING_TYPES(x.type(), "WindowSoftmaxForward", ([&] {
    softmax<data_t>(x.data<data_t>(), y.data<data_t>(), x.shape()[0] * x.shape()[1],
                    x.shape()[2], x.shape()[3]);
  }));
  return {y};
}

std::vector<paddle::Tensor> WindowSoftmaxBackward(const paddle::Tensor& y_in,
                                                  const paddle::Tensor& gy_in) {
  const auto y = y_in.contiguous(), gy = gy_in.contiguous();
  auto gx = paddle::empty_like(y);
  PD_DISPATCH_FLOATING_TYPES(y.type(), "WindowSoftmaxBackward", ([&] {
    softmax_grad<data_t>(y.data<data_t>(), gy.data<data_t>(), gx.data<data_t>(),
                         y.shape()[0] * y.shape()[1], y.shape()[2], y.shape()[3]);
  }));
  return {gx};
}

PD_BUILD_OP(window_softmax)
    .Inputs({"X"})
    .Outputs({"Y"})
    .SetKernelFn(PD_KERNEL(WindowSoftmaxForward));

PD_BUILD_GRAD_OP(window_softmax)
    .Inputs({"Y", paddle::Grad("Y")})
    .Outputs({paddle::Grad("X")})
    .SetKernelFn(PD_KERNEL(WindowSoftmaxBackward));
