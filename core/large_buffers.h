// Large buffers whose memory is new to the process. On the VMs this project runs on, a first
// touch costs far more than the zeroing itself (about 0.55 s for a 537 MB float64 Hessian sum,
// one page fault per 4 KiB page, mostly the kernel clearing pages the host must back first);
// mapping the pages in one madvise call takes about 0.35 s, and a page never touched costs
// nothing. Contents and bytes are unchanged by either.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace qshard {

// Makes the C library keep freed buffers of up to 32 MiB for reuse instead of handing their
// pages back to the kernel: by default glibc maps such a buffer afresh (mmap) or trims the heap
// top once 2× the last freed block is free, so every forward batch's activations (MiBs each,
// allocated and freed per linear) faulted their pages in again: 0.3–0.5 s of system time on
// a TinyStories aespa job. Buffers above 32 MiB (glibc's limit for this threshold) are still
// mapped per allocation; up to 512 MiB of free heap top stays with the process. Called once,
// at program start, by programs that run jobs (the qshard binary).
void KeepFreedBuffersForReuse();

// Maps the whole pages inside [data, data + bytes) writable in one call (MADV_POPULATE_WRITE),
// where the kernel has it; otherwise does nothing and the pages fault in as they are written.
void PopulatePages(void* data, size_t bytes);

// An allocator whose value-less construction leaves elements uninitialized, so that resize(n)
// touches no page: for buffers of which only some pages are ever written (the upper triangle
// of a symmetric sum) or that are written whole before they are read.
template <class T>
struct UninitializedAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <class U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <class T>
using UninitializedVector = std::vector<T, UninitializedAllocator<T>>;

// A vector of n zeros, its storage populated first when it is large (1 MiB or more).
template <class T, class Allocator = std::allocator<T>>
std::vector<T, Allocator> ZeroedVector(size_t n) {
  constexpr size_t kLarge = size_t{1} << 20;
  std::vector<T, Allocator> values;
  if (n * sizeof(T) >= kLarge) {
    values.reserve(n);
    PopulatePages(values.data(), n * sizeof(T));
  }
  values.resize(n, T());
  return values;
}

}  // namespace qshard
