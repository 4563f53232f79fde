// What a job will cost before it runs, from config.json alone (no weights are read): the peak
// memory of its busiest worker and of the coordinator (the runner and checkpoint stitcher), and
// the bytes that cross the network per layer, by the formulas in docs/architecture.md ("Memory
// of a job"). The service refuses at submission, with these numbers, a job that cannot fit its
// workers, instead of failing hours in; `qshard plan` prints them. They are estimates:
// docs/results.md compares them with measured peak RSS and traffic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/format_bytes.h"
#include "core/model_config.h"
#include "engine/job_spec.h"
#include "nlohmann/json.hpp"

namespace qshard {

struct MemoryTerm {
  std::string name;  // "hidden states", "Hessians", ...
  uint64_t bytes = 0;
};

// One process's peak memory as the sum of its terms (the terms do not all peak at the same
// moment, so the sum errs high).
struct MemoryPlan {
  std::vector<MemoryTerm> terms;
  uint64_t total() const;
};

struct JobPlan {
  int workers = 1;
  int layers = 0;
  int64_t seqlen = 0;
  MemoryPlan worker;       // the worker holding the most calibration windows
  std::vector<int> busiest_shards;  // that worker's calibration shards, in the order it holds them
  MemoryPlan coordinator;  // runner + stitcher; embedded mode runs both in one process
  // Per layer, over the network (zero in embedded mode, where nothing crosses one):
  // between workers (the data plane): partial sums to each group's owner, reduced sums from it
  // to the other solvers of the group's parts; a mean over the layers (owners rotate).
  uint64_t statistics_bytes = 0;
  // through the coordinator: solutions from the owners and to every worker (with shared parts);
  // no statistics cross it.
  uint64_t solution_bytes = 0;
  // Embedded: worker and coordinator in one process.
  uint64_t embedded_peak() const { return worker.total() + coordinator.total(); }

  nlohmann::json ToJson() const;
};

// The plan of `spec` on `config` with `workers` workers (the spec must be valid for the model).
absl::StatusOr<JobPlan> PlanJob(const JobSpec& spec, const ModelConfig& config, int workers);

// The worker's term for aespa on CUDA workers whose attention statistics take `value_heads` of the
// model's key/value heads per pass (the device's choice, ValueHeadsPerPass): fewer than all,
// each shard's windows' x, q and k wait in host memory for the later passes (AttentionWindowBytes;
// one shard at a time, the largest counted: 38.7 GB for 128 windows of 2048 tokens at OPT-175B).
// Returns the bytes added; 0, and no term, when nothing is sliced.
uint64_t AddKeptAttentionWindows(JobPlan& plan, const JobSpec& spec, const ModelConfig& config, int64_t value_heads);

// Windows per calibration forward batch: `spec.execution.batch_windows`, or when that is 0, as
// many as keep one batch's activations through a layer (the plan's "forward batch" term, with
// aespa's attention probabilities when `attention_probabilities`) within 512 MiB, 1 to 64.
// Small models thus run a shard in one batch (fewer, larger calls: TinyStories-656K's aespa
// job 0.3 s faster than at 8), and hyper-scale ones one window at a time. Bytes never depend
// on it (conventions.md, Determinism).
int64_t ForwardBatchWindows(const JobSpec& spec, const ModelConfig& config, int64_t seqlen,
                            bool attention_probabilities);
// PlanJob on the spec's model directory (reads its config.json only).
absl::StatusOr<JobPlan> PlanJobForModel(const JobSpec& spec, int workers);

// RESOURCE_EXHAUSTED, with the plan's numbers and the largest terms, when the busiest worker's
// peak exceeds `worker_memory` or the coordinator's exceeds `coordinator_memory` (0: not
// checked). Embedded mode passes the machine's memory for both and checks their sum.
absl::Status CheckPlanFits(const JobPlan& plan, uint64_t worker_memory, uint64_t coordinator_memory);
absl::Status CheckEmbeddedPlanFits(const JobPlan& plan, uint64_t memory);

// This machine's physical memory in bytes.
uint64_t PhysicalMemoryBytes();

}  // namespace qshard
