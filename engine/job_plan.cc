#include "engine/job_plan.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "engine/calibration_shards.h"
#include "engine/owner_solves.h"
#include "engine/statistics_tree.h"
#include "worker/calibration/attention_stats.h"
#include "worker/methods/method_registry.h"
#include "worker/model/layer_spec.h"

namespace qshard {
namespace {

using nlohmann::json;

// A linear group of the layer: its input width and the linears the job quantizes in it.
struct GroupShape {
  int64_t width = 0;
  std::vector<LinearSpec> quantized;
};

// A linear's grids as the wire carries them (remote/wire.h): a float32 scale and an int32 zero
// per group and row.
uint64_t GridBytes(const LinearSpec& linear, int group_size) {
  const uint64_t groups = group_size > 0 ? (linear.in_features + group_size - 1) / group_size : 1;
  return 8 * groups * static_cast<uint64_t>(linear.out_features);
}

// One quantized linear: a byte per code, its grids, an int32 group index per input column, and
// per input column a float32 ζ (Z-Fold and aespa fold one into the producer) or an int32 layer
// input (FlattenQuant; the columns its flattening adds are not counted).
uint64_t SolutionBytes(const LinearSpec& linear, int group_size, const MethodRegistration& method) {
  const uint64_t rows = linear.out_features, cols = linear.in_features;
  const uint64_t per_column = 4 + (method.independent_after_shared ? 4 : 0) + (method.flattens_inputs ? 4 : 0);
  return rows * cols + GridBytes(linear, group_size) + per_column * cols;
}

uint64_t Square(int64_t k) { return static_cast<uint64_t>(k) * static_cast<uint64_t>(k); }

// One window's activations through a layer: the residual, the normed input and the attention
// output (3·hidden), the MLP's two intermediates (2·ffn), and aespa's probabilities.
uint64_t ForwardBytesPerWindow(const ModelConfig& config, int64_t seqlen, bool attention_probabilities) {
  const uint64_t L = seqlen, d = config.hidden_size, f = config.intermediate_size, h = config.num_heads;
  return 4 * L * (3 * d + 2 * f + (attention_probabilities ? h * L : 0));
}

// A worker's partial sums alive while it adds s shards into the shard tree: log₂ s + 1, plus
// the shard in progress (statistics_tree.h).
uint64_t PartialsAlive(int shards_held) {
  return static_cast<uint64_t>(std::ceil(std::log2(std::max(shards_held, 1)))) + 2;
}

}  // namespace

uint64_t MemoryPlan::total() const {
  uint64_t sum = 0;
  for (const MemoryTerm& term : terms) sum += term.bytes;
  return sum;
}

absl::StatusOr<JobPlan> PlanJob(const JobSpec& spec, const ModelConfig& config, int workers) {
  if (workers < 1) return absl::InvalidArgumentError("a plan needs at least one worker");
  const LayerSpec layer = DecoderLayerSpec(config);
  QSHARD_ASSIGN_OR_RETURN(const int64_t seqlen, ValidateJobSpecForModel(spec, config, layer));
  QSHARD_ASSIGN_OR_RETURN(const MethodRegistration* method, FindMethod(spec.method.method));
  const std::vector<std::string> skip = SkippedLinears(spec, layer);

  // The layer's parameters and its groups.
  std::map<std::string, LinearSpec> linears;
  std::map<std::string, uint64_t> sizes;
  std::map<std::string, int> heads;  // of the linears the method splits by head
  uint64_t layer_params = 0;
  for (const LinearSpec& l : layer.linears) {
    linears[l.name] = l;
    sizes[l.name] = static_cast<uint64_t>(l.out_features) * l.in_features;
    if (const int count = method->heads_of ? method->heads_of(config, spec.method, l.name) : 0; count > 0)
      heads[l.name] = count;
    layer_params += static_cast<uint64_t>(l.out_features) * l.in_features + (l.has_bias ? l.out_features : 0);
  }
  for (const NormSpec& norm : layer.norms) layer_params += norm.size;
  std::vector<GroupShape> groups;
  for (const std::vector<std::string>& names : layer.groups) {
    GroupShape& group = groups.emplace_back();
    group.width = linears[names.front()].in_features;
    for (const std::string& name : names)
      if (std::find(skip.begin(), skip.end(), name) == skip.end()) group.quantized.push_back(linears[name]);
  }

  const bool calibrated = method->needs.input_stats;
  const bool parallel = spec.calibration.propagation == Propagation::kParallel;
  const int shards = calibrated ? spec.calibration.shards : 0;
  const uint64_t d = config.hidden_size, f = config.intermediate_size;
  const uint64_t L = seqlen;
  const uint64_t B = ForwardBatchWindows(spec, config, seqlen, method->needs.attention_stats);
  const uint64_t embed_dim = config.arch == Architecture::kOpt ? config.word_embed_proj_dim : config.hidden_size;
  const uint64_t embeddings = 4 * config.vocab_size * embed_dim * (config.tie_word_embeddings ? 1 : 2);
  // aespa's attention statistics: a hidden × hidden float64 sum per key/value head.
  const uint64_t attention = method->needs.attention_stats ? 8 * config.num_kv_heads * Square(config.hidden_size) : 0;

  // The busiest worker, and the tree nodes each worker holds per group.
  uint64_t windows = 0, nodes = 0;
  std::vector<uint64_t> nodes_of(workers, 0);
  std::vector<int> busiest;
  for (int w = 0; w < workers && calibrated; ++w) {
    const std::vector<int> held = ShardsOfWorker(shards, workers, w);
    uint64_t held_windows = 0;
    for (int s : held) held_windows += ShardWindows(spec.calibration.nsamples, shards, s).count;
    if (held_windows > windows) {
      windows = held_windows;
      busiest = held;
    }
    nodes_of[w] = held.empty() ? 0 : HeldTreeNodes(held).size();
    nodes += nodes_of[w];
  }
  // Averaged over the layers: the nodes a group's owner pulls from its peers (it reads its own
  // from memory; owners rotate with the layer, owner_solves.h).
  std::vector<size_t> everyone(workers);
  for (int w = 0; w < workers; ++w) everyone[w] = w;
  const auto pulled_nodes_per_layer = [&](int group) {
    uint64_t pulled = 0;
    for (int l = 0; l < config.num_layers; ++l)
      pulled += nodes - nodes_of[OwnerOf(l, group, layer.groups.size(), everyone)];
    return static_cast<double>(pulled) / std::max<int64_t>(config.num_layers, 1);
  };

  // The statistics alive at once: one group at a time, or every group under parallel propagation.
  uint64_t squares_at_once = 0, widest = 0;
  for (const GroupShape& g : groups) {
    if (g.quantized.empty()) continue;
    squares_at_once = parallel ? squares_at_once + Square(g.width) : std::max(squares_at_once, Square(g.width));
    widest = std::max<uint64_t>(widest, g.width);
  }

  JobPlan plan;
  plan.workers = workers;
  plan.layers = static_cast<int>(config.num_layers);
  plan.seqlen = seqlen;
  plan.busiest_shards = busiest;
  const uint64_t copies = workers > 1 ? 2 : 1;  // a restartable worker keeps its layer inputs
  plan.worker.terms = {
      {"calibration hidden states", 4 * windows * L * d * copies},
      {"cached stage activation", 4 * windows * L * std::max(d, f)},
      // Activations of a batch through a layer; attention probabilities only where aespa's
      // statistics ask for them (otherwise the online softmax keeps one tile).
      {"forward batch",
       calibrated ? std::min(B, windows) * ForwardBytesPerWindow(config, seqlen, method->needs.attention_stats) : 0},
      {"layer weights (fp32)", 4 * layer_params},
      {"embeddings (fp32)", embeddings},
      {"partial statistics",
       calibrated ? (8 * squares_at_once + attention) * PartialsAlive(static_cast<int>(busiest.size())) : 0},
      {"solve workspace", calibrated ? 20 * Square(widest) : 4 * Square(widest)},
      // As a group's owner (or a solver of part of it), the reduced statistics, and while
      // reducing, one slice of each node pulled (remote/statistics_slices.h).
      {"reduced statistics (owner)", calibrated && workers > 1 ? 8 * squares_at_once + attention : 0},
      {"statistics slices in flight",
       calibrated && workers > 1 ? std::min<uint64_t>(kMaxStatisticsSliceBytes, 8 * Square(widest)) * (nodes + 1) : 0},
  };
  uint64_t quantized_params = 0, solution = 0, learned_codes = 0, shared = 0;
  double statistics = 0, attention_pulls = 0;
  for (const GroupShape& g : groups) {
    if (g.quantized.empty()) continue;
    for (const LinearSpec& l : g.quantized) {
      quantized_params += static_cast<uint64_t>(l.out_features) * l.in_features;
      solution += SolutionBytes(l, spec.method.spec.group_size, *method);
    }
    if (!calibrated) continue;
    // The group's owner pulls its peers' nodes and reduces them; each other worker solving a
    // part of the group (owner_solves.h; the owner solves the first) pulls the reduced sum from
    // it. A two-step solve's shared part runs on the owner and comes back as ζ (a scale per
    // input column, folded into a norm: the rewrite) and each linear's grids, which go out to
    // the part owners. Split by head, the runs of heads come back under both roundings: a
    // second code per weight.
    std::vector<std::string> names;
    for (const LinearSpec& l : g.quantized) names.push_back(l.name);
    const GroupSplit split = SplitOfGroup(names, sizes, &heads, *method, static_cast<size_t>(workers));
    const bool splits = split.part_owners > 1;
    const uint64_t part_owners = split.part_owners;
    for (const LinearSpec& l : g.quantized)
      if (split.by_head && heads.count(l.name)) learned_codes += sizes[l.name];
    const uint64_t owners = part_owners + (splits && method->independent_after_shared ? 1 : 0);
    const double pulls = pulled_nodes_per_layer(static_cast<int>(&g - &groups.front())) + (part_owners - 1);
    statistics += pulls * 8 * Square(g.width);
    if (&g == &groups.front()) attention_pulls = pulls;
    if (owners > part_owners) {
      uint64_t grids = 0;
      for (const LinearSpec& l : g.quantized) grids += GridBytes(l, spec.method.spec.group_size);
      shared += (4 * g.width + grids) * (1 + part_owners) + 4 * g.width;
    }
  }
  if (calibrated) statistics += attention_pulls * attention;  // the q/k/v group's
  plan.coordinator.terms = {
      // The runner opens the model without its embeddings and head (ModelParts::kLayers).
      {"stitcher's layer (fp32)", 4 * layer_params},
      // One worker: the in-process runner adds the partials (embedded mode). Several: the owners
      // do, and the coordinator holds no statistics.
      {"reduced statistics", calibrated && workers == 1 ? (8 * squares_at_once + attention) * (nodes + 1) : 0},
      // Finished layers stay in their store (the service's state dir); one is read back at a
      // time to replay it for adopted shards or restore it after a restart. Codes are int32.
      {"a kept layer (replay, restore)", 4 * quantized_params},
      // A method that changes the layers' input widths writes the checkpoint only at the end,
      // when every width is known, so it holds every quantized layer until then (the inputs
      // flattening adds, K/8 with `auto`, are not counted).
      {"quantized layers held to the end", method->flattens_inputs ? 4 * quantized_params * config.num_layers : 0},
  };
  plan.statistics_bytes = static_cast<uint64_t>(std::llround(statistics));
  plan.solution_bytes = solution * (1 + workers) + learned_codes + shared;
  return plan;
}

uint64_t AddKeptAttentionWindows(JobPlan& plan, const JobSpec& spec, const ModelConfig& config, int64_t value_heads) {
  if (value_heads >= config.num_kv_heads) return 0;
  int64_t windows = 0;  // the largest shard's
  for (int s = 0; s < spec.calibration.shards; ++s)
    windows = std::max(windows, ShardWindows(spec.calibration.nsamples, spec.calibration.shards, s).count);
  const uint64_t bytes = windows * AttentionWindowBytes(config, plan.seqlen);
  if (bytes > 0) plan.worker.terms.push_back({"kept attention windows", bytes});
  return bytes;
}

int64_t ForwardBatchWindows(const JobSpec& spec, const ModelConfig& config, int64_t seqlen,
                            bool attention_probabilities) {
  if (spec.execution.batch_windows > 0) return spec.execution.batch_windows;
  constexpr uint64_t kBudget = uint64_t{512} << 20;
  const uint64_t per_window = std::max<uint64_t>(1, ForwardBytesPerWindow(config, seqlen, attention_probabilities));
  return static_cast<int64_t>(std::clamp<uint64_t>(kBudget / per_window, 1, 64));
}

absl::StatusOr<JobPlan> PlanJobForModel(const JobSpec& spec, int workers) {
  QSHARD_ASSIGN_OR_RETURN(const ModelConfig config, LoadModelConfig(spec.model_dir));
  return PlanJob(spec, config, workers);
}

namespace {

json TermsJson(const MemoryPlan& memory) {
  json terms = json::object();
  for (const MemoryTerm& term : memory.terms) terms[term.name] = term.bytes;
  return {{"peak_bytes", memory.total()}, {"terms", terms}};
}

// "2.31 GB (calibration hidden states 1.20 GB, partial statistics 0.60 GB, ...)", largest first.
std::string Describe(const MemoryPlan& memory) {
  std::vector<MemoryTerm> terms = memory.terms;
  std::sort(terms.begin(), terms.end(), [](const MemoryTerm& a, const MemoryTerm& b) { return a.bytes > b.bytes; });
  std::vector<std::string> parts;
  for (const MemoryTerm& term : terms)
    if (term.bytes > 0 && parts.size() < 3) parts.push_back(absl::StrCat(term.name, " ", FormatBytes(term.bytes)));
  return absl::StrCat(FormatBytes(memory.total()), " (", absl::StrJoin(parts, ", "), ")");
}

}  // namespace

json JobPlan::ToJson() const {
  return {{"workers", workers},
          {"layers", layers},
          {"seqlen", seqlen},
          {"worker", TermsJson(worker)},
          {"coordinator", TermsJson(coordinator)},
          {"embedded_peak_bytes", embedded_peak()},
          {"network_bytes_per_layer", {{"statistics", statistics_bytes}, {"solutions", solution_bytes}}}};
}

absl::Status CheckPlanFits(const JobPlan& plan, uint64_t worker_memory, uint64_t coordinator_memory) {
  if (worker_memory > 0 && plan.worker.total() > worker_memory)
    return absl::ResourceExhaustedError(absl::StrCat(
        "the job needs about ", Describe(plan.worker), " on each of its ", plan.workers, " workers; the smallest has ",
        FormatBytes(worker_memory), " (--memory-budget). Use more workers, fewer --nsamples or a shorter --seqlen"));
  if (coordinator_memory > 0 && plan.coordinator.total() > coordinator_memory)
    return absl::ResourceExhaustedError(absl::StrCat("the job needs about ", Describe(plan.coordinator),
                                                     " on the coordinator, which has ", FormatBytes(coordinator_memory)));
  return absl::OkStatus();
}

absl::Status CheckEmbeddedPlanFits(const JobPlan& plan, uint64_t memory) {
  if (plan.embedded_peak() <= memory) return absl::OkStatus();
  MemoryPlan both = plan.worker;
  both.terms.insert(both.terms.end(), plan.coordinator.terms.begin(), plan.coordinator.terms.end());
  return absl::ResourceExhaustedError(absl::StrCat("the job needs about ", Describe(both), "; this machine has ",
                                                   FormatBytes(memory),
                                                   ". Use fewer --nsamples, a shorter --seqlen, or the service's workers"));
}

uint64_t PhysicalMemoryBytes() {
  return static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGE_SIZE));
}

}  // namespace qshard
