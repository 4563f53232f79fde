// A whole decoder model on a device, for evaluation and greedy decoding (`qshard eval|generate
// --device cuda`; docs/cuda.md, "Evaluation and generation on the device"): every layer's weights
// held there, each linear served by the device kernel that fits it, and one call taking a
// window's embedded hidden states to next-token logits (final norm and head on the device too),
// which come back to the host for the metrics; decoding keeps a key/value cache there. The CUDA
// implementation is worker/cuda/cuda_model.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "worker/model/layer_weights.h"
#include "worker/quant/gptq_pack.h"

namespace qshard {

// How a device model serves the packed (GPTQ) linears it is handed; float linears always run as
// float32 cuBLAS products.
enum class PackedLinearKernels {
  kWeightOnly,       // fp16 activations × packed 4/8-bit weights (w4a16, w8a16)
  kInt8Activations,  // int8 activations per token × int8 weights per channel (W8A8, cuBLASLt)
};

// One layer as the host hands it over: norms and biases, and each linear either as a float
// weight in `weights` or, when named in `packed`, as the checkpoint's packed tensors (its entry
// in `weights` then carries only the bias).
struct DeviceModelLayer {
  DecoderLayerWeights weights;
  std::map<std::string, GptqLinearTensors> packed;
};

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  // Uploads layer `layer` (0, 1, ... in order). Refuses, naming the linear, a packed linear that
  // no device kernel serves in this model's PackedLinearKernels (never a silent CPU fallback).
  virtual absl::Status LoadLayer(int layer, const DeviceModelLayer& weights) = 0;
  // One window: `hidden` [tokens, hidden] (embedded on the host, positions 0..tokens−1) through
  // every layer, the final norm and the head; the logits [rows, vocab] of its first `rows`
  // positions, on the host.
  virtual absl::StatusOr<Tensor> Logits(const Tensor& hidden, int64_t rows) = 0;
  // Decoding with a key/value cache on the device: `hidden` [tokens, hidden] of the tokens after
  // those run since the last ResetCache (embedded on the host at those positions), through every
  // layer, their keys and values kept; the logits [1, vocab] of the last. Out of range past the
  // model's max positions.
  virtual absl::StatusOr<Tensor> NextLogits(const Tensor& hidden) = 0;
  // Forgets the cached positions: the next NextLogits starts a sequence at position 0.
  virtual void ResetCache() = 0;
  // Which kernel serves which linears, e.g. "q_proj,k_proj,...: w4a16-repacked (prefill >64
  // tokens: dequantize + fp16 cuBLAS)", for the log.
  virtual std::string Describe() const = 0;
};

}  // namespace qshard
