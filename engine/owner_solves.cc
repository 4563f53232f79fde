#include "engine/owner_solves.h"

#include <algorithm>
#include <functional>
#include <thread>

namespace qshard {
namespace {

// The first step of a two-step solve.
struct SharedPart {
  int group = 0;
  absl::StatusOr<SharedGroupPart> part = absl::UnknownError("not run");
};

struct Part {
  int group = 0;
  std::vector<std::string> linears;      // empty: the whole group
  const SharedGroupPart* shared = nullptr;  // the group's shared part, for a two-step solve
  absl::StatusOr<GroupSolution> solution = absl::UnknownError("not run");
};

const absl::Status& StatusOf(const SharedPart& p) { return p.part.status(); }
const absl::Status& StatusOf(const Part& p) { return p.solution.status(); }

// Runs `run` on each owner's items in turn, owners in parallel (each thread gets its worker
// and items directly: no map lookups from several threads). Then adds the owners whose calls
// failed with UNAVAILABLE to `lost` and returns the first error in owner order.
template <typename Item>
absl::Status RunOnOwners(std::map<size_t, std::vector<Item>>& items_of, const std::vector<WorkerClient*>& workers,
                         const std::function<void(WorkerClient&, Item&)>& run, std::vector<size_t>& lost) {
  std::vector<std::thread> threads;
  for (auto& [owner, items] : items_of)
    threads.emplace_back([&run, worker = workers[owner], owned = &items] {
      for (Item& item : *owned) run(*worker, item);
    });
  for (std::thread& t : threads) t.join();
  for (const auto& [owner, items] : items_of)
    for (const Item& item : items)
      if (absl::IsUnavailable(StatusOf(item)) && std::find(lost.begin(), lost.end(), owner) == lost.end())
        lost.push_back(owner);
  for (const auto& [owner, items] : items_of)
    for (const Item& item : items)
      if (!StatusOf(item).ok()) return StatusOf(item);
  return absl::OkStatus();
}

// Which of the live workers solves each of `linears` (by position): largest first, each to the
// least loaded, ties to the first from position `first` on. Equal sizes go round robin.
std::map<size_t, std::vector<std::string>> Balance(const std::vector<std::string>& linears,
                                                   const std::map<std::string, uint64_t>& sizes,
                                                   const std::vector<size_t>& alive, size_t first) {
  const auto size_of = [&](const std::string& l) { return sizes.count(l) ? sizes.at(l) : uint64_t{1}; };
  std::vector<size_t> order(linears.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return size_of(linears[a]) > size_of(linears[b]); });
  std::vector<uint64_t> load(alive.size(), 0);  // by rotation position from `first`
  std::vector<size_t> owner_of(linears.size());
  for (size_t k : order) {
    size_t best = 0;
    for (size_t j = 1; j < alive.size(); ++j)
      if (load[j] < load[best]) best = j;
    load[best] += size_of(linears[k]);
    owner_of[k] = alive[(first + best) % alive.size()];
  }
  std::map<size_t, std::vector<std::string>> linears_of;  // each owner's in group order
  for (size_t k = 0; k < linears.size(); ++k) linears_of[owner_of[k]].push_back(linears[k]);
  return linears_of;
}

}  // namespace

size_t OwnerOf(int layer, int group, size_t groups, const std::vector<size_t>& alive) {
  return alive[(static_cast<size_t>(layer) * groups + group) % alive.size()];
}

SolvedGroups SolveOnOwners(const OwnerSolves& r, const std::vector<int>& to_solve) {
  const std::vector<std::vector<std::string>>& groups = *r.groups;
  const size_t n = r.alive.size();
  const bool splits = r.method->independent_linears || r.method->independent_after_shared;
  std::map<size_t, std::vector<SharedPart>> shared_of;  // by owner
  std::map<size_t, std::vector<Part>> parts_of;         // by owner
  for (int g : to_solve) {
    const size_t first = static_cast<size_t>(r.layer) * groups.size() + g;
    std::vector<std::string> quantized;
    for (const std::string& linear : groups[g])
      if (!r.skipped->count(linear)) quantized.push_back(linear);
    if (!splits || n == 1 || quantized.size() == 1) {
      parts_of[OwnerOf(r.layer, g, groups.size(), r.alive)].push_back({g, {}});
      continue;
    }
    if (r.method->independent_after_shared) shared_of[OwnerOf(r.layer, g, groups.size(), r.alive)].push_back({g});
    for (auto& [owner, linears] : Balance(quantized, *r.sizes, r.alive, first))
      parts_of[owner].push_back({g, std::move(linears)});
  }
  const auto statistics = [&](int g) { return r.statistics == nullptr ? nullptr : &(*r.statistics)[g]; };

  SolvedGroups solved;
  std::map<int, GroupSolution>& joined = solved.solutions;
  // The shared parts first; their rewrites open the group's solution (as in one owner's solve)
  // and the rest goes to the owners of the group's linears.
  solved.status = RunOnOwners<SharedPart>(
      shared_of, *r.workers,
      [&](WorkerClient& w, SharedPart& s) { s.part = w.SolveShared(s.group, statistics(s.group)); }, solved.lost);
  if (!solved.status.ok()) return solved;
  std::map<int, const SharedGroupPart*> shared_by_group;
  for (auto& [owner, shareds] : shared_of)
    for (SharedPart& s : shareds) {
      joined[s.group].rewrites = std::move(s.part->rewrites);
      s.part->rewrites.clear();
      shared_by_group[s.group] = &*s.part;
    }
  for (auto& [owner, parts] : parts_of)
    for (Part& part : parts)
      if (auto it = shared_by_group.find(part.group); it != shared_by_group.end()) part.shared = it->second;

  solved.status = RunOnOwners<Part>(
      parts_of, *r.workers,
      [&](WorkerClient& w, Part& p) { p.solution = w.Solve(p.group, p.linears, statistics(p.group), p.shared); },
      solved.lost);
  if (!solved.status.ok()) {
    joined.clear();
    return solved;
  }
  for (auto& [owner, parts] : parts_of)
    for (Part& part : parts) {
      GroupSolution& into = joined[part.group];
      for (auto& [name, weight] : part.solution->linears) into.linears.emplace(name, std::move(weight));
      for (TensorRewrite& rewrite : part.solution->rewrites) into.rewrites.push_back(std::move(rewrite));
      for (LinearReport& report : part.solution->reports) into.reports.push_back(std::move(report));
    }
  for (auto& [g, solution] : joined) {
    const auto position = [&, g = g](const LinearReport& report) {
      return std::find(groups[g].begin(), groups[g].end(), report.name) - groups[g].begin();
    };
    std::stable_sort(solution.reports.begin(), solution.reports.end(),
                     [&](const LinearReport& a, const LinearReport& b) { return position(a) < position(b); });
  }
  return solved;
}

}  // namespace qshard
