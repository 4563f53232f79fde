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

absl::StatusOr<std::vector<std::vector<GroupSolution>>> FinishedLayerDir::Load() {
  std::vector<std::vector<GroupSolution>> layers;
  for (int layer = 0; env_->FileExists(LayerPath(layer)); ++layer) {
    QSHARD_ASSIGN_OR_RETURN(const std::string bytes, env_->ReadFileToString(LayerPath(layer)));
    v1::LayerSolutions data;
    if (!data.ParseFromString(bytes)) break;
    absl::StatusOr<std::vector<GroupSolution>> solutions = wire::FromProto(data);
    if (!solutions.ok()) break;
    layers.push_back(std::move(*solutions));
  }
  return layers;
}

absl::Status FinishedLayerDir::Save(int layer, const std::vector<GroupSolution>& solutions) {
  QSHARD_RETURN_IF_ERROR(env_->CreateDirs(dir_));
  v1::LayerSolutions data;
  wire::ToProto(solutions, data);
  return WriteFileAtomically(LayerPath(layer), data.SerializeAsString(), env_);
}

int FinishedLayerDir::CountKept() {
  int layers = 0;
  while (env_->FileExists(LayerPath(layers))) ++layers;
  return layers;
}

absl::Status FinishedLayerDir::Remove() {
  if (!env_->IsDirectory(dir_)) return absl::OkStatus();
  return env_->RemoveDirRecursively(dir_);
}

}  // namespace qshard
