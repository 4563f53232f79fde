#include "remote/job_spec_proto.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "core/status.h"

namespace qshard {
namespace {

// A zero on the wire means the engine's default for fields where zero is no valid value.
template <typename T>
T OrDefault(T value, T fallback) {
  return value != T{} ? value : fallback;
}

absl::StatusOr<Propagation> PropagationFromProto(v1::Propagation propagation) {
  switch (propagation) {
    case v1::PROPAGATION_UNSPECIFIED:
    case v1::PROPAGATION_SEQUENTIAL:
      return Propagation::kSequential;
    case v1::PROPAGATION_PARALLEL:
      return Propagation::kParallel;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("--propagation (calibration.propagation): unknown value ", static_cast<int>(propagation)));
  }
}

LineRange LinesFromProto(int32_t first, int32_t last) { return {OrDefault(first, LineRange().first), last}; }

// Calibration and validation name their text the same way.
template <typename TextMessage>
void SetTextLines(TextMessage& message, const std::string& text, const LineRange& lines) {
  message.set_text_path(text);
  message.set_first_line(lines.first);
  message.set_last_line(lines.last);
}

}  // namespace

absl::StatusOr<JobSpec> JobSpecFromProto(const v1::JobSpec& proto) {
  const JobSpec defaults;
  JobSpec spec;
  spec.model_dir = proto.model_path();
  spec.out_dir = proto.output_path();

  const v1::QuantSpec& q = proto.quant();
  MethodOptions& m = spec.method;
  m.method = q.method();
  m.spec.bits = q.bits();
  m.spec.group_size = q.group_size();
  m.spec.sym = q.sym();
  m.spec.act_order = q.act_order();
  m.spec.static_groups = q.static_groups();
  m.spec.mse_clip = q.mse_clip();
  m.spec.damp = OrDefault(q.damp(), defaults.method.spec.damp);
  m.spec.block_size = OrDefault(q.block_size(), defaults.method.spec.block_size);
  m.zfold_max_iters = q.has_zfold_max_iters() ? q.zfold_max_iters() : defaults.method.zfold_max_iters;
  m.aespa_adaround_iters = q.has_aespa_adaround_iters() ? q.aespa_adaround_iters() : defaults.method.aespa_adaround_iters;
  m.aespa_learning_rate = OrDefault(q.aespa_learning_rate(), defaults.method.aespa_learning_rate);
  m.flatten_threshold = q.flatten_threshold().empty() ? defaults.method.flatten_threshold : q.flatten_threshold();
  m.flatten_int4_max_error = OrDefault(q.flatten_int4_max_error(), defaults.method.flatten_int4_max_error);
  spec.skip.assign(q.skip().begin(), q.skip().end());

  const v1::CalibrationSpec& c = proto.calibration();
  spec.calibration.text = c.text_path();
  spec.calibration.lines = LinesFromProto(c.first_line(), c.last_line());
  spec.calibration.nsamples = OrDefault(c.nsamples(), defaults.calibration.nsamples);
  spec.calibration.seqlen = c.seqlen();
  spec.calibration.seed = c.seed();
  spec.calibration.shards = OrDefault(c.shards(), defaults.calibration.shards);
  QSHARD_ASSIGN_OR_RETURN(spec.calibration.propagation, PropagationFromProto(c.propagation()));

  const v1::ValidationSpec& v = proto.validation();
  spec.validation.text = v.text_path();
  spec.validation.lines = LinesFromProto(v.first_line(), v.last_line());
  spec.validation.seqlen = OrDefault(v.seqlen(), defaults.validation.seqlen);
  spec.validation.max_windows = v.max_windows();

  const v1::ExecutionOptions& e = proto.execution();
  spec.execution.threads = e.threads();
  spec.execution.batch_windows = OrDefault(e.batch_windows(), defaults.execution.batch_windows);
  spec.execution.max_shard_bytes = OrDefault(e.max_shard_bytes(), defaults.execution.max_shard_bytes);
  return spec;
}

v1::JobSpec JobSpecToProto(const JobSpec& spec) {
  v1::JobSpec proto;
  proto.set_model_path(spec.model_dir);
  proto.set_output_path(spec.out_dir);

  v1::QuantSpec& q = *proto.mutable_quant();
  const MethodOptions& m = spec.method;
  q.set_method(m.method);
  q.set_bits(m.spec.bits);
  q.set_group_size(m.spec.group_size);
  q.set_sym(m.spec.sym);
  q.set_act_order(m.spec.act_order);
  q.set_static_groups(m.spec.static_groups);
  q.set_mse_clip(m.spec.mse_clip);
  q.set_damp(m.spec.damp);
  q.set_block_size(m.spec.block_size);
  q.set_zfold_max_iters(m.zfold_max_iters);
  q.set_aespa_adaround_iters(m.aespa_adaround_iters);
  q.set_aespa_learning_rate(m.aespa_learning_rate);
  q.set_flatten_threshold(m.flatten_threshold);
  q.set_flatten_int4_max_error(m.flatten_int4_max_error);
  for (const std::string& pattern : spec.skip) q.add_skip(pattern);

  v1::CalibrationSpec& c = *proto.mutable_calibration();
  SetTextLines(c, spec.calibration.text, spec.calibration.lines);
  c.set_nsamples(spec.calibration.nsamples);
  c.set_seqlen(spec.calibration.seqlen);
  c.set_seed(spec.calibration.seed);
  c.set_shards(spec.calibration.shards);
  c.set_propagation(spec.calibration.propagation == Propagation::kParallel ? v1::PROPAGATION_PARALLEL
                                                                           : v1::PROPAGATION_SEQUENTIAL);

  v1::ValidationSpec& v = *proto.mutable_validation();
  SetTextLines(v, spec.validation.text, spec.validation.lines);
  v.set_seqlen(spec.validation.seqlen);
  v.set_max_windows(spec.validation.max_windows);

  v1::ExecutionOptions& e = *proto.mutable_execution();
  e.set_threads(spec.execution.threads);
  e.set_batch_windows(spec.execution.batch_windows);
  e.set_max_shard_bytes(spec.execution.max_shard_bytes);
  return proto;
}

absl::StatusOr<std::string> CanonicalSpecBytes(const v1::JobSpec& proto) {
  QSHARD_ASSIGN_OR_RETURN(const JobSpec spec, JobSpecFromProto(proto));
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    JobSpecToProto(spec).SerializeToCodedStream(&coded);
  }
  return bytes;
}

absl::StatusOr<JobSpec> JobSpecFromBytes(const std::string& bytes) {
  v1::JobSpec proto;
  if (!proto.ParseFromString(bytes)) return absl::DataLossError("job spec: the stored bytes do not parse");
  return JobSpecFromProto(proto);
}

}  // namespace qshard
