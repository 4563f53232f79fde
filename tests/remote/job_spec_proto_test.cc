// The proto <-> engine JobSpec converter: every field survives a round trip, wire zeros mean
// the engine's defaults, and bad specs are refused by ValidateJobSpec naming the proto field.
#include "remote/job_spec_proto.h"

#include "gtest/gtest.h"

namespace qshard {
namespace {

JobSpec Awkward() {
  JobSpec spec;
  spec.model_dir = "/models/m";
  spec.out_dir = "/out/q";
  spec.method.method = "zfold";
  spec.method.spec.bits = 3;
  spec.method.spec.group_size = 48;
  spec.method.spec.sym = true;
  spec.method.spec.act_order = true;
  spec.method.spec.static_groups = true;
  spec.method.spec.mse_clip = true;
  spec.method.spec.damp = 0.037;
  spec.method.spec.block_size = 96;
  spec.method.zfold_max_iters = 7;
  spec.method.aespa_adaround_iters = 0;
  spec.method.aespa_learning_rate = 0.5;
  spec.skip = {"mlp.down_proj", "self_attn.*"};
  spec.calibration.text = "/text/c.txt";
  spec.calibration.lines = {3, 77};
  spec.calibration.nsamples = 13;
  spec.calibration.seqlen = 65;
  spec.calibration.seed = 0xFFFFFFFFFFFFull;
  spec.calibration.shards = 5;
  spec.calibration.propagation = Propagation::kParallel;
  spec.validation.text = "/text/v.txt";
  spec.validation.lines = {9, 0};
  spec.validation.seqlen = 33;
  spec.validation.max_windows = 4;
  spec.execution.threads = 3;
  spec.execution.batch_windows = 2;
  spec.execution.max_shard_bytes = 12345;
  return spec;
}

TEST(JobSpecProtoTest, RoundTripKeepsEveryField) {
  const JobSpec in = Awkward();
  auto out = JobSpecFromProto(JobSpecToProto(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->model_dir, in.model_dir);
  EXPECT_EQ(out->out_dir, in.out_dir);
  EXPECT_EQ(out->method.method, in.method.method);
  EXPECT_EQ(out->method.spec.bits, 3);
  EXPECT_EQ(out->method.spec.group_size, 48);
  EXPECT_TRUE(out->method.spec.sym && out->method.spec.act_order && out->method.spec.static_groups &&
              out->method.spec.mse_clip);
  EXPECT_EQ(out->method.spec.damp, 0.037);
  EXPECT_EQ(out->method.spec.block_size, 96);
  EXPECT_EQ(out->method.zfold_max_iters, 7);
  EXPECT_EQ(out->method.aespa_adaround_iters, 0);  // a set zero is kept: aespa without AdaRound
  EXPECT_EQ(out->method.aespa_learning_rate, 0.5);
  EXPECT_EQ(out->skip, in.skip);
  EXPECT_EQ(out->calibration.text, in.calibration.text);
  EXPECT_EQ(out->calibration.lines.first, 3);
  EXPECT_EQ(out->calibration.lines.last, 77);
  EXPECT_EQ(out->calibration.nsamples, 13);
  EXPECT_EQ(out->calibration.seqlen, 65);
  EXPECT_EQ(out->calibration.seed, in.calibration.seed);
  EXPECT_EQ(out->calibration.shards, 5);
  EXPECT_EQ(out->calibration.propagation, Propagation::kParallel);
  EXPECT_EQ(out->validation.text, in.validation.text);
  EXPECT_EQ(out->validation.lines.first, 9);
  EXPECT_EQ(out->validation.lines.last, 0);
  EXPECT_EQ(out->validation.seqlen, 33);
  EXPECT_EQ(out->validation.max_windows, 4);
  EXPECT_EQ(out->execution.threads, 3);
  EXPECT_EQ(out->execution.batch_windows, 2);
  EXPECT_EQ(out->execution.max_shard_bytes, 12345u);
  EXPECT_EQ(JobSpecToProto(*out).SerializeAsString(), JobSpecToProto(in).SerializeAsString());
}

TEST(JobSpecProtoTest, WireZerosMeanTheEngineDefaults) {
  v1::JobSpec proto;
  proto.mutable_quant()->set_bits(4);
  auto spec = JobSpecFromProto(proto);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const JobSpec defaults;
  EXPECT_EQ(spec->method.spec.damp, defaults.method.spec.damp);
  EXPECT_EQ(spec->method.spec.block_size, defaults.method.spec.block_size);
  EXPECT_EQ(spec->method.zfold_max_iters, defaults.method.zfold_max_iters);
  EXPECT_EQ(spec->method.aespa_adaround_iters, defaults.method.aespa_adaround_iters);
  EXPECT_EQ(spec->calibration.nsamples, defaults.calibration.nsamples);
  EXPECT_EQ(spec->calibration.shards, defaults.calibration.shards);
  EXPECT_EQ(spec->calibration.lines.first, 1);
  EXPECT_EQ(spec->calibration.propagation, Propagation::kSequential);
  EXPECT_EQ(spec->validation.seqlen, defaults.validation.seqlen);
  EXPECT_EQ(spec->execution.batch_windows, defaults.execution.batch_windows);
  EXPECT_EQ(spec->execution.max_shard_bytes, defaults.execution.max_shard_bytes);
}

TEST(JobSpecProtoTest, CanonicalBytesIgnoreTheRequestIdAndSpelledOutDefaults) {
  v1::JobSpec sparse = JobSpecToProto(Awkward());
  sparse.mutable_calibration()->set_nsamples(0);
  sparse.set_client_request_id("a");
  v1::JobSpec spelled = JobSpecToProto(Awkward());
  spelled.mutable_calibration()->set_nsamples(JobSpec().calibration.nsamples);
  spelled.set_client_request_id("b");
  EXPECT_EQ(CanonicalSpecBytes(sparse).value(), CanonicalSpecBytes(spelled).value());
  spelled.mutable_quant()->set_bits(4);
  EXPECT_NE(CanonicalSpecBytes(sparse).value(), CanonicalSpecBytes(spelled).value());
}

// The converter passes bad values through; the one validation refuses them, naming the field.
void ExpectRefused(const v1::JobSpec& proto, const std::string& field) {
  auto spec = JobSpecFromProto(proto);
  absl::Status status = spec.ok() ? ValidateJobSpec(*spec) : spec.status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_NE(status.message().find(field), std::string::npos) << status;
}

TEST(JobSpecProtoTest, BadSpecsAreRefusedNamingTheProtoField) {
  const v1::JobSpec good = JobSpecToProto(Awkward());
  ASSERT_TRUE(ValidateJobSpec(JobSpecFromProto(good).value()).ok());
  for (int bits : {0, 9}) {
    v1::JobSpec bad = good;
    bad.mutable_quant()->set_bits(bits);
    ExpectRefused(bad, "quant.bits");
  }
  v1::JobSpec bad = good;
  bad.mutable_quant()->set_method("nope");
  ExpectRefused(bad, "quant.method");
  bad = good;
  bad.mutable_calibration()->set_propagation(static_cast<v1::Propagation>(7));
  ExpectRefused(bad, "calibration.propagation");
  bad = good;
  bad.set_model_path("");
  ExpectRefused(bad, "model_path");
  bad = good;
  bad.mutable_calibration()->set_text_path("");
  ExpectRefused(bad, "calibration.text_path");
}

}  // namespace
}  // namespace qshard
