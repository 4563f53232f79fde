// The row-wise building blocks of a decoder layer on [tokens, features] float32 tensors:
// norms, linear layers (one BLAS GEMM over all tokens), activations and residual adds.
// Norm statistics are accumulated in float64; results are float32 like the HF models.
#pragma once

#include "core/tensor.h"
#include "core/thread_pool.h"
#include "worker/model/layer_weights.h"

namespace qshard {

// The norms and SwiGLU run their rows in chunks on `pool` when given one (a row's arithmetic is
// the same either way, so the bits are too): in small models they were the forward pass's
// largest single-threaded steps.

// x * rsqrt(mean(x²) + eps) * weight, per row (LLaMA RMSNorm).
Tensor RmsNorm(const Tensor& x, const Tensor& weight, double eps, ThreadPool* pool = nullptr);
// (x - mean) / sqrt(var + eps) * weight + bias, per row, biased variance (torch LayerNorm).
Tensor LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, ThreadPool* pool = nullptr);
// x [tokens, in] · weightᵀ + bias -> [tokens, out].
Tensor ApplyLinear(const Tensor& x, const Linear& linear);
// gate = silu(gate) * up, elementwise (SwiGLU).
void SiluMultiplyInPlace(Tensor& gate, const Tensor& up, ThreadPool* pool = nullptr);
void ReluInPlace(Tensor& x);
// acc += x, elementwise.
void AddInPlace(Tensor& acc, const Tensor& x);

}  // namespace qshard
