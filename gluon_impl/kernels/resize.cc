// Bilinear up-sampling with align_corners=True of x [N, C, H, W] to the height and width of
// like [N', C', H', W'] (Residual Attention's soft-mask branch, Sec. 3.3), as one MXNet
// operator for the CPU, float32 and float64, forward and gradient, loaded with
// mx.library.load (lib_api.h): the values of the original's
// contrib.BilinearResize2D(x, like, mode='like'), with its CPU kernel's float32 source
// positions p = i * float32(H - 1) / float32(H' - 1) and weights p - floor(p), and its
// grouping, y[i, j] = a_i (b_j x[l_i, l_j] + b'_j x[l_i, h_j]) + a'_i (b_j x[h_i, l_j] + ...).
// Each (n, c) plane is interpolated along W first, then along H, by one thread of MXNet's
// OpenMP runtime; the gradient gathers per plane in the same two steps where MXNet's kernel
// is serial and scatters. like passes only its shape: its gradient is zero.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "library.h"

namespace {

// The two source indices and weights of each of the `out` positions along an axis of `in`.
template <typename T>
struct Taps {
  std::vector<int64_t> low, high;
  std::vector<T> w_low, w_high;
  Taps(int64_t in, int64_t out) : low(out), high(out), w_low(out), w_high(out) {
    const float scale =
        out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
    for (int64_t i = 0; i < out; ++i) {
      const float position = scale * static_cast<float>(i);
      low[i] = static_cast<int64_t>(position);
      high[i] = low[i] + 1 < in ? low[i] + 1 : in - 1;
      w_high[i] = static_cast<T>(position - static_cast<float>(low[i]));
      w_low[i] = 1 - w_high[i];
    }
  }
};

template <typename T>
void resize(const T* x, T* y, int64_t planes, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  const Taps<T> rows(h, oh), cols(w, ow);
#pragma omp parallel
  {
    std::vector<T> across(h * ow);  // the plane interpolated along W
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * h * w;
      T* yp = y + p * oh * ow;
      for (int64_t r = 0; r < h; ++r)
        for (int64_t j = 0; j < ow; ++j)
          across[r * ow + j] = cols.w_low[j] * xp[r * w + cols.low[j]] +
                               cols.w_high[j] * xp[r * w + cols.high[j]];
      for (int64_t i = 0; i < oh; ++i) {
        const T a = rows.w_low[i], b = rows.w_high[i];
        const T* lo = across.data() + rows.low[i] * ow;
        const T* hi = across.data() + rows.high[i] * ow;
#pragma omp simd
        for (int64_t j = 0; j < ow; ++j) yp[i * ow + j] = a * lo[j] + b * hi[j];
      }
    }
  }
}

template <typename T>
void resize_grad(const T* gy, T* gx, int64_t planes, int64_t h, int64_t w, int64_t oh,
                 int64_t ow) {
  const Taps<T> rows(h, oh), cols(w, ow);
#pragma omp parallel
  {
    std::vector<T> down(h * ow);  // the gradient summed along H, before W
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const T* gp = gy + p * oh * ow;
      T* xp = gx + p * h * w;
      std::fill(down.begin(), down.end(), T(0));
      for (int64_t i = 0; i < oh; ++i) {
        const T a = rows.w_low[i], b = rows.w_high[i];
        T* lo = down.data() + rows.low[i] * ow;
        T* hi = down.data() + rows.high[i] * ow;
#pragma omp simd
        for (int64_t j = 0; j < ow; ++j) lo[j] += a * gp[i * ow + j];
#pragma omp simd
        for (int64_t j = 0; j < ow; ++j) hi[j] += b * gp[i * ow + j];
      }
      std::fill(xp, xp + h * w, T(0));
      for (int64_t r = 0; r < h; ++r)
        for (int64_t j = 0; j < ow; ++j) {
          xp[r * w + cols.low[j]] += cols.w_low[j] * down[r * ow + j];
          xp[r * w + cols.high[j]] += cols.w_high[j] * down[r * ow + j];
        }
    }
  }
}

// inputs: x, like; outputs: y.
MXReturnValue forward(const Attrs&, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource&) {
  MXTensor &x = inputs->at(0), &y = outputs->at(0);
  const int64_t planes = x.shape[0] * x.shape[1];
  if (x.dtype == kFloat64)
    resize(x.data<double>(), y.data<double>(), planes, x.shape[2], x.shape[3], y.shape[2],
           y.shape[3]);
  else
    resize(x.data<float>(), y.data<float>(), planes, x.shape[2], x.shape[3], y.shape[2],
           y.shape[3]);
  return MX_SUCCESS;
}

// inputs: dy, x, like, y; outputs: dx, dlike.
MXReturnValue backward(const Attrs&, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource&) {
  MXTensor &gy = inputs->at(0), &gx = outputs->at(0), &glike = outputs->at(1);
  const int64_t planes = gx.shape[0] * gx.shape[1];
  if (gx.dtype == kFloat64) {
    resize_grad(gy.data<double>(), gx.data<double>(), planes, gx.shape[2], gx.shape[3],
                gy.shape[2], gy.shape[3]);
    std::fill(glike.data<double>(), glike.data<double>() + glike.size(), 0.0);
  } else {
    resize_grad(gy.data<float>(), gx.data<float>(), planes, gx.shape[2], gx.shape[3],
                gy.shape[2], gy.shape[3]);
    std::fill(glike.data<float>(), glike.data<float>() + glike.size(), 0.0f);
  }
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const Attrs&, std::vector<std::vector<unsigned int>>* in,
                          std::vector<std::vector<unsigned int>>* out) {
  const auto &x = in->at(0), &like = in->at(1);
  if (x.size() != 4 || like.size() != 4) {
    MX_ERROR_MSG << "bilinear_resize_like takes [N, C, H, W] x and like";
    return MX_FAIL;
  }
  out->at(0) = {x[0], x[1], like[2], like[3]};
  return MX_SUCCESS;
}

}  // namespace

OPERATOR(bilinear_resize_like, 2)
