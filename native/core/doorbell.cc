#include "doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace shmch {

void doorbell_ring(uint32_t* bell) {
  __atomic_fetch_add(bell, 1, __ATOMIC_SEQ_CST);
  // Shared (not FUTEX_PRIVATE): the waiter is another process.
  syscall(SYS_futex, bell, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

bool doorbell_wait(uint32_t* bell, uint32_t seen, int timeout_ms) {
  struct timespec timeout;
  timeout.tv_sec = timeout_ms / 1000;
  timeout.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
  // Relative timeout, CLOCK_MONOTONIC. EAGAIN: the bell rang between our read and the wait.
  long r = syscall(SYS_futex, bell, FUTEX_WAIT, seen, &timeout, nullptr, 0);
  if (r == 0) return true;
  return errno != ETIMEDOUT;
}

}  // namespace shmch
