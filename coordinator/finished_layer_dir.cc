#include "coordinator/finished_layer_dir.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "remote/record_file.h"
#include "remote/wire.h"

namespace qshard {

std::string FinishedLayerDir::LayerPath(int layer) const {
  return absl::StrFormat("%s/layer-%05d.pb", dir_, layer);
}

absl::StatusOr<std::vector<GroupSolution>> FinishedLayerDir::Load(int layer) {
  const std::string path = LayerPath(layer);
  QSHARD_ASSIGN_OR_RETURN(auto file, RecordFileReader::Open(path, env_));
  std::vector<GroupSolution> solutions;
  for (;;) {
    QSHARD_ASSIGN_OR_RETURN(const std::optional<std::string_view> record, file->Next());
    if (!record) return solutions;
    v1::GroupSolutionData data;
    if (!data.ParseFromArray(record->data(), static_cast<int>(record->size())))
      return absl::DataLossError(absl::StrCat(path, ": group ", solutions.size(), " is not a group solution"));
    absl::StatusOr<GroupSolution> solution = wire::FromProto(data);
    if (!solution.ok()) return WithContext(solution.status(), absl::StrCat(path, ": group ", solutions.size()));
    solutions.push_back(*std::move(solution));
  }
}

absl::StatusOr<int> FinishedLayerDir::CountKept() {
  int layers = 0;
  while (env_->FileExists(LayerPath(layers)) && Load(layers).ok()) ++layers;
  return layers;
}

absl::Status FinishedLayerDir::Save(int layer, const std::vector<GroupSolution>& solutions) {
  QSHARD_RETURN_IF_ERROR(env_->CreateDirs(dir_));
  QSHARD_ASSIGN_OR_RETURN(auto file, RecordFileWriter::Create(LayerPath(layer), env_));
  for (size_t g = 0; g < solutions.size(); ++g) {
    v1::GroupSolutionData data;
    wire::ToProto(solutions[g], data);
    if (data.ByteSizeLong() > static_cast<size_t>(std::numeric_limits<int>::max()))
      return absl::ResourceExhaustedError(absl::StrCat("layer ", layer, " group ", g, ": its solution is ",
                                                       data.ByteSizeLong(), " bytes, over protobuf's 2 GiB limit"));
    QSHARD_RETURN_IF_ERROR(file->Add(data.SerializeAsString()));
  }
  return file->Commit();
}

absl::Status FinishedLayerDir::Remove() {
  if (!env_->IsDirectory(dir_)) return absl::OkStatus();
  return env_->RemoveDirRecursively(dir_);
}

}  // namespace qshard
