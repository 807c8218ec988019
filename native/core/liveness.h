// Is a pid still the process that wrote it? pid plus start time survives pid reuse.
#pragma once

#include <cstdint>

namespace shmch {

// Start time of pid in clock ticks since boot (field 22 of /proc/PID/stat), 0 if unknown.
uint64_t process_start_time(uint32_t pid);

// True if pid names a live process whose start time is start_time (0: not compared).
// pid comes from shared memory: 0 and values past the kernel's pid limit are "not alive".
bool process_alive(uint32_t pid, uint64_t start_time);

}  // namespace shmch
