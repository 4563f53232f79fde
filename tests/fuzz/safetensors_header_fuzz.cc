// libFuzzer target for the safetensors header parser: arbitrary bytes must yield a header or an
// error, never a crash, a sanitizer report or a header that breaks the parser's own promises.
// Each input is tried twice: as a whole file, and as header JSON framed with a correct length
// prefix (the last 4 input bytes giving the data section's size), so the fuzzer spends its time
// in the JSON validation rather than on guessing 8-byte lengths.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/safetensors.h"

namespace {

// What a successful parse guarantees its callers (SafetensorsFile hands out spans on it).
void CheckInvariants(const qshard::SafetensorsHeader& header, uint64_t file_size) {
  uint64_t expected_begin = 0;
  for (const qshard::TensorInfo& t : header.tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.num_elements()) * qshard::DTypeSize(t.dtype);
    if (t.begin != expected_begin || t.end - t.begin != bytes) __builtin_trap();
    expected_begin = t.end;
  }
  if (header.data_offset + expected_begin != file_size) __builtin_trap();
}

void ParseAndCheck(const uint8_t* data, size_t size, uint64_t file_size) {
  const auto header = qshard::ParseSafetensorsHeader(absl::MakeConstSpan(data, size), file_size);
  if (header.ok()) CheckInvariants(*header, file_size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ParseAndCheck(data, size, size);

  if (size < 4) return 0;
  const size_t header_size = size - 4;
  uint32_t data_size;
  std::memcpy(&data_size, data + header_size, 4);
  std::vector<uint8_t> framed(8 + header_size);
  for (int i = 0; i < 8; ++i) framed[i] = static_cast<uint8_t>(uint64_t{header_size} >> (8 * i));
  std::memcpy(framed.data() + 8, data, header_size);
  // The parser never reads the data section, so only its size needs to exist.
  ParseAndCheck(framed.data(), framed.size(), framed.size() + data_size);
  return 0;
}
