// The row-wise building blocks of a decoder layer on [tokens, features] float32 tensors:
// norms, linear layers (one BLAS GEMM over all tokens), activations and residual adds.
// Norm statistics are accumulated in float64; results are float32 like the HF models.
#pragma once

#include "core/tensor.h"
#include "worker/model/layer_weights.h"

namespace qshard {

// x * rsqrt(mean(x²) + eps) * weight, per row (LLaMA RMSNorm).
Tensor RmsNorm(const Tensor& x, const Tensor& weight, double eps);
// (x - mean) / sqrt(var + eps) * weight + bias, per row, biased variance (torch LayerNorm).
Tensor LayerNorm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
// x [tokens, in] · weightᵀ + bias -> [tokens, out].
Tensor ApplyLinear(const Tensor& x, const Linear& linear);
// gate = silu(gate) * up, elementwise (SwiGLU).
void SiluMultiplyInPlace(Tensor& gate, const Tensor& up);
void ReluInPlace(Tensor& x);
// acc += x, elementwise.
void AddInPlace(Tensor& acc, const Tensor& x);

}  // namespace qshard
