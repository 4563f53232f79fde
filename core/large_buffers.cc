#include "core/large_buffers.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace qshard {

void KeepFreedBuffersForReuse() {
  constexpr int kMiB = 1 << 20;
  (void)mallopt(M_MMAP_THRESHOLD, 32 * kMiB);  // the largest glibc accepts; also ends its dynamic threshold
  (void)mallopt(M_TRIM_THRESHOLD, 512 * kMiB);
}

void PopulatePages(void* data, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
  static const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kPage - 1);
  // A failure (an older kernel: EINVAL) only means the pages fault in one by one later.
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace qshard
