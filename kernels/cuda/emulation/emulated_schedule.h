// The order in which the host emulation of CUDA runs a launch's blocks and, between barriers, a
// block's threads: QSHARD_EMULATED_SCHEDULE, read once.
//   forward (default)  blocks in index order; at each barrier the threads resume in index order.
//   reverse            both in reverse index order.
//   compare            every launch twice from the same device memory, forward then reverse;
//                      the device memory each leaves must be the same bytes, else the kernel is
//                      named and the program aborts.
// A device promises neither order. A kernel whose result changes with it has a race between
// threads of a block (a read of shared or global memory another thread writes between the same
// two barriers) or a reduction whose rounding follows the order blocks arrive in (floating-point
// atomics): compare finds both, for the kernels whose bytes are promised to be the same on every
// run (docs/cuda.md, "Two orders of blocks and threads").
#pragma once

#include <functional>

namespace qshard_emu {

enum class Schedule { kForward, kReverse, kCompare };

// The schedule QSHARD_EMULATED_SCHEDULE names; an unknown name aborts with the list.
Schedule TheSchedule();

// Runs `run(reverse)` for false and then true, each from the device memory as it was before the
// first, and aborts naming `kernel` when the two leave different bytes in any device allocation.
// The pages each run writes are found by protecting every allocation read-only and catching the
// first write to each page (a SIGSEGV handler), so the cost is the pages written, not the
// memory allocated. For a program whose other threads do not touch device memory during a
// launch (the check programs); allocations are whole pages under this schedule.
void RunInBothOrders(const char* kernel, const std::function<void(bool reverse)>& run);

}  // namespace qshard_emu
