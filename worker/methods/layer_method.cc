#include "worker/methods/layer_method.h"

#include "absl/strings/str_cat.h"
#include "worker/methods/aespa_method.h"
#include "worker/methods/per_linear_method.h"
#include "worker/methods/zfold_method.h"

namespace qshard {

absl::StatusOr<std::unique_ptr<LayerMethod>> MakeLayerMethod(const MethodOptions& options) {
  if (options.method == "rtn" || options.method == "gptq") return MakePerLinearMethod(options);
  if (options.method == "zfold") return MakeZfoldMethod(options);
  if (options.method == "aespa") return MakeAespaMethod(options);
  return absl::InvalidArgumentError(
      absl::StrCat("--method '", options.method, "' is not one of rtn, gptq, zfold, aespa"));
}

}  // namespace qshard
