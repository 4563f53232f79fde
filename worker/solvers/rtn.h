// Round to nearest: every weight rounded onto a min-max (or MSE-clipped) grid fitted per
// output channel or per group of consecutive input columns. Needs no calibration data; the
// baseline every method is compared against.
#pragma once

#include <memory>

#include "worker/solvers/solver.h"

namespace qshard {

// act_order and static_groups do not apply (there is no column order to choose); a Hessian,
// when given, only feeds proxy_error.
std::unique_ptr<Solver> MakeRtnSolver(const QuantSpec& spec);

}  // namespace qshard
