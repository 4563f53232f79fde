// qshard make-synthetic: a checkpoint with a published model's shapes and random weights.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "core/synthetic_model.h"
#include "tools/qshard/command.h"

namespace qshard::cli {
namespace {

struct SyntheticFlags {
  SyntheticSpec spec;
  std::string arch;
  int64_t layers = 0;
  std::string dtype = "f16";
  bool json = false;
};

absl::Status RunMakeSynthetic(SyntheticFlags& flags) {
  QSHARD_ASSIGN_OR_RETURN(SyntheticPreset preset, FindSyntheticPreset(flags.spec.preset));
  if (!flags.arch.empty() && flags.arch != ArchitectureName(preset.arch))
    return absl::InvalidArgumentError(absl::StrCat("--arch ", flags.arch, " does not match --preset ", preset.name,
                                                   " (", std::string(ArchitectureName(preset.arch)), ")"));
  if (flags.layers < 0) return absl::InvalidArgumentError("--layers must be positive");
  if (flags.layers > 0) flags.spec.num_layers = flags.layers;
  if (flags.dtype == "f16") {
    flags.spec.dtype = DType::kF16;
  } else if (flags.dtype == "bf16") {
    flags.spec.dtype = DType::kBF16;
  } else if (flags.dtype == "f32") {
    flags.spec.dtype = DType::kF32;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--dtype '", flags.dtype, "': f16, bf16 or f32"));
  }
  QSHARD_RETURN_IF_ERROR(WriteSyntheticModel(flags.spec));
  const int64_t layers = flags.spec.num_layers.value_or(preset.num_layers);
  if (flags.json) {
    PrintJson({{"out", flags.spec.out_dir}, {"preset", preset.name}, {"layers", layers}, {"dtype", flags.dtype}});
  } else {
    std::cout << "wrote " << preset.name << " (" << layers << " layers, " << flags.dtype << ") to "
              << flags.spec.out_dir << std::endl;
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterMakeSynthetic(CLI::App& root, CommandList& commands) {
  auto flags = std::make_shared<SyntheticFlags>();
  CLI::App* app = root.add_subcommand("make-synthetic", "Write a checkpoint with a real model's shapes, random weights");
  app->add_option("--arch", flags->arch, "opt | llama (must match the preset)");
  app->add_option("--preset", flags->spec.preset,
                  "opt-125m, opt-1.3b, opt-6.7b, opt-66b, opt-175b, llama-7b, llama-70b")->required();
  app->add_option("--layers", flags->layers, "Layers (default: the preset's)");
  app->add_option("--out", flags->spec.out_dir, "Output directory")->required();
  app->add_option("--seed", flags->spec.seed, "Seed of the weights")->capture_default_str();
  app->add_option("--dtype", flags->dtype, "f16 | bf16 | f32")->capture_default_str();
  app->add_option("--shared-data", flags->spec.shared_data_dir, "Shared data folder (tokenizer files)")
      ->capture_default_str();
  app->add_flag("--weight-outliers", flags->spec.weight_outliers,
                "Also outlier input columns (x10, 1%) in the attention-output and MLP-down weights");
  app->add_flag("--config-only", flags->spec.config_only, "Write config.json only, no weights (for `qshard plan`)");
  app->add_flag("--json", flags->json, "Print the result as one JSON object");
  commands.push_back({app, [flags] { return RunMakeSynthetic(*flags); }});
}

}  // namespace qshard::cli
