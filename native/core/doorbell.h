// A doorbell is one 32-bit word in the segment used as a futex: ring = increment + wake,
// wait = sleep while the word still holds the value seen before deciding to sleep.
// Not glibc's sem_t: glibc keeps futex flags inside a process-shared sem_t and aborts the
// process when a corrupted one makes the futex call fail; raw futex calls on a word we own
// just return an error, and any value the peer writes into the word is harmless.
//
// A wait also sleeps on a second, process-private word (futex_waitv, Linux 5.16): a thread of
// our own can end it with nothing of the segment, whose pages another process may have cut
// off (a ring of a doorbell in a lost page wakes nobody).
#pragma once

#include <cstdint>

namespace shmch {

void doorbell_ring(uint32_t* bell);
// Rings a word that only threads of this process wait on.
void private_bell_ring(uint32_t* bell);

// Sleeps until `bell` moves off `seen` or `private_bell` off `private_seen`, either rings, or
// timeout_ms passes (< 0: no timeout). True unless it timed out. Without futex_waitv only
// `bell` ends the wait (see private_bells_work).
bool doorbell_wait(uint32_t* bell, uint32_t seen, uint32_t* private_bell, uint32_t private_seen,
                   int timeout_ms);

// Does a ring of the private bell end a doorbell_wait here (the kernel has futex_waitv and no
// seccomp filter refuses it)? Asked once, then remembered.
bool private_bells_work();

}  // namespace shmch
