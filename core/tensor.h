// A dense, row-major, owning float32 tensor: the one in-memory type the forward pass,
// calibration and solvers exchange. Storage dtypes (fp16, bf16, packed ints) live only in
// files and kernels; everything computed on the CPU path is float32 (statistics: float64).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/large_buffers.h"
namespace qshard {

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape)
      : shape_(std::move(shape)), data_(ZeroedVector<float>(NumElements(shape_))) {}
  Tensor(std::vector<int64_t> shape, std::vector<float> data)
      : shape_(std::move(shape)), data_(std::move(data)) {}
  Tensor(std::initializer_list<int64_t> shape) : Tensor(std::vector<int64_t>(shape)) {}

  static int64_t NumElements(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }

  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i < 0 ? shape_.size() + i : i]; }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }
  // Rows and columns of the tensor seen as a matrix (all leading dims folded into rows).
  int64_t rows() const { return shape_.empty() ? 1 : size() / shape_.back(); }
  int64_t cols() const { return shape_.empty() ? 1 : shape_.back(); }

  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float* row(int64_t r) { return data_.data() + r * cols(); }
  const float* row(int64_t r) const { return data_.data() + r * cols(); }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }
  float& at(int64_t r, int64_t c) { return data_[r * cols() + c]; }
  float at(int64_t r, int64_t c) const { return data_[r * cols() + c]; }
  std::vector<float>& values() { return data_; }
  const std::vector<float>& values() const { return data_; }

  // Changes the shape without touching the data; the element count must not change.
  void Reshape(std::vector<int64_t> shape) { shape_ = std::move(shape); }
  std::string ShapeString() const {
    std::string s = "[";
    for (size_t i = 0; i < shape_.size(); ++i) {
      if (i > 0) s += ',';
      s += std::to_string(shape_[i]);
    }
    return s + "]";
  }

 private:
  std::vector<int64_t> shape_;
  std::vector<float> data_;
};

}  // namespace qshard
