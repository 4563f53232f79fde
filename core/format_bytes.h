// Byte counts for people: "1.23 GB" from 1 GiB up, else "45.6 MB" (decimal units), as `qshard
// plan`, the job's log and its device plan print them.
#pragma once

#include <cstdint>
#include <string>

namespace qshard {

std::string FormatBytes(uint64_t bytes);

}  // namespace qshard
