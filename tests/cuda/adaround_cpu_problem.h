// A check case of the device's AdaRound (kernels/cuda/adaround_reference.h) as the CPU's
// RoundingProblem, for the tests of the reference against the CPU and of the CUDA learner's glue.
#pragma once

#include <vector>

#include "kernels/cuda/adaround_reference.h"
#include "worker/methods/adaround_rounding.h"

namespace qshard::testing {

// The case as aespa's solver hands it to the learner.
struct CpuProblem {
  Tensor weight, unrounded;
  QuantizedWeight initial;
  RoundingProblem problem;

  explicit CpuProblem(const gpu::AdaRoundCaseData& d) {
    const int64_t rows = d.shape.rows, cols = d.shape.cols;
    weight = Tensor({rows, cols}, d.weight);
    unrounded = Tensor({rows, cols}, d.unrounded);
    initial.bits = d.shape.bits;
    initial.rows = rows;
    initial.cols = cols;
    initial.codes = d.initial_codes;
    initial.scales = Tensor({d.groups, rows}, d.scales);
    initial.zeros = d.zeros;
    initial.g_idx = d.g_idx;
    problem.weight = &weight;
    problem.unrounded = &unrounded;
    problem.initial = &initial;
    for (const std::vector<double>& h : d.hessians) problem.hessians.push_back(&h);
    for (const std::vector<double>& g : d.weightings) problem.output_weightings.push_back(&g);
  }
};

inline AdaRoundOptions CpuOptions(const gpu::AdaRoundDeviceOptions& o) {
  AdaRoundOptions options;
  options.iters = o.iters;
  options.learning_rate = o.learning_rate;
  options.lambda = o.lambda;
  options.warmup = o.warmup;
  options.beta_start = o.beta_start;
  options.beta_end = o.beta_end;
  return options;
}

}  // namespace qshard::testing
