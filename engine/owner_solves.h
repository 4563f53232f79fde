// Who solves which part of a layer's groups, and those solves run on the workers. A group's
// owner is worker alive[(layer·groups + group) mod alive], from (layer, group) and the
// surviving workers alone, never from timing. A group whose linears are independent (RTN,
// GPTQ) — or independent once a shared part is solved (Z-Fold's and aespa's ζ search, done by
// the owner first) — has its linears spread over the live workers, balanced by size (largest
// first, each to the least loaded worker, ties to the first from the owner on), and the parts
// are joined in the group's order: the same solution as one owner's, bit for bit.
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
  const MethodRegistration* method = nullptr;
  const std::vector<GroupStatistics>* statistics = nullptr;  // by group; null: the method needs none
  const std::vector<WorkerClient*>* workers = nullptr;
  std::vector<size_t> alive;  // indices into workers, ascending
};

struct SolvedGroups {
  absl::Status status;                       // the first error, in owner order
  std::map<int, GroupSolution> solutions;    // by group, when status is OK
  std::vector<size_t> lost;                  // workers whose calls failed with UNAVAILABLE
};

// The owner of `group` of `layer` (of `groups` groups): it reduces the group's statistics
// (WorkerClient::ReduceStatistics) and solves the group, or its shared part and largest linear.
size_t OwnerOf(int layer, int group, size_t groups, const std::vector<size_t>& alive);

// Solves the groups `to_solve` of the layer. Each worker runs its parts in turn (a worker
// solves one thing at a time); workers run in parallel.
SolvedGroups SolveOnOwners(const OwnerSolves& request, const std::vector<int>& to_solve);

}  // namespace qshard
