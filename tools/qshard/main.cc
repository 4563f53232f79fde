// qshard: one program with subcommands (conventions.md, "Command line").
#include <iostream>

#include "core/large_buffers.h"
#include "kernels/cpu/blas_core.h"
#include "tools/qshard/command.h"

namespace qshard::cli {

void PrintJson(const nlohmann::json& result) { std::cout << result.dump() << std::endl; }

}  // namespace qshard::cli

int main(int argc, char** argv) {
  using namespace qshard::cli;
  // OpenBLAS chose its kernels as it loaded; where it fell back below this CPU, start again with
  // the right ones (kernels/cpu/blas_core.h).
  qshard::kernels::RestartWithBlasKernelsForThisCpu(argv);
  qshard::KeepFreedBuffersForReuse();
  CLI::App app{"qshard: calibration and quantization of large language models"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  CommandList commands;
  RegisterInspect(app, commands);
  RegisterEval(app, commands);
  RegisterGenerate(app, commands);
  RegisterMakeSynthetic(app, commands);
  RegisterQuantize(app, commands);
  RegisterPlan(app, commands);
  RegisterHealth(app, commands);
  RegisterBench(app, commands);
  RegisterWorker(app, commands);
  RegisterCoordinator(app, commands);
  RegisterSubmit(app, commands);
  RegisterJobs(app, commands);
  CLI11_PARSE(app, argc, argv);

  for (const Command& command : commands) {
    if (!command.app->parsed()) continue;
    const absl::Status status = command.run();
    if (!status.ok()) {
      std::cerr << "qshard " << command.app->get_name() << ": error: " << status.message() << std::endl;
      return 1;
    }
    return 0;
  }
  return 1;
}
