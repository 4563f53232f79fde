// What a job runs where on a worker's device: the one rule, decided from the method and its
// options before any work (`qshard quantize` before the model is opened, a `qshard worker` when a
// job starts, the runner when it meets its workers), so that a job never falls back to the CPU
// halfway. The worker follows the plan (LocalWorker::StartJob) and the report records it
// (quant_report.json's `device_roles`); docs/cuda.md, "What runs where", is its table.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/device/device.h"
#include "worker/methods/layer_method.h"

namespace qshard {

struct DevicePlan {
  enum class Place { kNone, kCpu, kDevice };
  // The calibration forward passes and their statistics (Σ x xᵀ, per-channel maxima); kNone for
  // a method without calibration (RTN, FineQuant): no forward pass, no device memory.
  Place calibration = Place::kNone;
  // The solves (and, for Z-Fold, the ζ search and the folds).
  Place solves = Place::kCpu;
  // Of the solves, aespa's AdaRound, which can run apart from the rest: kNone for a method
  // without it (every method but aespa, and aespa without AdaRound iterations).
  Place rounding = Place::kNone;
  // Of the solves, the GPTQ solves inside Z-Fold (on its searched grids) and aespa (its
  // starting points): kDevice where they run on the device while the rest of the solves stays
  // on the CPU; kNone: they run wherever `solves` does.
  Place gptq_solves = Place::kNone;
  // On a CUDA device: why what runs on the CPU runs there; empty when nothing does, or on the CPU.
  std::string cpu_because;
};

// The plan for `method` on `device`. On the CPU everything runs there. On CUDA: GPTQ runs
// whole on the device (with --mse too); Z-Fold, aespa (its attention statistics included) and
// FlattenQuant (its per-channel maxima included) calibrate on the device and solve on the CPU,
// but for Z-Fold's and aespa's GPTQ solves and aespa's AdaRound, which run on the device; RTN and FineQuant have nothing for the device and run on the CPU. A method
// without a rule is UNIMPLEMENTED, saying what to use instead.
absl::StatusOr<DevicePlan> PlanOnDevice(const MethodOptions& method, const Device& device);

// Where a validation runs, for a refusal's wording: on the runner's --validate-device, or on a
// worker's own device (--validate-on worker), where the way out is the coordinator's CPU.
enum class ValidationAt { kRunner, kWorker };

// Whether a job with `method` can validate its checkpoint on `device` (--validate-device), checked
// before the job starts: the device's exact kernels read 4- and 8-bit GPTQ linears, and no kernel
// runs FlattenQuant's split columns (docs/cuda.md, "Which kernel serves a linear"). On the CPU
// every checkpoint validates. FAILED_PRECONDITION saying to validate on the CPU otherwise.
absl::Status CheckValidationRunsOnDevice(const MethodOptions& method, const Device& device,
                                         ValidationAt at = ValidationAt::kRunner);

// "none", "cpu" or "cuda": where `place` is on a worker of `device`'s kind (the report's words).
std::string PlaceName(DevicePlan::Place place, const Device& device);

// quant_report.json's `device_roles`: `calibration` and `solves` by PlaceName, and `rounding` and
// `gptq_solves` where they run apart from the rest of a solve (aespa's AdaRound; Z-Fold's and
// aespa's GPTQ solves).
nlohmann::json DeviceRolesJson(const DevicePlan& plan, const Device& device);

// One line for the log: "calibration (forward passes, statistics) on the device, solves on the
// CPU (Z-Fold's ζ search ...) but GPTQ's on the device"; aespa's: "... but GPTQ's and AdaRound on the device".
std::string DescribePlan(const DevicePlan& plan);

}  // namespace qshard
