// Helpers shared by the fused Paddle operators of this folder.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fused {

// exp(z) for z <= 0 in float32, as a loop the compiler vectorizes (std::exp is a scalar call
// unless -ffast-math, which would change the whole process's floating point): z = n ln 2 + r
// with |r| <= ln(2) / 2, e^r by Cephes' expf polynomial (within 2 ulp), 2^n set in the
// exponent bits. Below -87, where e^z nears float32's smallest normal, it returns e^-87.
inline float exp_nonpositive(float z) {
  z = z < -87.0f ? -87.0f : z;
  const float n = (z * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (z - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float exp_nonpositive_of(float z) { return exp_nonpositive(z); }
inline double exp_nonpositive_of(double z) { return std::exp(z); }  // float64: exact to its ulp

}  // namespace fused
