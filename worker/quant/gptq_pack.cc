#include "worker/quant/gptq_pack.h"

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/status.h"
#include "kernels/layout/gptq_packed.h"
#include "worker/quant/quant_grid.h"

namespace qshard {
namespace {

std::vector<int32_t> ToSigned(const std::vector<uint32_t>& words) {
  return std::vector<int32_t>(words.begin(), words.end());  // modular, as C++20 defines it
}

absl::Status CheckSize(const char* field, size_t actual, int64_t expected) {
  if (static_cast<int64_t>(actual) == expected) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", actual, " values, expected ", expected));
}

}  // namespace

absl::Status CheckGptqLayout(int bits, int64_t in_features, int64_t out_features) {
  if (!layout::IsGptqBits(bits))
    return absl::InvalidArgumentError(
        absl::StrCat("bits: the GPTQ layout stores 2, 3, 4 or 8 bits, not ", bits));
  const int64_t unit = layout::GptqUnitCodes(bits);
  if (in_features <= 0 || in_features % unit != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "qweight: in_features = ", in_features, " is not a positive multiple of ", unit,
        ", which ", bits, "-bit values packed into 32-bit words along the input dimension need"));
  if (out_features <= 0 || out_features % unit != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "qzeros: out_features = ", out_features, " is not a positive multiple of ", unit,
        ", which ", bits, "-bit zero points packed into 32-bit words along the output dimension need"));
  return absl::OkStatus();
}

absl::StatusOr<GptqLinearTensors> PackGptq(const QuantizedWeight& weight) {
  QSHARD_RETURN_IF_ERROR(weight.Validate());
  if (!weight.column_scale.empty())
    return absl::FailedPreconditionError(
        "column_scale: Z-Fold multipliers must be folded into the producing layer before packing");
  const int bits = weight.bits;
  const int64_t in = weight.cols, out = weight.rows, groups = weight.groups();
  QSHARD_RETURN_IF_ERROR(CheckGptqLayout(bits, in, out));

  GptqLinearTensors packed;
  packed.bits = bits;
  packed.in_features = in;
  packed.out_features = out;
  packed.groups = groups;
  packed.g_idx = weight.g_idx;

  packed.scales.resize(groups * out);
  for (int64_t i = 0; i < groups * out; ++i) {
    packed.scales[i] = FloatToHalf(weight.scales[i]);
    if (HalfToFloat(packed.scales[i]) != weight.scales[i])
      return absl::InvalidArgumentError(absl::StrCat("scales[", i / out, ",", i % out, "] = ", weight.scales[i],
                                                     " is not an fp16 value (fit grids with fp16 scales)"));
  }

  const int64_t zero_words = layout::GptqQzerosCols(out, bits);
  std::vector<uint32_t> qzeros(groups * zero_words, 0);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t o = 0; o < out; ++o) {
      const int32_t zero = weight.zeros[g * out + o];
      if (zero < 1)
        return absl::InvalidArgumentError(absl::StrCat(
            "qzeros[", g, ",", o, "]: zero point 0 cannot be stored as zero − 1 in the GPTQ v1 layout "
            "(fit grids with nonzero_zero_point)"));
      layout::GptqWriteBits(qzeros.data() + g * zero_words, 1, o, bits,
                            static_cast<uint32_t>(zero - layout::kGptqZeroOffset));
    }
  }
  packed.qzeros = ToSigned(qzeros);

  std::vector<uint32_t> qweight(layout::GptqQweightRows(in, bits) * out, 0);
  for (int64_t o = 0; o < out; ++o) {
    const int32_t* codes = weight.codes.data() + o * in;
    for (int64_t i = 0; i < in; ++i)
      layout::GptqWriteBits(qweight.data() + o, out, i, bits, static_cast<uint32_t>(codes[i]));
  }
  packed.qweight = ToSigned(qweight);
  return packed;
}

absl::Status CheckGptqTensors(const GptqLinearTensors& tensors) {
  const int bits = tensors.bits;
  const int64_t in = tensors.in_features, out = tensors.out_features, groups = tensors.groups;
  QSHARD_RETURN_IF_ERROR(CheckGptqLayout(bits, in, out));
  if (groups < 1) return absl::InvalidArgumentError(absl::StrCat("scales: ", groups, " groups"));
  QSHARD_RETURN_IF_ERROR(CheckSize("qweight", tensors.qweight.size(), layout::GptqQweightRows(in, bits) * out));
  QSHARD_RETURN_IF_ERROR(CheckSize("qzeros", tensors.qzeros.size(), groups * layout::GptqQzerosCols(out, bits)));
  QSHARD_RETURN_IF_ERROR(CheckSize("scales", tensors.scales.size(), groups * out));
  QSHARD_RETURN_IF_ERROR(CheckSize("g_idx", tensors.g_idx.size(), in));
  return absl::OkStatus();
}

layout::GptqPackedView PackedView(const GptqLinearTensors& t) {
  return layout::GptqPackedView::Of(t.qweight.data(), t.qzeros.data(), t.scales.data(), t.g_idx.data(), t.in_features,
                                    t.out_features, t.groups, t.bits);
}

absl::StatusOr<QuantizedWeight> UnpackGptq(const GptqLinearTensors& tensors) {
  const int bits = tensors.bits;
  const int64_t in = tensors.in_features, out = tensors.out_features, groups = tensors.groups;
  QSHARD_RETURN_IF_ERROR(CheckGptqTensors(tensors));

  QuantizedWeight weight;
  weight.bits = bits;
  weight.rows = out;
  weight.cols = in;
  weight.g_idx = tensors.g_idx;

  weight.scales = Tensor({groups, out});
  for (int64_t i = 0; i < groups * out; ++i) weight.scales[i] = HalfToFloat(tensors.scales[i]);

  const layout::GptqPackedView view = PackedView(tensors);
  weight.zeros.resize(groups * out);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) weight.zeros[g * out + o] = view.Zero(g, o);

  weight.codes.resize(out * in);
  for (int64_t o = 0; o < out; ++o) {
    int32_t* codes = weight.codes.data() + o * in;
    for (int64_t i = 0; i < in; ++i) codes[i] = static_cast<int32_t>(view.Code(i, o));
  }
  QSHARD_RETURN_IF_ERROR(WithContext(weight.Validate(), "unpacked GPTQ tensors"));
  return weight;
}

}  // namespace qshard
