// A doorbell is one 32-bit word in the segment used as a futex: ring = increment + wake,
// wait = sleep while the word still holds the value seen before deciding to sleep.
// Not glibc's sem_t: glibc keeps futex flags inside a process-shared sem_t and aborts the
// process when a corrupted one makes the futex call fail; raw futex calls on a word we own
// just return an error, and any value the peer writes into the word is harmless.
#pragma once

#include <cstdint>

namespace shmch {

void doorbell_ring(uint32_t* bell);

// Sleeps until the bell moves off `seen`, a ring, or timeout_ms. True unless it timed out.
bool doorbell_wait(uint32_t* bell, uint32_t seen, int timeout_ms);

}  // namespace shmch
