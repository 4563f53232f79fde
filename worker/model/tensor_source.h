// Where a model's tensors come from, by Hugging Face name, converted to float32. The forward
// pass reads weights only through this seam, so a checkpoint on disk, tensors held in memory
// or quantized tensors dequantized on the fly all feed the same model code.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/checkpoint.h"
#include "core/tensor.h"
#include "worker/model/layer_weights.h"

namespace qshard {

class TensorSource {
 public:
  virtual ~TensorSource();
  virtual bool Has(const std::string& name) const = 0;
  virtual absl::StatusOr<Tensor> Read(const std::string& name) const = 0;
  // A kernel computing the linear whose weight is `weight_name` from a stored form other than a
  // float tensor, or null when the weight should be Read as a tensor (the default).
  virtual absl::StatusOr<std::shared_ptr<const LinearKernel>> ReadLinearKernel(const std::string& weight_name) const {
    return std::shared_ptr<const LinearKernel>();
  }
};

// The tensors of a Hugging Face checkpoint directory.
class CheckpointTensorSource : public TensorSource {
 public:
  explicit CheckpointTensorSource(std::shared_ptr<const Checkpoint> checkpoint)
      : checkpoint_(std::move(checkpoint)) {}
  // Opens the checkpoint in `dir`.
  static absl::StatusOr<std::shared_ptr<CheckpointTensorSource>> Open(const std::string& dir,
                                                                      Env* env = Env::Default());

  const Checkpoint& checkpoint() const { return *checkpoint_; }
  bool Has(const std::string& name) const override { return checkpoint_->Has(name); }
  absl::StatusOr<Tensor> Read(const std::string& name) const override { return checkpoint_->ReadFloat(name); }

 private:
  std::shared_ptr<const Checkpoint> checkpoint_;
};

// Tensors held in memory, optionally in front of another source: a name set here shadows the
// fallback's tensor of the same name (tests, and swapping in rewritten weights).
class MemoryTensorSource : public TensorSource {
 public:
  explicit MemoryTensorSource(std::shared_ptr<const TensorSource> fallback = nullptr)
      : fallback_(std::move(fallback)) {}

  void Set(const std::string& name, Tensor tensor) { tensors_[name] = std::move(tensor); }
  bool Has(const std::string& name) const override;
  absl::StatusOr<Tensor> Read(const std::string& name) const override;

 private:
  std::shared_ptr<const TensorSource> fallback_;
  std::map<std::string, Tensor> tensors_;
};

}  // namespace qshard
