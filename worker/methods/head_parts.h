// The third step of a head-split solve (aespa's q/k/v on more workers than the group has
// linears): the parts of a linear, each some of its heads' rows under both roundings, become
// the one linear a whole solve gives. The learned rounding is kept only if the whole linear's
// loss — the heads' terms added in head order, as the whole solve adds them — is lower. No
// arithmetic but that sum and copies: the join is cheap and runs wherever the parts meet.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "worker/methods/layer_method.h"

namespace qshard {

// Rows [first_row, first_row + rows) of a tensor [rows, cols] and of a quantized weight.
Tensor RowsOf(const Tensor& t, int64_t first_row, int64_t rows);
QuantizedWeight RowsOf(const QuantizedWeight& w, int64_t first_row, int64_t rows);

// Joins the parts of each linear in `heads` (its number of heads: every linear split in this
// group); the parts of a linear must cover its heads once. The reports' relative error is Σ error / Σ reference over
// the parts (the whole solve's Gram sum runs over all rows at once: the last bits may differ).
absl::StatusOr<GroupSolution> JoinHeads(std::vector<HeadsPart> parts, const std::map<std::string, int>& heads);

}  // namespace qshard
