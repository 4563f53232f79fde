// Who solves which part of a layer's groups, and those solves run on the workers. A group's
// owner is worker alive[(layer·groups + group) mod alive], from (layer, group) and the
// surviving workers alone, never from timing. A group whose linears are independent (RTN,
// GPTQ) — or independent once a shared part is solved (Z-Fold's and aespa's ζ search, done by
// the owner first) — has its linears spread over the live workers, balanced by size (largest
// first, each to the least loaded worker, ties to the first from the owner on), and the parts
// are joined in the group's order: the same solution as one owner's, bit for bit.
//
// A method that also splits linears by attention head (aespa: the registry's `heads_of`)
// solves such a group in three steps when that balances better than whole linears (more
// workers than linears, or unequal linears): the shared part on the owner; the heads, cut in
// group order (q's heads, then k's, then v's) into contiguous runs of near-equal size, one run
// per worker from the owner on (a head goes to the worker its middle falls to); then the
// runner joins each linear's runs (head_parts.h: copies and one sum per linear).
//
// A worker lost in a step (its calls UNAVAILABLE) has its parts of that step redone by the
// survivors, round robin; the other parts are kept. A part whose solver could not read the
// group's reduced statistics from their owner (ABORTED with WorkerClient::
// kUnreadableHolderPayload: the owner is lost) is not redone here: the runner redoes the layer.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/worker_client.h"
#include "worker/methods/method_registry.h"

namespace qshard {

struct OwnerSolves {
  int layer = 0;
  const std::vector<std::vector<std::string>>* groups = nullptr;  // the layer's linear groups
  const std::set<std::string>* skipped = nullptr;                 // linears kept in full precision
  const std::map<std::string, uint64_t>* sizes = nullptr;         // each linear's weights (rows × columns)
  // Each head-split linear's heads (the registry's heads_of for the model); null: none split.
  const std::map<std::string, int>* heads = nullptr;
  const MethodRegistration* method = nullptr;
  const std::vector<GroupStatistics>* statistics = nullptr;  // by group; null: the method needs none
  const std::vector<WorkerClient*>* workers = nullptr;
  std::vector<size_t> alive;  // indices into workers, ascending
};

struct SolvedGroups {
  absl::Status status;                       // the first error, in owner order
  std::map<int, GroupSolution> solutions;    // by group, when status is OK
  // Workers whose calls failed with UNAVAILABLE; their parts were redone by the survivors (the
  // status is OK if those succeeded).
  std::vector<size_t> lost;
};

// The owner of `group` of `layer` (of `groups` groups): it reduces the group's statistics
// (WorkerClient::ReduceStatistics) and solves the group, or its shared part; the other solvers
// of its parts pull the reduced statistics from it.
size_t OwnerOf(int layer, int group, size_t groups, const std::vector<size_t>& alive);

// How a group of `quantized` linears is cut among `workers` live workers (the same from any
// owner on): what the plan (job_plan.h) counts.
struct GroupSplit {
  size_t part_owners = 1;  // workers solving parts after the shared step; 1: one solves it whole
  bool by_head = false;    // its head-split linears are solved by runs of heads
};
GroupSplit SplitOfGroup(const std::vector<std::string>& quantized, const std::map<std::string, uint64_t>& sizes,
                        const std::map<std::string, int>* heads, const MethodRegistration& method, size_t workers);

// Solves the groups `to_solve` of the layer. Each worker runs its parts in turn (a worker
// solves one thing at a time); workers run in parallel.
SolvedGroups SolveOnOwners(const OwnerSolves& request, const std::vector<int>& to_solve);

}  // namespace qshard
