#include "coordinator/finished_layer_dir.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/atomic_file.h"
#include "core/status.h"
#include "remote/wire.h"

namespace qshard {

std::string FinishedLayerDir::LayerPath(int layer) const {
  return absl::StrFormat("%s/layer-%05d.pb", dir_, layer);
}

absl::StatusOr<std::vector<GroupSolution>> FinishedLayerDir::Load(int layer) {
  const std::string path = LayerPath(layer);
  QSHARD_ASSIGN_OR_RETURN(const std::string bytes, env_->ReadFileToString(path));
  v1::LayerSolutions data;
  if (!data.ParseFromString(bytes)) return absl::DataLossError(absl::StrCat(path, ": not a kept layer"));
  absl::StatusOr<std::vector<GroupSolution>> solutions = wire::FromProto(data);
  if (!solutions.ok()) return WithContext(solutions.status(), path);
  return solutions;
}

absl::StatusOr<int> FinishedLayerDir::CountKept() {
  int layers = 0;
  while (env_->FileExists(LayerPath(layers)) && Load(layers).ok()) ++layers;
  return layers;
}

absl::Status FinishedLayerDir::Save(int layer, const std::vector<GroupSolution>& solutions) {
  QSHARD_RETURN_IF_ERROR(env_->CreateDirs(dir_));
  v1::LayerSolutions data;
  wire::ToProto(solutions, data);
  return WriteFileAtomically(LayerPath(layer), data.SerializeAsString(), env_);
}

absl::Status FinishedLayerDir::Remove() {
  if (!env_->IsDirectory(dir_)) return absl::OkStatus();
  return env_->RemoveDirRecursively(dir_);
}

}  // namespace qshard
