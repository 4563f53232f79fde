#include "engine/owner_solves.h"

#include <algorithm>
#include <functional>
#include <thread>

#include "worker/methods/head_parts.h"

namespace qshard {
namespace {

// The first step of a two-step solve.
struct SharedPart {
  int group = 0;
  absl::StatusOr<SharedGroupPart> part = absl::UnknownError("not run");
};

// Every member has an initializer, so `{.group = g}` names only what it sets (gcc's
// -Wmissing-field-initializers warns about members without one).
struct Part {
  int group = 0;
  std::vector<std::string> linears = {};    // empty (and no heads): the whole group
  std::vector<HeadRange> heads = {};        // the per-head step: these heads (given `shared`)
  const SharedGroupPart* shared = nullptr;  // the group's shared part, for a two-step solve
  absl::StatusOr<GroupSolution> solution = absl::UnknownError("not run");  // empty for heads
  std::vector<HeadsPart> solved_heads = {};
};

const absl::Status& StatusOf(const SharedPart& p) { return p.part.status(); }
const absl::Status& StatusOf(const Part& p) { return p.solution.status(); }

// Runs `run` on each owner's items in turn, owners in parallel (each thread gets its worker
// and items directly: no map lookups from several threads). The items of owners whose calls
// failed with UNAVAILABLE are redone on the survivors of `alive`, round robin, until none fails
// so or none survives; those owners are added to `lost`. Returns the first error in owner order.
template <typename Item>
absl::Status RunOnOwners(std::map<size_t, std::vector<Item>>& items_of, const std::vector<WorkerClient*>& workers,
                         const std::vector<size_t>& alive, const std::function<void(WorkerClient&, Item&)>& run,
                         std::vector<size_t>& lost) {
  std::map<size_t, std::vector<Item*>> to_run;
  for (auto& [owner, items] : items_of)
    for (Item& item : items) to_run[owner].push_back(&item);
  while (!to_run.empty()) {
    std::vector<std::thread> threads;
    for (auto& [owner, items] : to_run)
      threads.emplace_back([&run, worker = workers[owner], owned = &items] {
        for (Item* item : *owned) run(*worker, *item);
      });
    for (std::thread& t : threads) t.join();
    std::vector<Item*> redo;
    for (const auto& [owner, items] : to_run)
      for (Item* item : items)
        if (absl::IsUnavailable(StatusOf(*item))) {
          if (std::find(lost.begin(), lost.end(), owner) == lost.end()) lost.push_back(owner);
          redo.push_back(item);
        }
    std::vector<size_t> survivors;
    for (size_t w : alive)
      if (std::find(lost.begin(), lost.end(), w) == lost.end()) survivors.push_back(w);
    to_run.clear();
    if (survivors.empty()) break;
    for (size_t k = 0; k < redo.size(); ++k) to_run[survivors[k % survivors.size()]].push_back(redo[k]);
  }
  for (const auto& [owner, items] : items_of)
    for (const Item& item : items)
      if (!StatusOf(item).ok()) return StatusOf(item);
  return absl::OkStatus();
}

uint64_t SizeOf(const std::map<std::string, uint64_t>& sizes, const std::string& linear) {
  return sizes.count(linear) ? sizes.at(linear) : uint64_t{1};
}

// What one worker solves of a group after its shared part.
struct Share {
  std::vector<std::string> linears;
  std::vector<HeadRange> heads;
  uint64_t load = 0;
};

// Which of the live workers solves each of `linears` (by position): largest first, each to the
// least loaded, ties to the first from position `first` on. Equal sizes go round robin.
std::map<size_t, Share> Balance(const std::vector<std::string>& linears, const std::map<std::string, uint64_t>& sizes,
                                const std::vector<size_t>& alive, size_t first) {
  std::vector<size_t> order(linears.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return SizeOf(sizes, linears[a]) > SizeOf(sizes, linears[b]); });
  std::vector<uint64_t> load(alive.size(), 0);  // by rotation position from `first`
  std::vector<size_t> owner_of(linears.size());
  for (size_t k : order) {
    size_t best = 0;
    for (size_t j = 1; j < alive.size(); ++j)
      if (load[j] < load[best]) best = j;
    load[best] += SizeOf(sizes, linears[k]);
    owner_of[k] = alive[(first + best) % alive.size()];
  }
  std::map<size_t, Share> share_of;  // each owner's in group order
  for (size_t k = 0; k < linears.size(); ++k) {
    share_of[owner_of[k]].linears.push_back(linears[k]);
    share_of[owner_of[k]].load += SizeOf(sizes, linears[k]);
  }
  return share_of;
}

// The group's heads (a linear that does not split counts as one piece) in group order, cut into
// one contiguous run per worker from position `first` on: a piece goes to the worker in whose
// equal share of the total size its middle lies.
std::map<size_t, Share> SplitByHead(const std::vector<std::string>& linears, const std::map<std::string, uint64_t>& sizes,
                                    const std::map<std::string, int>& heads, const std::vector<size_t>& alive,
                                    size_t first) {
  uint64_t total = 0;
  for (const std::string& l : linears) total += SizeOf(sizes, l);
  const uint64_t n = alive.size();
  std::map<size_t, Share> share_of;
  uint64_t before = 0;
  for (const std::string& l : linears) {
    const int count = heads.count(l) ? heads.at(l) : 0;
    const uint64_t size = SizeOf(sizes, l);
    for (int h = 0; h < std::max(count, 1); ++h) {
      const uint64_t piece = count > 0 ? size / count : size;
      const size_t owner = alive[(first + (2 * before + piece) * n / (2 * total)) % n];
      before += piece;
      Share& share = share_of[owner];
      share.load += piece;
      if (count == 0) {
        share.linears.push_back(l);
      } else if (!share.heads.empty() && share.heads.back().linear == l &&
                 share.heads.back().first + share.heads.back().count == h) {
        ++share.heads.back().count;
      } else {
        share.heads.push_back({l, h, 1});
      }
    }
  }
  return share_of;
}

uint64_t MaxLoad(const std::map<size_t, Share>& share_of) {
  uint64_t most = 0;
  for (const auto& [owner, share] : share_of) most = std::max(most, share.load);
  return most;
}

// Who solves what of a group after its shared part: nothing split (one worker, a method that
// solves groups whole, or one linear that does not split), whole linears balanced by size, or
// runs of heads where those balance better.
std::map<size_t, Share> SharesOf(const std::vector<std::string>& quantized, const std::map<std::string, uint64_t>& sizes,
                                 const std::map<std::string, int>* heads, const MethodRegistration& method,
                                 const std::vector<size_t>& alive, size_t first) {
  if (!(method.independent_linears || method.independent_after_shared) || alive.size() <= 1) return {};
  std::map<size_t, Share> share_of = Balance(quantized, sizes, alive, first);
  bool by_head = false;
  if (method.independent_after_shared && heads != nullptr)
    for (const std::string& l : quantized) by_head = by_head || heads->count(l);
  if (by_head)
    if (std::map<size_t, Share> runs = SplitByHead(quantized, sizes, *heads, alive, first);
        MaxLoad(runs) < MaxLoad(share_of))
      return runs;
  return share_of;
}

}  // namespace

size_t OwnerOf(int layer, int group, size_t groups, const std::vector<size_t>& alive) {
  return alive[(static_cast<size_t>(layer) * groups + group) % alive.size()];
}

GroupSplit SplitOfGroup(const std::vector<std::string>& quantized, const std::map<std::string, uint64_t>& sizes,
                        const std::map<std::string, int>* heads, const MethodRegistration& method, size_t workers) {
  std::vector<size_t> alive(workers);
  for (size_t w = 0; w < workers; ++w) alive[w] = w;
  const std::map<size_t, Share> share_of = SharesOf(quantized, sizes, heads, method, alive, 0);
  GroupSplit split;
  if (share_of.size() <= 1) return split;
  split.part_owners = share_of.size();
  for (const auto& [owner, share] : share_of) split.by_head = split.by_head || !share.heads.empty();
  return split;
}

SolvedGroups SolveOnOwners(const OwnerSolves& r, const std::vector<int>& to_solve) {
  const std::vector<std::vector<std::string>>& groups = *r.groups;
  std::map<size_t, std::vector<SharedPart>> shared_of;  // by owner
  std::map<size_t, std::vector<Part>> parts_of;         // by owner
  for (int g : to_solve) {
    const size_t first = static_cast<size_t>(r.layer) * groups.size() + g;
    std::vector<std::string> quantized;
    for (const std::string& linear : groups[g])
      if (!r.skipped->count(linear)) quantized.push_back(linear);
    std::map<size_t, Share> share_of = SharesOf(quantized, *r.sizes, r.heads, *r.method, r.alive, first);
    const size_t owner = OwnerOf(r.layer, g, groups.size(), r.alive);
    if (share_of.size() <= 1) {  // one worker, or nothing to split
      parts_of[owner].push_back({.group = g});
      continue;
    }
    if (r.method->independent_after_shared) shared_of[owner].push_back({.group = g});
    for (auto& [part_owner, share] : share_of) {
      if (!share.linears.empty()) parts_of[part_owner].push_back({.group = g, .linears = std::move(share.linears)});
      if (!share.heads.empty()) parts_of[part_owner].push_back({.group = g, .heads = std::move(share.heads)});
    }
  }
  const auto statistics = [&](int g) { return r.statistics == nullptr ? nullptr : &(*r.statistics)[g]; };

  SolvedGroups solved;
  std::map<int, GroupSolution>& joined = solved.solutions;
  // The shared parts first; their rewrites open the group's solution (as in one owner's solve)
  // and the rest goes to the owners of the group's linears.
  solved.status = RunOnOwners<SharedPart>(
      shared_of, *r.workers, r.alive,
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
      parts_of, *r.workers, r.alive,
      [&](WorkerClient& w, Part& p) {
        if (p.heads.empty()) {
          p.solution = w.Solve(p.group, p.linears, statistics(p.group), p.shared);
          return;
        }
        auto heads = w.SolveHeads(p.group, p.heads, statistics(p.group), *p.shared);
        p.solution = heads.ok() ? absl::StatusOr<GroupSolution>(GroupSolution()) : heads.status();
        if (heads.ok()) p.solved_heads = std::move(*heads);
      },
      solved.lost);
  // The third step of a head split: each linear's parts joined (a pure function, on the runner).
  std::map<int, std::vector<HeadsPart>> heads_of;
  std::map<int, std::map<std::string, int>> split_of;  // each group's linears split by head
  for (auto& [owner, parts] : parts_of)
    for (Part& part : parts) {
      for (const HeadRange& range : part.heads) split_of[part.group][range.linear] = r.heads->at(range.linear);
      if (part.solution.ok())
        for (HeadsPart& h : part.solved_heads) heads_of[part.group].push_back(std::move(h));
    }
  for (auto& [g, split] : split_of) {
    if (!solved.status.ok()) break;
    absl::StatusOr<GroupSolution> linears = JoinHeads(std::move(heads_of[g]), split);
    if (!linears.ok()) {
      solved.status = linears.status();
      break;
    }
    bool placed = false;  // the group's joined linears go into one of its head parts
    for (auto& [owner, owned] : parts_of)
      for (Part& part : owned)
        if (!placed && part.group == g && !part.heads.empty()) {
          part.solution = std::move(*linears);
          placed = true;
        }
  }
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
