// The quantization job, one engine for embedded mode and the service: it validates the spec,
// opens the model, gives each worker its calibration shards, and walks the layers. Per layer
// and true-sequential group it gathers the workers' per-shard statistics, adds them in shard
// order, has the group's owners solve it (owner_solves.h), applies the solution on every worker
// and on its own copy of the layer (the stitcher's), and streams the finished layer into the
// checkpoint.
//
// Bytes depend on the spec only: shards are summed in a fixed order, owners are chosen from
// (layer, group) and the linears' sizes alone, and a group solved in parts joins into the
// solution one owner would return, so the worker count changes none of them.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/finished_layers.h"
#include "engine/job_observer.h"
#include "engine/job_spec.h"
#include "engine/worker_client.h"
#include "nlohmann/json.hpp"
#include "worker/device/cuda_device.h"
#include "worker/device/device.h"

namespace qshard {

// A finished layer, for progress displays and the service's WatchJob.
struct LayerProgress {
  int layer = 0;  // 0-based
  int layers = 0;
  double seconds = 0.0;  // this layer
  double elapsed = 0.0;  // the job so far
};

// What the job works on now, for the service's WatchJob: one step of a layer's group (or of
// the whole layer). Steps come in the model's order: per group calibrating, solving,
// propagating (sequential propagation), then the layer's propagation to the next layer's inputs.
// After the last layer, steps of the whole checkpoint (layer == layers, no linears): writing
// (what was not streamed with the layers: for FlattenQuant every layer; the configs, index and
// last shard put in place) and, when the spec asks, validating (on the runner or a worker).
enum class JobPhase { kCalibrating, kSolving, kPropagating, kRestoring, kWriting, kValidating };
struct ModuleProgress {
  int layer = 0;  // 0-based; the layer count for the checkpoint's steps
  int layers = 0;
  std::vector<std::string> linears;  // the quantized linears worked on; empty: the whole layer
  JobPhase phase = JobPhase::kCalibrating;
};

struct JobEvents {
  // The runner calls these on the thread that called RunJob, one at a time, never from the
  // threads it runs workers on: a callback needs no lock of its own (a test's log may append to
  // a vector).
  std::function<void(const std::string& line)> log = [](const std::string&) {};
  std::function<void(const LayerProgress&)> layer_done = [](const LayerProgress&) {};
  std::function<void(const ModuleProgress&)> module_started = [](const ModuleProgress&) {};
  // Once, when the workers have their shards (after a resume's replay too), with CUDA workers:
  // what each keeps on its device, the report's "device_plan" array (never called on the CPU).
  std::function<void(const nlohmann::json& plans)> device_plan = [](const nlohmann::json&) {};
  // Polled between groups; the job stops with CANCELLED and leaves no output behind.
  const std::atomic<bool>* cancelled = nullptr;
  // Where finished layers are kept so that a restarted job skips them; null: not kept.
  FinishedLayerStore* finished_layers = nullptr;
  // Told of solved linears and blocks, lost workers and redone layers; null: nobody watches.
  JobObserver* observer = nullptr;
};

// Where a job's final validation (validation.h) runs: in the runner's process on `device`
// (null: the CPU), or on one of the job's workers, on that worker's own device
// (WorkerClient::Validate) — for a coordinator without the GPUs its workers have.
struct ValidationSite {
  ValidationSite(CudaDevice* device = nullptr) : device(device) {}  // NOLINT: a device is a site
  // `kind`: the device kind it must run on, refused before the job starts when the job's
  // workers (all of one kind) are of another; unset: whatever the workers have.
  static ValidationSite OnWorker(std::optional<Device::Kind> kind = std::nullopt) {
    ValidationSite site;
    site.on_worker = true;
    site.worker_kind = kind;
    return site;
  }

  CudaDevice* device = nullptr;
  bool on_worker = false;
  std::optional<Device::Kind> worker_kind;
};

// Runs the job on `workers` (at least one) and returns its report, also written as
// quant_report.json beside the checkpoint. Every error names the flag, field or file at fault.
// The spec's validation, if any, runs at `validation`: a device that cannot run the checkpoint
// (CheckValidationRunsOnDevice) is refused before any work. On a worker, one lost while
// validating (UNAVAILABLE) hands it to the next live worker; when it fails the job fails, its
// checkpoint written but its report without "validation".
absl::StatusOr<nlohmann::json> RunJob(const JobSpec& spec, const std::vector<WorkerClient*>& workers,
                                      const JobEvents& events, const ValidationSite& validation = {});

// RunJob with one LocalWorker on `device`: `qshard quantize`. Refuses, before any work, a job
// whose plan (job_plan.h) does not fit this machine's memory, a job the device cannot run
// (PlanOnDevice) and a device that cannot be opened (OpenDevice), the validation's among them
// (named as --validate-device). The validation runs on `validation_device`, by default `device`.
absl::StatusOr<nlohmann::json> RunEmbeddedJob(const JobSpec& spec, const JobEvents& events,
                                              const Device& device = Device{},
                                              std::optional<Device> validation_device = std::nullopt);

}  // namespace qshard
