#include "core/dtype.h"

#include <cmath>
#include <cstring>

#include "core/vector_clones.h"

namespace qshard {
namespace {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  int size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1}, {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

const DTypeEntry& Entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  return kDTypes[0];  // unreachable: every enumerator has an entry
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Branch-free, so that a loop over a tensor vectorizes: subnormals (and zero) are their mantissa
// times 2^-24, exact in float32; normals and inf/NaN move their exponent to float32's bias.
uint32_t HalfBitsToFloatBits(uint32_t h) {
  const uint32_t magnitude = h & 0x7fff;
  const float subnormal = static_cast<float>(static_cast<int32_t>(magnitude)) * 0x1p-24f;
  uint32_t rebiased = (magnitude << 13) + (112u << 23);
  rebiased += magnitude >= 0x7c00 ? (112u << 23) : 0u;  // inf / nan: exponent 31 → 255
  return ((h & 0x8000) << 16) | (magnitude < 0x400 ? Bits(subnormal) : rebiased);
}

// fp16 checkpoints convert every weight on load, on one thread: vectorized (the clones), this
// runs several times faster than the per-element branches did.
QSHARD_VECTOR_CLONES void HalvesToFloats(const uint8_t* bytes, int64_t count, float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    uint16_t v;
    std::memcpy(&v, bytes + 2 * i, 2);
    dst[i] = FromBits(HalfBitsToFloatBits(v));
  }
}

template <typename T>
void ConvertIntegers(const uint8_t* bytes, int64_t count, float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    T v;
    std::memcpy(&v, bytes + sizeof(T) * i, sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}

}  // namespace

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& e : kDTypes)
    if (e.name == name) return e.dtype;
  return std::nullopt;
}
std::string_view DTypeName(DType dtype) { return Entry(dtype).name; }
int DTypeSize(DType dtype) { return Entry(dtype).size; }
bool IsFloating(DType dtype) {
  return dtype == DType::kF64 || dtype == DType::kF32 || dtype == DType::kF16 ||
         dtype == DType::kBF16;
}

float HalfToFloat(uint16_t h) { return FromBits(HalfBitsToFloatBits(h)); }

uint16_t FloatToHalf(float f) {
  const uint32_t x = Bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);  // inf / nan
  if (abs >= 0x477ff000) return sign | 0x7c00;  // rounds beyond 65504: overflow to inf
  if (abs < 0x38800000) {
    // Subnormal half (or zero): value / 2^-24, rounded half to even by the FPU.
    const float scaled = FromBits(abs) * 16777216.0f;  // exact: power-of-two scaling
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Normal: drop 13 mantissa bits with round-half-to-even; a carry into the exponent is correct.
  const uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);
  return sign | static_cast<uint16_t>((rounded - 0x38000000) >> 13);
}

float BFloat16ToFloat(uint16_t b) { return FromBits(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBFloat16(float f) {
  const uint32_t x = Bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);  // nan
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

void ConvertToFloat(DType dtype, const void* src, int64_t count, float* dst) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kF64:
      for (int64_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, bytes + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case DType::kF16:
      return HalvesToFloats(bytes, count, dst);
    case DType::kBF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, bytes + 2 * i, 2);
        dst[i] = BFloat16ToFloat(v);
      }
      return;
    case DType::kI64:
      return ConvertIntegers<int64_t>(bytes, count, dst);
    case DType::kI32:
      return ConvertIntegers<int32_t>(bytes, count, dst);
    case DType::kI16:
      return ConvertIntegers<int16_t>(bytes, count, dst);
    case DType::kI8:
      return ConvertIntegers<int8_t>(bytes, count, dst);
    case DType::kU8:
    case DType::kBool:
      return ConvertIntegers<uint8_t>(bytes, count, dst);
  }
}

void ConvertFromFloat(DType dtype, const float* src, int64_t count, void* dst) {
  auto* bytes = static_cast<uint8_t*>(dst);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kF64:
      for (int64_t i = 0; i < count; ++i) {
        const double v = src[i];
        std::memcpy(bytes + 8 * i, &v, 8);
      }
      return;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < count; ++i) {
        const uint16_t v = dtype == DType::kF16 ? FloatToHalf(src[i]) : FloatToBFloat16(src[i]);
        std::memcpy(bytes + 2 * i, &v, 2);
      }
      return;
    default:
      return;  // not encodable from floats (see header)
  }
}

}  // namespace qshard
