#include "worker/device/device_support.h"

#include <string_view>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/layout/gptq_packed.h"
#include "worker/methods/method_registry.h"

namespace qshard {
namespace {

// What a CUDA worker does with each registered method. Its calibration (when the registry says
// it has one) runs on the device; a method without a row is refused.
struct DeviceRule {
  std::string_view method;
  bool solves_on_device = false;  // GPTQ's solver on the device (kernels/cuda/gptq_solve_spec.h)
  std::string_view because;       // why the solves stay on the CPU
  bool rounding_on_device = false;  // aespa's AdaRound on the device (kernels/cuda/adaround_device.h)
  bool gptq_solves_on_device = false;  // the method's inner GPTQ solves on the device's GPTQ solver
};

constexpr DeviceRule kRules[] = {
    {"gptq", true, ""},
    // The device GPTQ solver takes the searched grids and ζ (gptq_solve_device.h); the search is the CPU's.
    {"zfold", false, "Z-Fold's ζ search and its folds have no device code", false, true},
    {"rtn", false, "RTN needs no calibration: nothing for the device to do"},
    {"finequant", false, "FineQuant needs no calibration: nothing for the device to do"},
    // The attention statistics are computed by the device forward pass (worker/cuda/cuda_forward.cc);
    // AdaRound, the bulk of the solve (docs/cuda.md, "aespa's attention statistics on the device"),
    // runs on the device, and so do its GPTQ starting points (per-head v_proj Hessians and the
    // unrounded values included); the ζ search is cheap beside them.
    {"aespa", false, "aespa's ζ search has no device code", true, true},
    // Its calibration is Σ x xᵀ with the per-channel maxima, which the device sums carry down.
    {"flattenquant", false,
     "FlattenQuant's channel split, its activation scales and its GPTQ solves on the flattened weights have no "
     "device code"},
};

const DeviceRule* RuleOf(std::string_view method) {
  for (const DeviceRule& rule : kRules)
    if (rule.method == method) return &rule;
  return nullptr;
}

}  // namespace

absl::StatusOr<DevicePlan> PlanOnDevice(const MethodOptions& method, const Device& device) {
  QSHARD_ASSIGN_OR_RETURN(const MethodRegistration* registration, FindMethod(method.method));
  DevicePlan plan;
  const bool on_device = device.kind != Device::Kind::kCpu;
  const DevicePlan::Place calibration_place = on_device ? DevicePlan::Place::kDevice : DevicePlan::Place::kCpu;
  plan.calibration = registration->needs.input_stats ? calibration_place : DevicePlan::Place::kNone;
  const bool rounds = method.method == "aespa" && method.aespa_adaround_iters > 0;
  if (rounds) plan.rounding = DevicePlan::Place::kCpu;
  if (!on_device) return plan;

  const std::string where = absl::StrCat("--device ", DeviceName(device), ": method ", method.method);
  const DeviceRule* rule = RuleOf(method.method);
  if (rule == nullptr)
    return absl::UnimplementedError(absl::StrCat(where, " has no plan for a CUDA device "
                                                        "(worker/device/device_support.cc); use --device cpu"));
  plan.cpu_because = std::string(rule->because);
  if (rounds && rule->rounding_on_device) plan.rounding = DevicePlan::Place::kDevice;
  // --mse changes nothing here: the device solver fits its grids with the same search.
  if (rule->solves_on_device) plan.solves = DevicePlan::Place::kDevice;
  if (rule->gptq_solves_on_device) plan.gptq_solves = DevicePlan::Place::kDevice;
  return plan;
}

absl::Status CheckValidationRunsOnDevice(const MethodOptions& method, const Device& device, ValidationAt at) {
  if (device.kind == Device::Kind::kCpu) return absl::OkStatus();
  const bool on_worker = at == ValidationAt::kWorker;
  const std::string where = absl::StrCat(on_worker ? "--validate-on worker: the workers' device " : "--validate-device ",
                                         DeviceName(device), ": ");
  // On a worker, --validate-device cpu would ask for CPU workers, which the job does not have.
  const std::string instead = on_worker ? "; validate on the coordinator (--validate-on coordinator)"
                                        : "; validate with --validate-device cpu";
  if (method.method == "flattenquant")
    return absl::FailedPreconditionError(
        absl::StrCat(where, "no CUDA kernel runs FlattenQuant's split columns", instead));
  if (!layout::IsCudaKernelGptqBits(method.spec.bits))
    return absl::FailedPreconditionError(absl::StrCat(where, "the device's exact kernels read 4- and 8-bit GPTQ "
                                                             "linears and this job writes ",
                                                      method.spec.bits, "-bit ones", instead));
  return absl::OkStatus();
}

std::string PlaceName(DevicePlan::Place place, const Device& device) {
  switch (place) {
    case DevicePlan::Place::kNone: return "none";
    case DevicePlan::Place::kCpu: return "cpu";
    case DevicePlan::Place::kDevice: break;
  }
  return device.kind == Device::Kind::kCpu ? "cpu" : "cuda";
}

nlohmann::json DeviceRolesJson(const DevicePlan& plan, const Device& device) {
  nlohmann::json roles = {{"calibration", PlaceName(plan.calibration, device)},
                          {"solves", PlaceName(plan.solves, device)}};
  if (plan.rounding != DevicePlan::Place::kNone) roles["rounding"] = PlaceName(plan.rounding, device);
  if (plan.gptq_solves != DevicePlan::Place::kNone) roles["gptq_solves"] = PlaceName(plan.gptq_solves, device);
  return roles;
}

std::string DescribePlan(const DevicePlan& plan) {
  const auto where = [](DevicePlan::Place place) {
    return place == DevicePlan::Place::kDevice ? "the device" : "the CPU";
  };
  std::string line = plan.calibration == DevicePlan::Place::kNone
                         ? "no calibration"
                         : absl::StrCat("calibration (forward passes, statistics) on ", where(plan.calibration));
  absl::StrAppend(&line, ", solves on ", where(plan.solves));
  if (!plan.cpu_because.empty()) absl::StrAppend(&line, " (", plan.cpu_because, ")");
  const bool gptq_apart = plan.gptq_solves != DevicePlan::Place::kNone && plan.gptq_solves != plan.solves;
  const bool rounding_apart = plan.rounding != DevicePlan::Place::kNone && plan.rounding != plan.solves;
  if (gptq_apart && rounding_apart && plan.rounding == plan.gptq_solves) {
    absl::StrAppend(&line, " but GPTQ's and AdaRound on ", where(plan.rounding));
    return line;
  }
  if (gptq_apart) absl::StrAppend(&line, " but GPTQ's on ", where(plan.gptq_solves));
  if (rounding_apart) absl::StrAppend(&line, gptq_apart ? " and AdaRound on " : " but AdaRound on ", where(plan.rounding));
  return line;
}

}  // namespace qshard
