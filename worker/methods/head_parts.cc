#include "worker/methods/head_parts.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "worker/methods/adaround_rounding.h"

namespace qshard {

Tensor RowsOf(const Tensor& t, int64_t first_row, int64_t rows) {
  Tensor out({rows, t.dim(1)});
  std::copy_n(t.row(first_row), rows * t.dim(1), out.row(0));
  return out;
}

QuantizedWeight RowsOf(const QuantizedWeight& w, int64_t first_row, int64_t rows) {
  QuantizedWeight out = w;
  out.rows = rows;
  out.codes.assign(w.codes.begin() + first_row * w.cols, w.codes.begin() + (first_row + rows) * w.cols);
  out.scales = Tensor({w.groups(), rows});
  out.zeros.resize(w.groups() * rows);
  for (int64_t g = 0; g < w.groups(); ++g) {
    std::copy_n(w.scales.row(g) + first_row, rows, out.scales.row(g));
    std::copy_n(w.zeros.data() + g * w.rows + first_row, rows, out.zeros.data() + g * rows);
  }
  return out;
}

namespace {

// The parts of one linear, in head order, covering heads [0, heads): one linear.
absl::StatusOr<QuantizedWeight> JoinLinear(const std::string& linear, int heads, std::vector<HeadsPart>& parts,
                                           LinearReport& report) {
  std::sort(parts.begin(), parts.end(), [](const HeadsPart& a, const HeadsPart& b) { return a.first < b.first; });
  std::vector<double> losses, learned_losses;
  const QuantizedWeight& front = parts.front().weight;
  const int64_t head_rows = front.rows / std::max<int64_t>(1, static_cast<int64_t>(parts.front().losses.size()));
  for (const HeadsPart& p : parts) {
    const QuantizedWeight& w = p.weight;
    const int64_t count = static_cast<int64_t>(p.losses.size());
    if (p.first != static_cast<int>(losses.size()) || count == 0 || p.learned_losses.size() != p.losses.size() ||
        w.rows != head_rows * count || w.cols != front.cols || w.bits != front.bits || w.groups() != front.groups() ||
        w.g_idx != front.g_idx || static_cast<int64_t>(w.codes.size()) != w.rows * w.cols ||
        p.learned_codes.size() != w.codes.size() || static_cast<int64_t>(w.zeros.size()) != w.groups() * w.rows ||
        w.scales.size() != w.groups() * w.rows)
      return absl::InvalidArgumentError(absl::StrCat(linear, ": the part of heads from ", p.first,
                                                     " does not fit the others (each head once, same grids)"));
    losses.insert(losses.end(), p.losses.begin(), p.losses.end());
    learned_losses.insert(learned_losses.end(), p.learned_losses.begin(), p.learned_losses.end());
  }
  if (static_cast<int>(losses.size()) != heads)
    return absl::InvalidArgumentError(absl::StrCat(linear, ": parts cover ", losses.size(), " of ", heads, " heads"));
  const bool learned = KeepLearned(losses, learned_losses);

  QuantizedWeight joined = front;
  joined.rows = 0;
  for (const HeadsPart& p : parts) joined.rows += p.weight.rows;
  joined.codes.clear();
  joined.scales = Tensor({front.groups(), joined.rows});
  joined.zeros.assign(front.groups() * joined.rows, 0);
  int64_t row = 0;
  double error = 0.0, reference = 0.0;
  report = parts.front().report;
  report.name = linear;
  report.seconds = 0.0;
  for (const HeadsPart& p : parts) {
    const QuantizedWeight& w = p.weight;
    const std::vector<int32_t>& codes = learned ? p.learned_codes : w.codes;
    joined.codes.insert(joined.codes.end(), codes.begin(), codes.end());
    for (int64_t g = 0; g < w.groups(); ++g) {
      std::copy_n(w.scales.row(g), w.rows, joined.scales.row(g) + row);
      std::copy_n(w.zeros.data() + g * w.rows, w.rows, joined.zeros.data() + g * joined.rows + row);
    }
    row += w.rows;
    error += learned ? p.learned_error : p.error;
    reference += p.reference;
    report.seconds += p.report.seconds;
  }
  report.relative_error = reference > 0.0 ? error / reference : 0.0;
  return joined;
}

}  // namespace

absl::StatusOr<GroupSolution> JoinHeads(std::vector<HeadsPart> parts, const std::map<std::string, int>& heads) {
  std::map<std::string, std::vector<HeadsPart>> by_linear;
  for (HeadsPart& p : parts) {
    if (!heads.count(p.linear))
      return absl::InvalidArgumentError(absl::StrCat("'", p.linear, "' is not a linear split by head here"));
    by_linear[p.linear].push_back(std::move(p));
  }
  GroupSolution solution;
  for (const auto& [linear, count] : heads) {
    std::vector<HeadsPart>& of_linear = by_linear[linear];
    if (of_linear.empty()) return absl::InvalidArgumentError(absl::StrCat(linear, ": no part of its heads came back"));
    LinearReport report;
    auto joined = JoinLinear(linear, count, of_linear, report);
    if (!joined.ok()) return joined.status();
    solution.linears.emplace(linear, std::move(*joined));
    solution.reports.push_back(report);
  }
  return solution;
}

}  // namespace qshard
