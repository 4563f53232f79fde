#include "kernels/cuda/emulation/emulated_schedule.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/cuda/emulation/emulated_state.h"

namespace qshard_emu {
namespace {

// One allocation's pages, and where their copies sit in the shadow buffers (allocations in
// address order, packed).
struct TrackedRange {
  uintptr_t begin = 0, end = 0;
  size_t shadow = 0;
};

// What the SIGSEGV handler reads and writes, all sized before the launch: it allocates nothing.
struct WriteTracker {
  size_t page = 0;
  std::vector<TrackedRange> ranges;
  size_t shadow_bytes = 0;
  unsigned char* originals = nullptr;  // each written page as it was before its first write
  std::vector<size_t> written;         // shadow offsets of the written pages, in order of first write
  std::vector<unsigned char> is_written;  // per shadow page
  struct sigaction previous {};
};

WriteTracker* active_tracker = nullptr;  // set only while a launch runs in both orders

// Every read of a device page here goes through these two, which AddressSanitizer does not
// instrument: in such a build the slack after an allocation's bytes is poisoned (cudaMalloc),
// and whole pages are copied and compared. Volatile, so that no memcpy or memcmp call (which it
// would intercept) replaces the loops.
__attribute__((no_sanitize_address)) void CopyPage(void* to, const void* from, size_t bytes) {
  auto* destination = static_cast<volatile uint64_t*>(to);
  const auto* source = static_cast<const volatile uint64_t*>(from);
  for (size_t i = 0; i < bytes / 8; ++i) destination[i] = source[i];
}

// How many bytes differ, and (first) where the first does; bytes when none does.
__attribute__((no_sanitize_address)) size_t CountDifferences(const void* a, const void* b, size_t bytes,
                                                             size_t& first) {
  const auto* x = static_cast<const volatile unsigned char*>(a);
  const auto* y = static_cast<const volatile unsigned char*>(b);
  size_t count = 0;
  first = bytes;
  for (size_t i = 0; i < bytes; ++i)
    if (x[i] != y[i]) {
      if (count++ == 0) first = i;
    }
  return count;
}

const TrackedRange* RangeOf(const WriteTracker& t, uintptr_t address) {
  auto it = std::upper_bound(t.ranges.begin(), t.ranges.end(), address,
                             [](uintptr_t a, const TrackedRange& r) { return a < r.begin; });
  if (it == t.ranges.begin() || address >= (--it)->end) return nullptr;
  return &*it;
}

unsigned char* PageAt(const WriteTracker& t, size_t shadow) {
  auto it = std::upper_bound(t.ranges.begin(), t.ranges.end(), shadow,
                             [](size_t s, const TrackedRange& r) { return s < r.shadow; });
  --it;
  return reinterpret_cast<unsigned char*>(it->begin + (shadow - it->shadow));
}

// The first write to a protected device page: keep its bytes, then let the write through.
void OnWriteFault(int, siginfo_t* info, void*) {
  WriteTracker& t = *active_tracker;
  const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
  const TrackedRange* range = RangeOf(t, address);
  if (range == nullptr) {  // not a device page: the fault it is, under the handler there was before
    sigaction(SIGSEGV, &t.previous, nullptr);
    return;
  }
  const uintptr_t page = address & ~(t.page - 1);
  const size_t shadow = range->shadow + (page - range->begin);
  if (!t.is_written[shadow / t.page]) {
    CopyPage(t.originals + shadow, reinterpret_cast<const void*>(page), t.page);
    t.is_written[shadow / t.page] = 1;
    t.written.push_back(shadow);
  }
  mprotect(reinterpret_cast<void*>(page), t.page, PROT_READ | PROT_WRITE);
}

void Protect(const WriteTracker& t, int protection) {
  for (const TrackedRange& r : t.ranges)
    if (mprotect(reinterpret_cast<void*>(r.begin), r.end - r.begin, protection) != 0) {
      std::perror("cuda emulation: mprotect of device memory");
      std::abort();
    }
}

unsigned char* MapShadow(size_t bytes) {
  void* shadow = mmap(nullptr, std::max<size_t>(bytes, 1), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (shadow == MAP_FAILED) {
    std::perror("cuda emulation: mapping the copies of device memory");
    std::abort();
  }
  return static_cast<unsigned char*>(shadow);
}

// `byte` of the page at `shadow` differs: the page as the reverse run left it, against `forward`.
[[noreturn]] void ReportDifference(const char* kernel, const WriteTracker& t, size_t shadow, size_t byte,
                                   const unsigned char* forward, size_t differing_bytes) {
  const unsigned char* now = PageAt(t, shadow);
  const uintptr_t address = reinterpret_cast<uintptr_t>(now) + byte;
  const auto allocation = DeviceAllocationOf(reinterpret_cast<const void*>(address));
  const size_t word = (address - allocation.first) / 4 * 4;  // the aligned 4 bytes around it
  uint64_t forward_words = 0, reverse_words = 0;  // CopyPage moves 8 bytes at a time
  CopyPage(&forward_words, forward + (byte & ~size_t{7}), 8);
  CopyPage(&reverse_words, now + (byte & ~size_t{7}), 8);
  const uint32_t forward_word = static_cast<uint32_t>(forward_words >> (byte & 4) * 8);
  const uint32_t reverse_word = static_cast<uint32_t>(reverse_words >> (byte & 4) * 8);
  float forward_float = 0, reverse_float = 0;
  std::memcpy(&forward_float, &forward_word, 4);
  std::memcpy(&reverse_float, &reverse_word, 4);
  std::fprintf(stderr,
               "cuda emulation: %s leaves different bytes when its blocks and threads run in reverse order: %zu bytes "
               "differ, the first at byte %zu of the %zu-byte allocation %p (as 32 bits: 0x%08x = %g forward, "
               "0x%08x = %g reverse). Its threads race (one reads what another writes between the same two "
               "barriers), or its result follows the order blocks arrive in (floating-point atomics)\n",
               kernel, differing_bytes, word, allocation.second, reinterpret_cast<void*>(allocation.first),
               forward_word, forward_float, reverse_word, reverse_float);
  std::abort();
}

}  // namespace

Schedule TheSchedule() {
  static const Schedule schedule = [] {
    const char* name = std::getenv("QSHARD_EMULATED_SCHEDULE");
    if (name == nullptr || std::string_view(name) == "forward") return Schedule::kForward;
    if (std::string_view(name) == "reverse") return Schedule::kReverse;
    if (std::string_view(name) == "compare") return Schedule::kCompare;
    std::fprintf(stderr, "cuda emulation: QSHARD_EMULATED_SCHEDULE=%s: use forward, reverse or compare\n", name);
    std::abort();
  }();
  return schedule;
}

void RunInBothOrders(const char* kernel, const std::function<void(bool reverse)>& run) {
  WriteTracker t;
  t.page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (const auto& [start, bytes] : DeviceAllocations()) {
    if (bytes == 0) continue;
    const uintptr_t end = (start + bytes + t.page - 1) & ~(t.page - 1);  // allocations are whole pages here
    t.ranges.push_back({start, end, t.shadow_bytes});
    t.shadow_bytes += end - start;
  }
  t.originals = MapShadow(t.shadow_bytes);
  unsigned char* forward = MapShadow(t.shadow_bytes);
  t.written.reserve(t.shadow_bytes / t.page);
  t.is_written.assign(t.shadow_bytes / t.page, 0);

  struct sigaction on_write {};
  on_write.sa_sigaction = OnWriteFault;
  on_write.sa_flags = SA_SIGINFO;
  sigemptyset(&on_write.sa_mask);
  sigaction(SIGSEGV, &on_write, &t.previous);
  active_tracker = &t;

  Protect(t, PROT_READ);
  run(false);
  const size_t written_forward = t.written.size();
  for (size_t i = 0; i < written_forward; ++i) {  // keep what the forward run wrote, put back what was there
    unsigned char* page = PageAt(t, t.written[i]);
    CopyPage(forward + t.written[i], page, t.page);
    CopyPage(page, t.originals + t.written[i], t.page);
  }
  Protect(t, PROT_READ);
  run(true);
  Protect(t, PROT_READ | PROT_WRITE);

  active_tracker = nullptr;
  sigaction(SIGSEGV, &t.previous, nullptr);
  size_t differing = 0, first_shadow = 0, first_byte = 0;
  const unsigned char* first_expected = nullptr;
  for (size_t i = 0; i < t.written.size(); ++i) {
    // A page only the reverse run wrote must have kept the bytes it had before.
    const unsigned char* expected = (i < written_forward ? forward : t.originals) + t.written[i];
    size_t byte = 0;
    const size_t count = CountDifferences(PageAt(t, t.written[i]), expected, t.page, byte);
    if (count > 0 && differing == 0) first_shadow = t.written[i], first_byte = byte, first_expected = expected;
    differing += count;
  }
  if (differing > 0) ReportDifference(kernel, t, first_shadow, first_byte, first_expected, differing);
  munmap(t.originals, std::max<size_t>(t.shadow_bytes, 1));
  munmap(forward, std::max<size_t>(t.shadow_bytes, 1));
}

}  // namespace qshard_emu
