#include "worker/methods/method_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/methods/aespa_method.h"
#include "worker/methods/finequant_method.h"
#include "worker/methods/flattenquant_method.h"
#include "worker/methods/per_linear_method.h"
#include "worker/methods/zfold_method.h"

namespace qshard {
namespace {

constexpr MethodRegistration kMethods[] = {
    {.name = "rtn", .needs = {}, .independent_linears = true, .make = MakeRtnMethod},
    {.name = "gptq", .needs = {.input_stats = true}, .independent_linears = true, .make = MakeGptqMethod},
    {.name = "zfold",
     .needs = {.input_stats = true},
     .reads_zfold_options = true,
     .independent_after_shared = true,
     .make = MakeZfoldMethod},
    {.name = "aespa",
     .needs = {.input_stats = true, .attention_stats = true},
     .reads_zfold_options = true,
     .reads_adaround_options = true,
     .independent_after_shared = true,
     .make = MakeAespaMethod,
     .heads_of = AespaHeadsOf},
    {.name = "finequant", .needs = {}, .make = MakeFineQuantMethod, .group_size_of = FineQuantGroupSizeOf},
    {.name = "flattenquant",
     .needs = {.input_stats = true},
     .reads_flatten_options = true,
     .independent_linears = true,
     .flattens_inputs = true,
     .make = MakeFlattenQuantMethod},
};

}  // namespace

std::span<const MethodRegistration> RegisteredMethods() { return kMethods; }

absl::StatusOr<const MethodRegistration*> FindMethod(std::string_view name) {
  for (const MethodRegistration& method : kMethods)
    if (method.name == name) return &method;
  return absl::InvalidArgumentError(absl::StrCat("'", std::string(name), "' is not one of ", KnownMethodNames()));
}

std::string KnownMethodNames() {
  return absl::StrJoin(kMethods, ", ", [](std::string* out, const MethodRegistration& m) { out->append(m.name); });
}

}  // namespace qshard
