// Opens a model directory for evaluation and generation on a device (`qshard eval|generate
// --device cuda`): the
// embeddings stay on the host (a window is embedded there), every layer goes to the device with
// its linears as `kernels` asks on that device (dequantize: float weights dequantized on the
// host; exact: the packed weights under the weight-only kernels; int8: under W8A8); Evaluate runs
// it through WindowLogits like the CPU model, Generate through IncrementalLogits.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tokenizer/tokenizer.h"
#include "worker/device/cuda_device.h"
#include "worker/eval/generate.h"
#include "worker/eval/window_logits.h"
#include "worker/export/gptq_tensor_source.h"

namespace qshard {

// The host's half of a model on a device: it embeds tokens on the host (positions included) and
// hands the hidden states to the device, for evaluation windows or for greedy decoding.
class DeviceLanguageModel final : public WindowLogits, public IncrementalLogits {
 public:
  DeviceLanguageModel(std::unique_ptr<DecoderModel> decoder, std::unique_ptr<DeviceModel> device)
      : decoder_(std::move(decoder)), device_(std::move(device)) {}
  const ModelConfig& config() const override { return decoder_->config(); }
  ThreadPool& pool() override { return decoder_->pool(); }
  absl::Status RunWindows(absl::Span<const int32_t> tokens, int64_t batch, int64_t seq) override;
  absl::StatusOr<Tensor> Logits(int64_t window) override;
  void Reset() override;
  absl::StatusOr<Tensor> Next(absl::Span<const int32_t> fresh) override;

 private:
  std::unique_ptr<DecoderModel> decoder_;
  std::unique_ptr<DeviceModel> device_;
  std::vector<int32_t> tokens_;  // the last RunWindows's
  int64_t seq_ = 0;
  int64_t positions_ = 0;  // decoded since Reset
};

struct DeviceLoadedModel {
  std::unique_ptr<DeviceLanguageModel> model;
  Tokenizer tokenizer;
  std::string kernels;  // which kernel serves which linears (DeviceModel::Describe)
};

// A FlattenQuant linear is refused by name unless `kernels` is kDequantize (no device kernel runs
// its split columns); so is any linear no device kernel serves (DeviceModel::LoadLayer).
absl::StatusOr<DeviceLoadedModel> LoadModelOnDevice(const std::string& dir, int threads, GptqLinearMode kernels,
                                                    CudaDevice& device);

}  // namespace qshard
