#include "worker/model/rotary.h"

#include <cmath>

namespace qshard {

RotaryEmbedding::RotaryEmbedding(int64_t head_dim, double theta) : head_dim_(head_dim) {
  const float base = static_cast<float>(theta);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    inv_freq_.push_back(1.0f / power);
  }
}

void RotaryEmbedding::Apply(Tensor& x, int64_t heads, int64_t batch, int64_t seq, int64_t first_position) const {
  const int64_t half = head_dim_ / 2;
  std::vector<float> cos(half), sin(half);
  for (int64_t t = 0; t < seq; ++t) {
    const float position = static_cast<float>(first_position + t);
    for (int64_t i = 0; i < half; ++i) {
      const double angle = position * inv_freq_[i];  // the float32 product, as HF computes it
      cos[i] = static_cast<float>(std::cos(angle));
      sin[i] = static_cast<float>(std::sin(angle));
    }
    for (int64_t b = 0; b < batch; ++b) {
      float* row = x.row(b * seq + t);
      for (int64_t h = 0; h < heads; ++h) {
        float* lo = row + h * head_dim_;
        float* hi = lo + half;
        for (int64_t i = 0; i < half; ++i) {
          const float a = lo[i];
          const float c = hi[i];
          lo[i] = a * cos[i] - c * sin[i];
          hi[i] = c * cos[i] + a * sin[i];
        }
      }
    }
  }
}

}  // namespace qshard
