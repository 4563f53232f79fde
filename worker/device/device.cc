#include "worker/device/device.h"

#include <cstdint>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace qshard {

absl::StatusOr<Device> ParseDevice(std::string_view text, std::string_view flag) {
  const auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(flag), ": '", std::string(text), "' ", std::string(why),
                     " (use cpu, cuda or cuda:N with N a device ordinal ≥ 0)"));
  };
  if (text == "cpu") return Device{};
  if (text == "cuda") return Device{Device::Kind::kCuda, 0};
  constexpr std::string_view kCudaPrefix = "cuda:";
  if (text.substr(0, kCudaPrefix.size()) != kCudaPrefix) return invalid("is not a device");
  // Decimal digits only: no sign, no spaces, no hex; at most an int's worth.
  const std::string_view ordinal = text.substr(kCudaPrefix.size());
  int64_t index = 0;
  for (const char c : ordinal) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) || (index = index * 10 + (c - '0')) > INT32_MAX)
      return invalid("does not end in a device ordinal");
  }
  if (ordinal.empty()) return invalid("does not end in a device ordinal");
  return Device{Device::Kind::kCuda, static_cast<int>(index)};
}

absl::Status ApplyDeviceMemory(uint64_t bytes, std::initializer_list<Device*> devices) {
  if (bytes == 0) return absl::OkStatus();
  bool cuda = false;
  for (Device* device : devices) {
    if (device->kind != Device::Kind::kCuda) continue;
    device->memory_bytes = bytes;
    cuda = true;
  }
  if (!cuda)
    return absl::InvalidArgumentError(absl::StrCat("--device-memory ", bytes,
                                                   ": caps a CUDA device's memory (--device cuda[:N]); this command "
                                                   "opens none, the CPU has no device memory to cap"));
  return absl::OkStatus();
}

std::string DeviceName(const Device& device) {
  return device.kind == Device::Kind::kCpu ? "cpu" : absl::StrCat("cuda:", device.index);
}

}  // namespace qshard
