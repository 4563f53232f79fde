// Who solves what (engine/owner_solves.h), on scripted workers: groups go whole to their
// owner; independent linears and, after the owner's shared step, Z-Fold's and aespa's linears
// are balanced by size over the live workers, or aespa's q/k/v by head when that balances
// better; the parts join in the group's order, the shared rewrites first; a worker whose call
// is UNAVAILABLE is reported lost and only its parts are redone, by the survivors.
#include "engine/owner_solves.h"

#include <optional>

#include "core/status.h"
#include "gtest/gtest.h"

namespace qshard {
namespace {

// Answers solves with one-code linears named as asked (in the caller's order), and records
// what it was asked. Every other call is not expected here.
class ScriptedWorker : public WorkerClient {
 public:
  explicit ScriptedWorker(int id) : id_(id) {}

  absl::Status status;  // what its solves fail with, if not OK
  bool drops_heads = false;  // answers SolveHeads with no part
  std::vector<std::string> solved;  // "group:linear" (a whole group: "group:*"), in call order
  int shared_calls = 0;
  std::vector<std::optional<SharedGroupPart>> shared_seen;  // what each solve was given
  std::vector<std::string> heads_solved;  // "group:linear[first,end)", in call order

  absl::Status StartJob(const JobSpec&, int64_t, std::vector<int>) override { return Unexpected(); }
  absl::Status BeginLayer(int) override { return Unexpected(); }
  absl::Status AdoptShards(std::vector<int>) override { return Unexpected(); }
  absl::Status ReplayLayer(int, const std::vector<GroupSolution>&) override { return Unexpected(); }
  absl::StatusOr<std::vector<ShardStatistics>> CollectStatistics(const std::vector<int>&, bool) override {
    return Unexpected();
  }
  absl::Status Apply(int, const GroupSolution&) override { return Unexpected(); }
  absl::Status FinishLayer() override { return Unexpected(); }

  absl::StatusOr<GroupSolution> Solve(int group, const std::vector<std::string>& linears, const GroupStatistics*,
                                      const SharedGroupPart* shared) override {
    QSHARD_RETURN_IF_ERROR(status);
    shared_seen.push_back(shared != nullptr ? std::optional<SharedGroupPart>(*shared) : std::nullopt);
    GroupSolution solution;
    for (const std::string& linear : linears.empty() ? std::vector<std::string>{"*"} : linears) {
      solved.push_back(std::to_string(group) + ":" + linear);
      solution.linears[linear].codes = {id_};
      // Reports in reverse, so that the join has to order them.
      solution.reports.insert(solution.reports.begin(), LinearReport{.name = linear});
    }
    return solution;
  }

  // Each head one row of one column, one group: GPTQ code 1, learned code 2; the learned
  // rounding's loss is lower on every head but q's first, whose loss makes the whole q worse.
  absl::StatusOr<std::vector<HeadsPart>> SolveHeads(int group, const std::vector<HeadRange>& ranges,
                                                    const GroupStatistics*, const SharedGroupPart&) override {
    QSHARD_RETURN_IF_ERROR(status);
    std::vector<HeadsPart> parts;
    for (const HeadRange& range : ranges) {
      heads_solved.push_back(std::to_string(group) + ":" + range.linear + "[" + std::to_string(range.first) + "," +
                             std::to_string(range.first + range.count) + ")");
      if (drops_heads) continue;
      HeadsPart& part = parts.emplace_back();
      part.linear = range.linear;
      part.first = range.first;
      QuantizedWeight& w = part.weight;
      w.bits = 2;
      w.rows = range.count;
      w.cols = 1;
      w.codes.assign(range.count, 1);
      w.scales = Tensor({1, range.count});
      w.zeros.assign(range.count, 0);
      w.g_idx = {0};
      part.learned_codes.assign(range.count, 2);
      for (int h = range.first; h < range.first + range.count; ++h) {
        part.losses.push_back(1.0);
        part.learned_losses.push_back(range.linear == "q" && h == 0 ? 100.0 : 0.5);
      }
      part.error = range.count;
      part.learned_error = range.count / 2.0;
      part.reference = 10.0 * range.count;
      part.report.name = range.linear;
    }
    return parts;
  }

  absl::StatusOr<SharedGroupPart> SolveShared(int group, const GroupStatistics*) override {
    QSHARD_RETURN_IF_ERROR(status);
    ++shared_calls;
    SharedGroupPart shared;
    shared.rewrites.push_back({TensorRewrite::Target::kNorm, "norm of group " + std::to_string(group), Tensor({1}, {1.0f})});
    shared.column_scale = {0.5f};
    return shared;
  }

 private:
  static absl::Status Unexpected() { return absl::InternalError("not expected in this test"); }
  int id_;
};

const MethodRegistration& Method(std::string_view name) { return **FindMethod(name); }

struct Fixture {
  std::vector<std::vector<std::string>> groups = {{"q", "k", "v"}, {"o"}, {"gate", "up"}, {"down"}};
  // Four query heads for two KV heads: q is twice k and v.
  std::map<std::string, uint64_t> sizes = {{"q", 8}, {"k", 4}, {"v", 4}, {"o", 8}, {"gate", 6}, {"up", 6}, {"down", 6}};
  std::set<std::string> skipped;
  std::map<std::string, int> heads;  // none split unless a test says so
  std::vector<std::unique_ptr<ScriptedWorker>> scripted;
  std::vector<WorkerClient*> workers;

  explicit Fixture(int count) {
    for (int i = 0; i < count; ++i) workers.push_back(scripted.emplace_back(std::make_unique<ScriptedWorker>(i)).get());
  }
  SolvedGroups Solve(std::string_view method, int layer, const std::vector<int>& to_solve, std::vector<size_t> alive) {
    OwnerSolves request;
    request.layer = layer;
    request.groups = &groups;
    request.skipped = &skipped;
    request.sizes = &sizes;
    request.heads = &heads;
    request.method = &Method(method);
    request.workers = &workers;
    request.alive = std::move(alive);
    return SolveOnOwners(request, to_solve);
  }
};

TEST(OwnerSolvesTest, AespaSharesOnTheOwnerThenBalancesTheLinearsBySize) {
  Fixture f(3);
  // Layer 1, group 0: the owner is worker (1·4 + 0) mod 3 = 1.
  SolvedGroups solved = f.Solve("aespa", 1, {0}, {0, 1, 2});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(f.scripted[1]->shared_calls, 1);
  EXPECT_EQ(f.scripted[0]->shared_calls + f.scripted[2]->shared_calls, 0);
  // q (the largest) on the owner, k and v on the next two.
  EXPECT_EQ(f.scripted[1]->solved, std::vector<std::string>{"0:q"});
  EXPECT_EQ(f.scripted[2]->solved, std::vector<std::string>{"0:k"});
  EXPECT_EQ(f.scripted[0]->solved, std::vector<std::string>{"0:v"});
  for (const auto& worker : f.scripted) {
    ASSERT_EQ(worker->shared_seen.size(), 1u);
    ASSERT_TRUE(worker->shared_seen[0].has_value());
    EXPECT_EQ(worker->shared_seen[0]->column_scale, std::vector<float>{0.5f});
    EXPECT_TRUE(worker->shared_seen[0]->rewrites.empty());  // the rewrites stay with the runner
  }
  const GroupSolution& joined = solved.solutions.at(0);
  ASSERT_EQ(joined.rewrites.size(), 1u);
  EXPECT_EQ(joined.rewrites[0].name, "norm of group 0");
  EXPECT_EQ(joined.linears.at("q").codes, std::vector<int32_t>{1});
  EXPECT_EQ(joined.linears.at("k").codes, std::vector<int32_t>{2});
  EXPECT_EQ(joined.linears.at("v").codes, std::vector<int32_t>{0});
  std::vector<std::string> order;
  for (const LinearReport& r : joined.reports) order.push_back(r.name);
  EXPECT_EQ(order, (std::vector<std::string>{"q", "k", "v"}));

  // On two workers, k and v (together as large as q) share the second.
  Fixture two(2);
  ASSERT_TRUE(two.Solve("aespa", 0, {0}, {0, 1}).status.ok());
  EXPECT_EQ(two.scripted[0]->solved, std::vector<std::string>{"0:q"});
  EXPECT_EQ(two.scripted[1]->solved, (std::vector<std::string>{"0:k", "0:v"}));
}

TEST(OwnerSolvesTest, OneLinearOrOneWorkerSolvesTheGroupWhole) {
  Fixture f(2);
  f.skipped = {"up"};
  SolvedGroups solved = f.Solve("aespa", 0, {1}, {0, 1});  // o alone
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  solved = f.Solve("aespa", 0, {2}, {0, 1});  // gate, up skipped
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(f.scripted[1]->solved, std::vector<std::string>{"1:*"});
  EXPECT_EQ(f.scripted[0]->solved, std::vector<std::string>{"2:*"});
  EXPECT_EQ(f.scripted[0]->shared_calls + f.scripted[1]->shared_calls, 0);
  ASSERT_EQ(f.scripted[0]->shared_seen.size(), 1u);
  EXPECT_FALSE(f.scripted[0]->shared_seen[0].has_value());

  Fixture one(3);  // only worker 2 is alive
  ASSERT_TRUE(one.Solve("zfold", 0, {0}, {2}).status.ok());
  EXPECT_EQ(one.scripted[2]->solved, std::vector<std::string>{"0:*"});
  EXPECT_EQ(one.scripted[2]->shared_calls, 0);
}

TEST(OwnerSolvesTest, IndependentLinearsNeedNoSharedStepAndEqualSizesGoRoundRobin) {
  Fixture f(3);
  SolvedGroups solved = f.Solve("gptq", 0, {2, 3}, {0, 1, 2});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  // gate/up from the owner of group 2 (worker 2) on; down to the owner of group 3 (worker 0).
  EXPECT_EQ(f.scripted[2]->solved, std::vector<std::string>{"2:gate"});
  EXPECT_EQ(f.scripted[0]->solved, (std::vector<std::string>{"2:up", "3:*"}));
  EXPECT_EQ(f.scripted[0]->shared_calls + f.scripted[1]->shared_calls + f.scripted[2]->shared_calls, 0);
  EXPECT_EQ(solved.solutions.size(), 2u);
}

TEST(OwnerSolvesTest, AWorkerLostSolvingHasOnlyItsPartsRedoneByTheSurvivors) {
  Fixture f(3);
  f.scripted[2]->status = absl::UnavailableError("gone");
  // Layer 0, group 0: the owner is worker 0: q there, k on worker 1, v on worker 2 (lost).
  SolvedGroups solved = f.Solve("aespa", 0, {0}, {0, 1, 2});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(solved.lost, std::vector<size_t>{2});
  EXPECT_EQ(f.scripted[0]->solved, (std::vector<std::string>{"0:q", "0:v"}));  // v redone there
  EXPECT_EQ(f.scripted[1]->solved, std::vector<std::string>{"0:k"});            // k solved once
  EXPECT_EQ(f.scripted[0]->shared_calls, 1);
  EXPECT_EQ(solved.solutions.at(0).linears.at("v").codes, std::vector<int32_t>{0});

  // The owner lost in the shared step: a survivor does it, then the linears go on.
  Fixture g(2);
  g.scripted[0]->status = absl::UnavailableError("gone");
  solved = g.Solve("aespa", 0, {0}, {0, 1});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(solved.lost, std::vector<size_t>{0});
  EXPECT_EQ(g.scripted[1]->shared_calls, 1);
  EXPECT_EQ(g.scripted[1]->solved, (std::vector<std::string>{"0:k", "0:v", "0:q"}));  // its own, then the redo

  // No survivor: UNAVAILABLE, nothing joined.
  Fixture h(2);
  for (auto& worker : h.scripted) worker->status = absl::UnavailableError("gone");
  solved = h.Solve("aespa", 0, {0}, {0, 1});
  EXPECT_EQ(solved.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(solved.lost, (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(solved.solutions.empty());
}

// q (4 heads) and k, v (2 KV heads each): 8 heads of one size, cut into contiguous runs from
// the owner on when that beats whole linears; the join keeps the GPTQ rounding for q (its
// first head's learned loss outweighs the others') and the learned one for k and v.
TEST(OwnerSolvesTest, AespaSplitsByHeadWhenThatBalancesBetter) {
  Fixture f(3);
  f.heads = {{"q", 4}, {"k", 2}, {"v", 2}};
  // Layer 1, group 0: the owner is worker 1; runs of 3, 2 and 3 heads (by their middles).
  SolvedGroups solved = f.Solve("aespa", 1, {0}, {0, 1, 2});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(f.scripted[1]->heads_solved, std::vector<std::string>{"0:q[0,3)"});
  EXPECT_EQ(f.scripted[2]->heads_solved, (std::vector<std::string>{"0:q[3,4)", "0:k[0,1)"}));
  EXPECT_EQ(f.scripted[0]->heads_solved, (std::vector<std::string>{"0:k[1,2)", "0:v[0,2)"}));
  for (const auto& worker : f.scripted) EXPECT_TRUE(worker->solved.empty());
  EXPECT_EQ(f.scripted[1]->shared_calls, 1);
  const GroupSolution& joined = solved.solutions.at(0);
  ASSERT_EQ(joined.rewrites.size(), 1u);
  EXPECT_EQ(joined.linears.at("q").codes, std::vector<int32_t>(4, 1));
  EXPECT_EQ(joined.linears.at("k").codes, std::vector<int32_t>(2, 2));
  EXPECT_EQ(joined.linears.at("v").codes, std::vector<int32_t>(2, 2));
  EXPECT_EQ(joined.linears.at("q").scales.dim(1), 4);
  std::vector<std::string> order;
  for (const LinearReport& r : joined.reports) order.push_back(r.name);
  EXPECT_EQ(order, (std::vector<std::string>{"q", "k", "v"}));
  EXPECT_DOUBLE_EQ(joined.reports[0].relative_error, 0.1);   // GPTQ's: 4 / 40
  EXPECT_DOUBLE_EQ(joined.reports[1].relative_error, 0.05);  // learned: 1 / 20

  // Two workers: q | k + v is as good as any run of heads, so the linears stay whole.
  Fixture two(2);
  two.heads = f.heads;
  ASSERT_TRUE(two.Solve("aespa", 0, {0}, {0, 1}).status.ok());
  EXPECT_EQ(two.scripted[0]->solved, std::vector<std::string>{"0:q"});
  EXPECT_TRUE(two.scripted[0]->heads_solved.empty() && two.scripted[1]->heads_solved.empty());

  // Five workers: runs of 1 to 2 heads, every worker busy; one lost has its run redone.
  Fixture five(5);
  five.heads = f.heads;
  five.scripted[3]->status = absl::UnavailableError("gone");
  solved = five.Solve("aespa", 0, {0}, {0, 1, 2, 3, 4});
  ASSERT_TRUE(solved.status.ok()) << solved.status;
  EXPECT_EQ(solved.lost, std::vector<size_t>{3});
  // Runs of 2, 1, 2, 1, 2 heads from worker 0; worker 3's k[1,2) redone by worker 0.
  EXPECT_EQ(five.scripted[0]->heads_solved, (std::vector<std::string>{"0:q[0,2)", "0:k[1,2)"}));
  EXPECT_EQ(five.scripted[1]->heads_solved, std::vector<std::string>{"0:q[2,3)"});
  EXPECT_EQ(five.scripted[2]->heads_solved, (std::vector<std::string>{"0:q[3,4)", "0:k[0,1)"}));
  EXPECT_TRUE(five.scripted[3]->heads_solved.empty());
  EXPECT_EQ(five.scripted[4]->heads_solved, std::vector<std::string>{"0:v[0,2)"});
  EXPECT_EQ(solved.solutions.at(0).linears.at("v").codes, std::vector<int32_t>(2, 2));

  // Heads that do not come back are refused at the join, and nothing is joined.
  Fixture bad(3);
  bad.heads = f.heads;
  bad.scripted[0]->drops_heads = true;  // k[1,2) and all of v
  solved = bad.Solve("aespa", 1, {0}, {0, 1, 2});
  EXPECT_EQ(solved.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(solved.solutions.empty());
}

}  // namespace
}  // namespace qshard
