// qshard_emulated_schedule_check: the orders of QSHARD_EMULATED_SCHEDULE (emulated_schedule.h)
// on kernels whose answers are known: a race between a block's threads and a floating-point
// atomic sum give one answer forward and another in reverse, and `compare` stops the program
// naming each; their correct twins (a barrier; integer atomics) pass `compare` with the right
// answer; and a kernel's wild write still ends the program as a segmentation fault under
// `compare`, whose handler passes on what is not a device page. Each case runs in a child process, which sets the schedule before its first CUDA
// call (the emulation reads it once). Exit status: 0 all passed, 1 a check failed.
#include <cuda_runtime_api.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kThreads = 64;

// Thread t writes its slot, then reads its neighbour's without a barrier: a race.
__global__ void NeighbourWithoutBarrierKernel(int* out) {
  __shared__ int slots[kThreads];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  out[threadIdx.x] = slots[(threadIdx.x + 1) % kThreads];
}

__global__ void NeighbourKernel(int* out) {
  __shared__ int slots[kThreads];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  __syncthreads();
  out[threadIdx.x] = slots[(threadIdx.x + 1) % kThreads];
}

// Block b adds terms[b] into one float: 1 + 1e8 − 1e8 is 0 in that order and 1 in reverse.
__global__ void FloatAtomicSumKernel(const float* terms, float* sum) {
  if (threadIdx.x == 0) atomicAdd(sum, terms[blockIdx.x]);
}

__global__ void IntegerAtomicSumKernel(const int* terms, int* sum) {
  if (threadIdx.x == 0) atomicAdd(sum, terms[blockIdx.x]);
}

__global__ void WriteThroughNullKernel(int* out) {
  if (threadIdx.x == 0) out[0] = 1;
}

template <typename T>
std::vector<T> RunOnDevice(const std::vector<T>& input, size_t outputs, const std::function<void(const T*, T*)>& launch) {
  T *in = nullptr, *out = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&in), input.size() * sizeof(T));
  cudaMalloc(reinterpret_cast<void**>(&out), outputs * sizeof(T));
  cudaMemcpy(in, input.data(), input.size() * sizeof(T), cudaMemcpyHostToDevice);
  cudaMemset(out, 0, outputs * sizeof(T));
  launch(in, out);
  std::vector<T> result(outputs);
  cudaMemcpy(result.data(), out, outputs * sizeof(T), cudaMemcpyDeviceToHost);
  cudaFree(in);
  cudaFree(out);
  return result;
}

// Prints what a case's kernel left, for the parent to read.
void NeighbourCase(bool barrier) {
  const std::vector<int> out = RunOnDevice<int>({0}, kThreads, [&](const int*, int* o) {
    if (barrier) {
      NeighbourKernel<<<1, kThreads>>>(o);
    } else {
      NeighbourWithoutBarrierKernel<<<1, kThreads>>>(o);
    }
  });
  for (int v : out) std::printf("%d ", v);
}

void FloatSumCase() {
  const std::vector<float> sum = RunOnDevice<float>({1.0f, 1e8f, -1e8f}, 1, [](const float* terms, float* s) {
    FloatAtomicSumKernel<<<3, 32>>>(terms, s);
  });
  std::printf("%g", sum[0]);
}

void IntegerSumCase() {
  const std::vector<int> sum = RunOnDevice<int>({1, 100000000, -100000000}, 1, [](const int* terms, int* s) {
    IntegerAtomicSumKernel<<<3, 32>>>(terms, s);
  });
  std::printf("%d", sum[0]);
}

void WildWriteCase() {
  RunOnDevice<int>({0}, 1, [](const int*, int*) { WriteThroughNullKernel<<<1, 32>>>(nullptr); });
}

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string out, err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs `body` in a child process under `schedule`, capturing its output.
Outcome RunChild(const char* schedule, const std::function<void()>& body) {
  const std::string out_path = "/tmp/qshard_schedule_check." + std::to_string(getpid()) + ".out";
  const std::string err_path = out_path.substr(0, out_path.size() - 4) + ".err";
  std::fflush(stdout);
  const pid_t child = fork();
  if (child == 0) {
    // stderr stays unbuffered: the emulation's message comes just before abort().
    if (!std::freopen(out_path.c_str(), "w", stdout) || !std::freopen(err_path.c_str(), "w", stderr)) _exit(3);
    std::setvbuf(stderr, nullptr, _IONBF, 0);
    setenv("QSHARD_EMULATED_SCHEDULE", schedule, 1);
    body();
    std::fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  Outcome o;
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  o.out = ReadFile(out_path);
  o.err = ReadFile(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return o;
}

int failures = 0;

void Expect(bool ok, const std::string& what, const Outcome& o) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) {
    std::printf("     exit %d, signal %d, out: %s\n     err: %s\n", o.exit_code, o.signal, o.out.c_str(), o.err.c_str());
    ++failures;
  }
}

bool Names(const Outcome& o, const std::string& kernel) {
  return o.signal == SIGABRT && o.err.find(kernel) != std::string::npos &&
         o.err.find("leaves different bytes when its blocks and threads run in reverse order") != std::string::npos;
}

}  // namespace

int main() {
  std::string expected_neighbours;
  for (int t = 0; t < kThreads; ++t) expected_neighbours += std::to_string((t + 1) % kThreads + 1) + " ";

  const Outcome race_forward = RunChild("forward", [] { NeighbourCase(false); });
  const Outcome race_reverse = RunChild("reverse", [] { NeighbourCase(false); });
  Expect(race_forward.exit_code == 0 && race_reverse.exit_code == 0 && race_forward.out != race_reverse.out,
         "a race between a block's threads reads other values forward and in reverse", race_forward);
  const Outcome race = RunChild("compare", [] { NeighbourCase(false); });
  Expect(Names(race, "NeighbourWithoutBarrierKernel"), "compare stops at the race, naming its kernel", race);
  const Outcome barrier = RunChild("compare", [] { NeighbourCase(true); });
  Expect(barrier.exit_code == 0 && barrier.out == expected_neighbours, "with the barrier, compare passes: the right values",
         barrier);

  const Outcome sum_forward = RunChild("forward", FloatSumCase);
  const Outcome sum_reverse = RunChild("reverse", FloatSumCase);
  Expect(sum_forward.out == "0" && sum_reverse.out == "1", "a float atomic sum follows the order of the blocks: 0 and 1",
         sum_forward);
  const Outcome sum = RunChild("compare", FloatSumCase);
  Expect(Names(sum, "FloatAtomicSumKernel"), "compare stops at the float atomic sum, naming its kernel", sum);
  const Outcome integer_sum = RunChild("compare", IntegerSumCase);
  Expect(integer_sum.exit_code == 0 && integer_sum.out == "1", "an integer atomic sum passes compare: 1", integer_sum);

  const Outcome wild = RunChild("compare", WildWriteCase);
  Expect(wild.signal == SIGSEGV || wild.err.find("AddressSanitizer: SEGV") != std::string::npos,
         "a write through a null pointer is still a segmentation fault under compare (or AddressSanitizer's report of one)",
         wild);
  const Outcome unknown = RunChild("sideways", [] { NeighbourCase(true); });
  Expect(unknown.signal == SIGABRT && unknown.err.find("use forward, reverse or compare") != std::string::npos,
         "an unknown schedule is refused, naming the three", unknown);

  std::printf(failures == 0 ? "ALL PASSED\n" : "SOME CHECKS FAILED\n");
  return failures == 0 ? 0 : 1;
}
