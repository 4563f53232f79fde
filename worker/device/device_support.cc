#include "worker/device/device_support.h"

#include "absl/strings/str_cat.h"

namespace qshard {

absl::Status CheckRunsOnDevice(const MethodOptions& method, const Device& device) {
  if (device.kind == Device::Kind::kCpu) return absl::OkStatus();
  const std::string where = absl::StrCat("--device ", DeviceName(device), ": ");
  // Z-Fold's column multipliers and searched grids, aespa's refined Hessians and AdaRound,
  // FlattenQuant's channel splitting, and RTN/FineQuant (no statistics to collect, nothing
  // solved on the device) have no device code yet.
  if (method.method != "gptq")
    return absl::UnimplementedError(absl::StrCat(where, "method ", method.method,
                                                 " does not run on a CUDA device yet (gptq does); use --device cpu"));
  return CheckGptqSpecRunsOnDevice(method.spec, device);
}

absl::Status CheckGptqSpecRunsOnDevice(const QuantSpec& spec, const Device& device) {
  if (device.kind == Device::Kind::kCpu || !spec.mse_clip) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat("--device ", DeviceName(device),
                                               ": --mse (the grids' MSE clipping search) is not implemented on a "
                                               "CUDA device"));
}

}  // namespace qshard
