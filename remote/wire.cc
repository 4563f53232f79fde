#include "remote/wire.h"

#include <zlib.h>

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace qshard::wire {
namespace {

template <typename T>
std::string Bytes(const T* values, size_t count) {
  return std::string(reinterpret_cast<const char*>(values), count * sizeof(T));
}

// The values of a bytes field holding `count` little-endian T (hosts are little-endian x86-64).
template <typename T, typename Vector = std::vector<T>>
absl::StatusOr<Vector> Values(const std::string& bytes, size_t count, std::string_view what) {
  if (bytes.size() != count * sizeof(T))
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), ": ", bytes.size(), " bytes, expected ", count * sizeof(T)));
  Vector values(count);
  if (count > 0) std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

std::string CodeBytes(const std::vector<int32_t>& codes) {
  std::string bytes(codes.size(), '\0');
  for (size_t i = 0; i < codes.size(); ++i) bytes[i] = static_cast<char>(codes[i]);  // codes < 2^8
  return bytes;
}

std::vector<int32_t> CodesOf(const std::string& bytes) {
  std::vector<int32_t> codes(bytes.size());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(bytes[i]);
  return codes;
}

void ToProto(const LinearReport& report, v1::LinearResult& data) {
  data.set_name(report.name);
  data.set_relative_error(report.relative_error);
  data.set_seconds(report.seconds);
  data.set_damp_used(report.damp_used);
  data.set_damp_retries(report.damp_retries);
}

LinearReport ReportOf(const v1::LinearResult& r) {
  return {r.name(), r.relative_error(), r.seconds(), r.damp_used(), r.damp_retries()};
}

void ToProto(const HessianSum& sum, v1::HessianSumData& out, Sums sums) {
  out.set_dim(sum.dim);
  out.set_tokens(sum.tokens);
  if (sums == Sums::kIncluded) out.set_sum_f64(Bytes(sum.sum.data(), sum.sum.size()));
  out.set_abs_max_f32(Bytes(sum.abs_max.data(), sum.abs_max.size()));
}

absl::StatusOr<HessianSum> FromProto(const v1::HessianSumData& data, Sums sums) {
  if (data.dim() < 0 || data.tokens() < 0 || data.dim() > (int64_t{1} << 20))
    return absl::InvalidArgumentError("Hessian sum: bad size");
  HessianSum sum;
  sum.dim = data.dim();
  sum.tokens = data.tokens();
  if (sums == Sums::kIncluded) {
    QSHARD_ASSIGN_OR_RETURN(sum.sum, (Values<double, decltype(sum.sum)>(
                                         data.sum_f64(), static_cast<size_t>(sum.dim * sum.dim), "Hessian sum")));
  } else if (!data.sum_f64().empty()) {
    return absl::InvalidArgumentError("Hessian sum: a header carries no sums");
  }
  QSHARD_ASSIGN_OR_RETURN(sum.abs_max, Values<float>(data.abs_max_f32(), static_cast<size_t>(sum.dim), "channel max |x|"));
  return sum;
}

void ToProto(const std::vector<HessianSum>& sums, google::protobuf::RepeatedPtrField<v1::HessianSumData>& out,
             Sums with) {
  for (const HessianSum& sum : sums) ToProto(sum, *out.Add(), with);
}

absl::StatusOr<std::vector<HessianSum>> FromProto(const google::protobuf::RepeatedPtrField<v1::HessianSumData>& data,
                                                  Sums with) {
  std::vector<HessianSum> sums;
  for (const v1::HessianSumData& d : data) {
    QSHARD_ASSIGN_OR_RETURN(HessianSum sum, FromProto(d, with));
    sums.push_back(std::move(sum));
  }
  return sums;
}

void ToProto(const Tensor& tensor, v1::TensorData& out) {
  for (int64_t d : tensor.shape()) out.add_shape(d);
  out.set_values_f32(Bytes(tensor.data(), tensor.size()));
}

absl::StatusOr<Tensor> FromProto(const v1::TensorData& data) {
  std::vector<int64_t> shape(data.shape().begin(), data.shape().end());
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && count > (int64_t{1} << 40) / d)) return absl::InvalidArgumentError("tensor: bad shape");
    count *= d;
  }
  QSHARD_ASSIGN_OR_RETURN(std::vector<float> values, Values<float>(data.values_f32(), count, "tensor"));
  return Tensor(std::move(shape), std::move(values));
}

void ToProto(const QuantizedWeight& q, v1::QuantizedWeightData& out) {
  out.set_bits(q.bits);
  out.set_rows(q.rows);
  out.set_cols(q.cols);
  out.set_codes_u8(CodeBytes(q.codes));
  ToProto(q.scales, *out.mutable_scales());
  out.set_zeros_i32(Bytes(q.zeros.data(), q.zeros.size()));
  out.set_g_idx_i32(Bytes(q.g_idx.data(), q.g_idx.size()));
  out.set_column_scale_f32(Bytes(q.column_scale.data(), q.column_scale.size()));
  out.set_input_channel_i32(Bytes(q.input_channel.data(), q.input_channel.size()));
  out.set_act_bits(q.act_bits);
  out.set_act_scale(q.act_scale);
}

absl::StatusOr<QuantizedWeight> FromProto(const v1::QuantizedWeightData& data) {
  QuantizedWeight q;
  q.bits = data.bits();
  q.rows = data.rows();
  q.cols = data.cols();
  if (q.bits < 1 || q.bits > 8 || q.rows < 0 || q.cols < 0 || static_cast<int64_t>(data.codes_u8().size()) != q.rows * q.cols)
    return absl::InvalidArgumentError("quantized weight: bad bits or shape");
  q.codes = CodesOf(data.codes_u8());
  QSHARD_ASSIGN_OR_RETURN(q.scales, FromProto(data.scales()));
  QSHARD_ASSIGN_OR_RETURN(q.zeros, Values<int32_t>(data.zeros_i32(), q.scales.size(), "zeros"));
  QSHARD_ASSIGN_OR_RETURN(q.g_idx, Values<int32_t>(data.g_idx_i32(), q.cols, "g_idx"));
  // The column scale is empty (1) or one per input column.
  QSHARD_ASSIGN_OR_RETURN(q.column_scale, Values<float>(data.column_scale_f32(),
                                                        data.column_scale_f32().empty() ? 0 : q.cols, "column scale"));
  QSHARD_ASSIGN_OR_RETURN(q.input_channel, Values<int32_t>(data.input_channel_i32(),
                                                           data.input_channel_i32().empty() ? 0 : q.cols, "input channels"));
  q.act_bits = data.act_bits();
  q.act_scale = data.act_scale();
  QSHARD_RETURN_IF_ERROR(q.Validate());
  return q;
}

}  // namespace

void ToProto(const GroupStatistics& statistics, v1::GroupStatisticsData& out, Sums sums) {
  ToProto(statistics.inputs, *out.mutable_inputs(), sums);
  if (!statistics.attention) return;
  const AttentionStats& a = *statistics.attention;
  v1::AttentionStatsData& data = *out.mutable_attention();
  data.set_heads(a.heads);
  data.set_kv_heads(a.kv_heads);
  data.set_head_dim(a.head_dim);
  data.set_hidden(a.hidden);
  data.set_seq(a.seq);
  ToProto(a.values, *data.mutable_values(), sums);
  ToProto(a.queries, *data.mutable_queries(), sums);
  ToProto(a.keys, *data.mutable_keys(), sums);
}

absl::StatusOr<GroupStatistics> FromProto(const v1::GroupStatisticsData& data, Sums sums) {
  GroupStatistics statistics;
  QSHARD_ASSIGN_OR_RETURN(statistics.inputs, FromProto(data.inputs(), sums));
  if (!data.has_attention()) return statistics;
  const v1::AttentionStatsData& a = data.attention();
  AttentionStats& stats = statistics.attention.emplace();
  stats.heads = a.heads();
  stats.kv_heads = a.kv_heads();
  stats.head_dim = a.head_dim();
  stats.hidden = a.hidden();
  stats.seq = a.seq();
  QSHARD_ASSIGN_OR_RETURN(stats.values, FromProto(a.values(), sums));
  QSHARD_ASSIGN_OR_RETURN(stats.queries, FromProto(a.queries(), sums));
  QSHARD_ASSIGN_OR_RETURN(stats.keys, FromProto(a.keys(), sums));
  return statistics;
}

namespace {

void ToProto(const std::vector<TensorRewrite>& rewrites, google::protobuf::RepeatedPtrField<v1::TensorRewriteData>& out) {
  for (const TensorRewrite& rewrite : rewrites) {
    v1::TensorRewriteData& data = *out.Add();
    data.set_target(static_cast<int32_t>(rewrite.target));
    data.set_name(rewrite.name);
    ToProto(rewrite.value, *data.mutable_value());
  }
}

absl::StatusOr<std::vector<TensorRewrite>> FromProto(
    const google::protobuf::RepeatedPtrField<v1::TensorRewriteData>& data) {
  std::vector<TensorRewrite> rewrites;
  for (const v1::TensorRewriteData& r : data) {
    if (r.target() < 0 || r.target() > static_cast<int>(TensorRewrite::Target::kQuantizedScales))
      return absl::InvalidArgumentError(absl::StrCat("rewrite of ", r.name(), ": unknown target ", r.target()));
    QSHARD_ASSIGN_OR_RETURN(Tensor value, FromProto(r.value()));
    rewrites.push_back({static_cast<TensorRewrite::Target>(r.target()), r.name(), std::move(value)});
  }
  return rewrites;
}

}  // namespace

void ToProto(const SharedGroupPart& shared, v1::SharedGroupPartData& out) {
  ToProto(shared.rewrites, *out.mutable_rewrites());
  out.set_column_scale_f32(Bytes(shared.column_scale.data(), shared.column_scale.size()));
  for (const auto& [name, grids] : shared.grids) {
    v1::FixedGridsData& data = (*out.mutable_grids())[name];
    ToProto(grids.scales, *data.mutable_scales());
    data.set_zeros_i32(Bytes(grids.zeros.data(), grids.zeros.size()));
  }
}

absl::StatusOr<SharedGroupPart> FromProto(const v1::SharedGroupPartData& data) {
  SharedGroupPart shared;
  QSHARD_ASSIGN_OR_RETURN(shared.rewrites, FromProto(data.rewrites()));
  if (data.column_scale_f32().size() % sizeof(float) != 0)
    return absl::InvalidArgumentError("column scale: not a whole number of float32");
  QSHARD_ASSIGN_OR_RETURN(shared.column_scale, Values<float>(data.column_scale_f32(),
                                                             data.column_scale_f32().size() / sizeof(float), "column scale"));
  for (const auto& [name, g] : data.grids()) {
    FixedGrids& grids = shared.grids[name];
    QSHARD_ASSIGN_OR_RETURN(grids.scales, FromProto(g.scales()));
    auto zeros = Values<int32_t>(g.zeros_i32(), grids.scales.size(), "zeros");
    if (!zeros.ok()) return WithContext(zeros.status(), absl::StrCat("grids of ", name));
    grids.zeros = std::move(*zeros);
  }
  return shared;
}

void ToProto(const GroupSolution& solution, v1::GroupSolutionData& out) {
  for (const auto& [name, q] : solution.linears) ToProto(q, (*out.mutable_linears())[name]);
  ToProto(solution.rewrites, *out.mutable_rewrites());
  for (const LinearReport& report : solution.reports) ToProto(report, *out.add_reports());
}

absl::StatusOr<GroupSolution> FromProto(const v1::GroupSolutionData& data) {
  GroupSolution solution;
  for (const auto& [name, q] : data.linears()) {
    auto weight = FromProto(q);
    if (!weight.ok()) return WithContext(weight.status(), name);
    solution.linears.emplace(name, std::move(*weight));
  }
  QSHARD_ASSIGN_OR_RETURN(solution.rewrites, FromProto(data.rewrites()));
  for (const v1::LinearResult& r : data.reports()) solution.reports.push_back(ReportOf(r));
  return solution;
}

void ToProto(const HeadRange& range, v1::HeadRangeData& out) {
  out.set_linear(range.linear);
  out.set_first(range.first);
  out.set_count(range.count);
}

HeadRange FromProto(const v1::HeadRangeData& data) { return {data.linear(), data.first(), data.count()}; }

void ToProto(const HeadsPart& part, v1::HeadsPartData& out) {
  out.set_linear(part.linear);
  out.set_first(part.first);
  ToProto(part.weight, *out.mutable_weight());
  out.set_learned_codes_u8(CodeBytes(part.learned_codes));
  *out.mutable_losses() = {part.losses.begin(), part.losses.end()};
  *out.mutable_learned_losses() = {part.learned_losses.begin(), part.learned_losses.end()};
  out.set_error(part.error);
  out.set_learned_error(part.learned_error);
  out.set_reference(part.reference);
  ToProto(part.report, *out.mutable_report());
}

absl::StatusOr<HeadsPart> FromProto(const v1::HeadsPartData& data) {
  HeadsPart part;
  part.linear = data.linear();
  part.first = data.first();
  QSHARD_ASSIGN_OR_RETURN(part.weight, FromProto(data.weight()));
  part.learned_codes = CodesOf(data.learned_codes_u8());
  if (part.learned_codes.size() != part.weight.codes.size())
    return absl::InvalidArgumentError(absl::StrCat(part.linear, ": learned codes do not fit the part's rows"));
  part.losses = {data.losses().begin(), data.losses().end()};
  part.learned_losses = {data.learned_losses().begin(), data.learned_losses().end()};
  part.error = data.error();
  part.learned_error = data.learned_error();
  part.reference = data.reference();
  part.report = ReportOf(data.report());
  return part;
}

void SetStatus(const absl::Status& status, v1::WorkerTaskResult& result) {
  result.set_code(static_cast<int>(status.code()));
  result.set_message(std::string(status.message()));
}

absl::Status StatusOf(const v1::WorkerTaskResult& result) {
  return absl::Status(static_cast<absl::StatusCode>(result.code()), result.message());
}

uint32_t Crc32(std::string_view bytes) {
  return static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}

absl::StatusOr<std::vector<v1::Chunk>> Cut(const google::protobuf::Message& message, uint64_t message_id,
                                           size_t chunk_bytes) {
  if (const size_t size = message.ByteSizeLong(); size > static_cast<size_t>(std::numeric_limits<int>::max()))
    return absl::ResourceExhaustedError(absl::StrCat("message ", message_id, " (", message.GetTypeName(), ") is ", size,
                                                     " bytes, over protobuf's 2 GiB limit"));
  const std::string bytes = message.SerializeAsString();
  std::vector<v1::Chunk> chunks;
  size_t offset = 0;
  do {
    v1::Chunk& chunk = chunks.emplace_back();
    chunk.set_message_id(message_id);
    const size_t size = std::min(chunk_bytes, bytes.size() - offset);
    chunk.set_data(bytes.substr(offset, size));
    offset += size;
  } while (offset < bytes.size());
  chunks.back().set_last(true);
  chunks.back().set_crc32(Crc32(bytes));
  return chunks;
}

std::string TaskKind(const v1::WorkerTask& task) {
  const google::protobuf::OneofDescriptor* body = v1::WorkerTask::descriptor()->FindOneofByName("body");
  const google::protobuf::FieldDescriptor* field = task.GetReflection()->GetOneofFieldDescriptor(task, body);
  return field != nullptr ? field->name() : "empty";
}

absl::StatusOr<bool> ChunkAssembler::Add(const v1::Chunk& chunk, google::protobuf::Message& out) {
  if (in_progress_ && chunk.message_id() != message_id_)
    return absl::DataLossError(
        absl::StrCat("message ", chunk.message_id(), " interleaved with unfinished message ", message_id_));
  if (!in_progress_) data_.clear();
  in_progress_ = true;
  message_id_ = chunk.message_id();
  data_ += chunk.data();
  if (!chunk.last()) return false;
  in_progress_ = false;
  if (Crc32(data_) != chunk.crc32())
    return absl::DataLossError(absl::StrCat("message ", message_id_, ": CRC-32 mismatch"));
  if (!out.ParseFromString(data_))
    return absl::DataLossError(absl::StrCat("message ", message_id_, ": does not parse"));
  data_.clear();
  return true;
}

}  // namespace qshard::wire
