// Kernel launches in the host emulation of CUDA: every block in order (or in the order
// QSHARD_EMULATED_SCHEDULE says: emulated_schedule.h), its threads as fibers on the launching
// thread, switched at block and warp barriers. A barrier that can
// never be passed (some threads wait at __syncthreads while others wait at a warp operation)
// is the hang it would be on a device: the emulation reports the kernel and aborts.
#include <sys/mman.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/emulation/emulated_cuda.h"
#include "kernels/cuda/emulation/emulated_schedule.h"
#include "kernels/cuda/emulation/emulated_state.h"

#if !defined(__x86_64__)
#error "the host emulation of CUDA switches fibers with x86-64 code"
#endif

// Saves the callee-saved registers on the current stack, stores its pointer in *save, and
// resumes the stack at `load` (its registers, then its return address). ucontext's swapcontext
// would also save the signal mask, a system call per switch: most of an emulated kernel's time.
extern "C" void qshard_emu_switch(void** save, void* load);
asm(R"(
  .text
  .p2align 4
  .type qshard_emu_switch, @function
qshard_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size qshard_emu_switch, .-qshard_emu_switch
)");

// The bounds of the `__shared__` statics' section (emulated_cuda.h), which the linker defines
// in every program or library that has one; weak, for one that has none.
extern "C" unsigned char __start_qshard_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_qshard_emu_shared[] __attribute__((weak, visibility("hidden")));

namespace qshard_emu {
namespace {

constexpr size_t kStackBytes = size_t{256} << 10;
constexpr int kMaxBlockThreads = 1024;
constexpr size_t kDefaultDynamicShared = 48 << 10;
constexpr size_t kOptInDynamicShared = 227 << 10;  // an H100's opt-in limit

enum class FiberState { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct PendingCopy {
  void* shared;
  const void* global;
  bool valid;
};

struct Fiber {
  void* stack_pointer = nullptr;  // where qshard_emu_switch resumes it
  ThreadIds ids;
  int linear = 0;
  FiberState state = FiberState::kRunnable;
  void* stack = nullptr;             // taken from the launcher's free stacks when it first runs
  unsigned exchanges = 0;            // warp exchanges made: the slot bank of the next is its parity
  std::vector<PendingCopy> copies;   // cp.async copies not yet made, oldest first
  std::vector<size_t> group_ends;    // the end in `copies` of each committed group
};

struct Launcher {
  std::mutex mutex;  // one launch at a time: `__shared__` statics belong to the running block
  std::vector<void*> stacks;
  std::vector<void*> free_stacks;  // a finished thread's stack goes to the next: one hot stack for kernels without barriers
  std::vector<Fiber> fibers;
  std::vector<unsigned char> dynamic_shared;
  std::vector<unsigned char> warp_slots;  // two banks of 32 lanes × kWarpSlotBytes per warp
  std::map<const void*, size_t> max_dynamic_shared;
  void* scheduler = nullptr;
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
};

Launcher& TheLauncher() {
  static Launcher* launcher = new Launcher;
  return *launcher;
}

void Yield(FiberState state) {
  Launcher& l = TheLauncher();
  l.current->state = state;
  qshard_emu_switch(&l.current->stack_pointer, l.scheduler);
}

// A fiber's first frame: runs the kernel body for its thread and never returns.
[[noreturn]] void RunThread() {
  Launcher& l = TheLauncher();
  (*l.body)();
  l.current->state = FiberState::kDone;
  void* finished = nullptr;
  qshard_emu_switch(&finished, l.scheduler);
  __builtin_unreachable();
}

// A new fiber's stack as qshard_emu_switch leaves a suspended one: six registers, then the
// address `ret` jumps to, so that RunThread starts with the stack aligned as after a call.
void* NewFiberStack(void* stack) {
#if defined(__SANITIZE_ADDRESS__)
  // The thread that ran here last never returned from RunThread: its frames' redzones are
  // still poisoned, and AddressSanitizer would report this thread's frames inside them.
  ASAN_UNPOISON_MEMORY_REGION(stack, kStackBytes);
#endif
  auto top = reinterpret_cast<uintptr_t>(stack) + kStackBytes;
  top &= ~uintptr_t{15};
  auto* frame = reinterpret_cast<void**>(top - 8 * sizeof(void*));
  for (int r = 0; r < 6; ++r) frame[r] = nullptr;
  frame[6] = reinterpret_cast<void*>(&RunThread);
  frame[7] = nullptr;
  return frame;
}

void EnsureStacks(Launcher& l, size_t count) {
  while (l.stacks.size() < count) {
    void* stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulation: cannot map a fiber stack\n");
      std::abort();
    }
    l.stacks.push_back(stack);
  }
}

[[noreturn]] void Hang(const char* why, const dim3& block) {
  std::fprintf(stderr, "cuda emulation: block (%u, %u, %u) would hang on a device: %s\n", block.x, block.y, block.z,
               why);
  std::abort();
}

// Releases the barrier every live thread waits at, or every warp whose live lanes all wait at
// a warp barrier; false when no waiting thread can go on.
bool ReleaseBarriers(std::vector<Fiber>& fibers) {
  size_t live = 0, at_block = 0;
  for (const Fiber& f : fibers) {
    if (f.state == FiberState::kDone) continue;
    ++live;
    if (f.state == FiberState::kAtBlockBarrier) ++at_block;
  }
  if (live > 0 && at_block == live) {
    for (Fiber& f : fibers)
      if (f.state == FiberState::kAtBlockBarrier) f.state = FiberState::kRunnable;
    return true;
  }
  bool released = false;
  for (size_t warp_begin = 0; warp_begin < fibers.size(); warp_begin += 32) {
    const size_t warp_end = std::min(fibers.size(), warp_begin + 32);
    bool all_waiting = true, any_waiting = false;
    for (size_t i = warp_begin; i < warp_end; ++i) {
      if (fibers[i].state == FiberState::kDone) continue;
      all_waiting &= fibers[i].state == FiberState::kAtWarpBarrier;
      any_waiting |= fibers[i].state == FiberState::kAtWarpBarrier;
    }
    if (!all_waiting || !any_waiting) continue;
    for (size_t i = warp_begin; i < warp_end; ++i)
      if (fibers[i].state == FiberState::kAtWarpBarrier) fibers[i].state = FiberState::kRunnable;
    released = true;
  }
  return released;
}

// A block's shared memory starts as garbage on a device: a NaN pattern here, static and dynamic.
void PoisonSharedMemory(Launcher& l) {
  if (__start_qshard_emu_shared != nullptr)
    std::memset(__start_qshard_emu_shared, 0xff, static_cast<size_t>(__stop_qshard_emu_shared - __start_qshard_emu_shared));
  std::fill(l.dynamic_shared.begin(), l.dynamic_shared.end(), 0xff);
}

// Runs one block; `reverse`: its threads resume in reverse index order at every barrier.
void RunBlock(Launcher& l, const LaunchConfig& config, const uint3& block_idx, bool reverse) {
  PoisonSharedMemory(l);
  const unsigned threads = config.block.x * config.block.y * config.block.z;
  l.fibers.assign(threads, Fiber{});
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = l.fibers[t];
    f.linear = static_cast<int>(t);
    f.ids.thread_idx = {t % config.block.x, t / config.block.x % config.block.y, t / (config.block.x * config.block.y)};
    f.ids.block_idx = block_idx;
    f.ids.block_dim = config.block;
    f.ids.grid_dim = config.grid;
  }
  l.free_stacks.assign(l.stacks.rbegin(), l.stacks.rend());
  for (;;) {
    bool ran = false;
    for (size_t i = 0; i < l.fibers.size(); ++i) {
      Fiber& f = l.fibers[reverse ? l.fibers.size() - 1 - i : i];
      if (f.state != FiberState::kRunnable) continue;
      if (f.stack == nullptr) {
        f.stack = l.free_stacks.back();
        l.free_stacks.pop_back();
        f.stack_pointer = NewFiberStack(f.stack);
      }
      l.current = &f;
      qshard_emu_switch(&l.scheduler, f.stack_pointer);
      if (f.state == FiberState::kDone) l.free_stacks.push_back(f.stack);
      ran = true;
    }
    if (std::all_of(l.fibers.begin(), l.fibers.end(), [](const Fiber& f) { return f.state == FiberState::kDone; }))
      return;
    if (!ran && !ReleaseBarriers(l.fibers))
      Hang("some threads wait at __syncthreads and others at a warp operation", dim3(block_idx));
    if (ran) ReleaseBarriers(l.fibers);
  }
}

// Runs every block of the grid, in index order (x fastest) or in reverse, as `reverse` says.
void RunGrid(Launcher& l, const LaunchConfig& config, bool reverse) {
  const dim3& g = config.grid;
  const uint64_t blocks = uint64_t{g.x} * g.y * g.z;
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t b = reverse ? blocks - 1 - i : i;
    RunBlock(l, config, uint3{static_cast<unsigned>(b % g.x), static_cast<unsigned>(b / g.x % g.y),
                              static_cast<unsigned>(b / (uint64_t{g.x} * g.y))},
             reverse);
  }
}

cudaError_t CheckConfig(const Launcher& l, const LaunchConfig& c, const void* kernel) {
  const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (threads == 0 || threads > kMaxBlockThreads || c.block.z > 64) return cudaErrorInvalidConfiguration;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.y > 65535 || c.grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  const auto raised = l.max_dynamic_shared.find(kernel);
  const size_t limit = raised == l.max_dynamic_shared.end() ? kDefaultDynamicShared : raised->second;
  if (c.shared_bytes > limit) return cudaErrorInvalidValue;  // what a device says for too much shared memory
  return cudaSuccess;
}

}  // namespace

const ThreadIds& CurrentIds() { return TheLauncher().current->ids; }
void BlockBarrier() { Yield(FiberState::kAtBlockBarrier); }
void WarpBarrier() { Yield(FiberState::kAtWarpBarrier); }
void* DynamicShared() { return TheLauncher().dynamic_shared.data(); }
int LaneId() { return TheLauncher().current->linear % 32; }
int NextExchangeBank() { return static_cast<int>(TheLauncher().current->exchanges++ % 2); }
void* WarpSlot(int bank, int lane) {
  Launcher& l = TheLauncher();
  const size_t warp = static_cast<size_t>(l.current->linear / 32);
  return l.warp_slots.data() + ((warp * 2 + static_cast<size_t>(bank)) * 32 + static_cast<size_t>(lane)) * kWarpSlotBytes;
}

void CopyAsync16(void* shared, const void* global, bool valid) {
  TheLauncher().current->copies.push_back({shared, global, valid});
}

void CommitAsync() {
  Fiber& f = *TheLauncher().current;
  f.group_ends.push_back(f.copies.size());
}

void WaitAsync(int pending) {
  Fiber& f = *TheLauncher().current;
  if (static_cast<int>(f.group_ends.size()) <= pending) return;
  const size_t completed_groups = f.group_ends.size() - static_cast<size_t>(pending);
  const size_t completed = f.group_ends[completed_groups - 1];
  for (size_t i = 0; i < completed; ++i) {
    const PendingCopy& c = f.copies[i];
    if (c.valid) {
      std::memcpy(c.shared, c.global, 16);
    } else {
      std::memset(c.shared, 0, 16);
    }
  }
  f.copies.erase(f.copies.begin(), f.copies.begin() + static_cast<std::ptrdiff_t>(completed));
  f.group_ends.erase(f.group_ends.begin(), f.group_ends.begin() + static_cast<std::ptrdiff_t>(completed_groups));
  for (size_t& end : f.group_ends) end -= completed;
}

cudaError_t SetFunctionMaxDynamicShared(const void* function, int bytes) {
  if (bytes < 0 || static_cast<size_t>(bytes) > kOptInDynamicShared) return cudaErrorInvalidValue;
  Launcher& l = TheLauncher();
  std::lock_guard lock(l.mutex);
  l.max_dynamic_shared[function] = static_cast<size_t>(bytes);
  return cudaSuccess;
}

int OccupancyBlocks(const void*, int block_threads, size_t dynamic_shared) {
  if (block_threads <= 0 || block_threads > kMaxBlockThreads || dynamic_shared > kOptInDynamicShared) return 0;
  const size_t by_threads = 2048 / static_cast<size_t>(block_threads);
  const size_t by_shared = kOptInDynamicShared / (dynamic_shared + 1024);
  return static_cast<int>(std::max<size_t>(1, std::min({by_threads, by_shared, size_t{32}})));
}

void Launch(const LaunchConfig& config, const void* kernel, const char* name, const std::function<void()>& body) {
  Launcher& l = TheLauncher();
  std::lock_guard lock(l.mutex);
  if (const cudaError_t error = CheckConfig(l, config, kernel); error != cudaSuccess) {
    SetLastError(error);
    return;
  }
  const unsigned threads = config.block.x * config.block.y * config.block.z;
  EnsureStacks(l, threads);
  l.dynamic_shared.resize(std::max<size_t>(config.shared_bytes, 16));
  l.warp_slots.assign((threads + 31) / 32 * 2 * 32 * kWarpSlotBytes, 0);
  l.body = &body;
  switch (TheSchedule()) {
    case Schedule::kForward: RunGrid(l, config, false); break;
    case Schedule::kReverse: RunGrid(l, config, true); break;
    case Schedule::kCompare: {
      char launch[512];
      std::snprintf(launch, sizeof(launch), "%s<<<(%u, %u, %u), (%u, %u, %u), %zu>>>", name, config.grid.x,
                    config.grid.y, config.grid.z, config.block.x, config.block.y, config.block.z, config.shared_bytes);
      RunInBothOrders(launch, [&](bool reverse) { RunGrid(l, config, reverse); });
      break;
    }
  }
  l.current = nullptr;
  l.body = nullptr;
}

}  // namespace qshard_emu
