// Storage element types found in checkpoints (safetensors dtype strings) and the
// conversions of the floating ones to float32.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qshard {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

std::optional<DType> ParseDType(std::string_view name);  // "F32", "BF16", ...
std::string_view DTypeName(DType dtype);
int DTypeSize(DType dtype);
bool IsFloating(DType dtype);

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);  // round to nearest even, saturating to ±inf like IEEE
float BFloat16ToFloat(uint16_t b);
uint16_t FloatToBFloat16(float f);  // round to nearest even

// Converts `count` elements of any dtype to float32 (integers by value).
void ConvertToFloat(DType dtype, const void* src, int64_t count, float* dst);
// Encodes `count` float32 values as a floating dtype (F64, F32, F16, BF16), rounding to
// nearest even. Integer dtypes are not encodable from floats: the caller checks IsFloating.
void ConvertFromFloat(DType dtype, const float* src, int64_t count, void* dst);

}  // namespace qshard
