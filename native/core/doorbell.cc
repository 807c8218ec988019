#include "doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449  // the same number on every architecture
#endif

namespace shmch {

namespace {

// struct futex_waitv of linux/futex.h, spelled out for headers older than the kernel.
struct WaitvEntry {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
constexpr uint32_t kWaitvSize32 = 0x02;     // FUTEX2_SIZE_U32
constexpr uint32_t kWaitvPrivate = 128;     // FUTEX2_PRIVATE

enum : int { kUnknown = 0, kWorks = 1, kMissing = 2 };
std::atomic<int> waitv_support{kUnknown};

bool waitv_missing(int e) {
  // ENOSYS: Linux < 5.16. EPERM: a seccomp filter (containers, sandboxes) that predates it.
  return e == ENOSYS || e == EPERM;
}

long waitv(uint32_t* bell, uint32_t seen, uint32_t* private_bell, uint32_t private_seen, int timeout_ms) {
  WaitvEntry entries[2] = {
      {seen, reinterpret_cast<uintptr_t>(bell), kWaitvSize32, 0},
      {private_seen, reinterpret_cast<uintptr_t>(private_bell), kWaitvSize32 | kWaitvPrivate, 0},
  };
  // futex_waitv takes an absolute deadline as a __kernel_timespec: 64-bit fields everywhere.
  struct {
    int64_t tv_sec;
    int64_t tv_nsec;
  } deadline{};
  if (timeout_ms >= 0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline.tv_sec = static_cast<int64_t>(now.tv_sec) + timeout_ms / 1000;
    deadline.tv_nsec = static_cast<int64_t>(now.tv_nsec) + static_cast<int64_t>(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec += 1;
      deadline.tv_nsec -= 1000000000;
    }
  }
  return syscall(SYS_futex_waitv, entries, 2, 0, timeout_ms >= 0 ? &deadline : nullptr, CLOCK_MONOTONIC);
}

bool shared_wait(uint32_t* bell, uint32_t seen, int timeout_ms) {
  struct timespec timeout;
  timeout.tv_sec = timeout_ms / 1000;
  timeout.tv_nsec = static_cast<long>(timeout_ms % 1000) * 1000000L;
  // Relative timeout, CLOCK_MONOTONIC. EAGAIN: the bell rang between our read and the wait.
  long r = syscall(SYS_futex, bell, FUTEX_WAIT, seen, timeout_ms >= 0 ? &timeout : nullptr, nullptr, 0);
  if (r == 0) return true;
  return errno != ETIMEDOUT;
}

}  // namespace

void doorbell_ring(uint32_t* bell) {
  __atomic_fetch_add(bell, 1, __ATOMIC_SEQ_CST);
  // Shared (not FUTEX_PRIVATE): the waiter is another process.
  syscall(SYS_futex, bell, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

void private_bell_ring(uint32_t* bell) {
  __atomic_fetch_add(bell, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, bell, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

bool doorbell_wait(uint32_t* bell, uint32_t seen, uint32_t* private_bell, uint32_t private_seen,
                   int timeout_ms) {
  if (waitv_support.load(std::memory_order_relaxed) != kMissing) {
    long r = waitv(bell, seen, private_bell, private_seen, timeout_ms);
    int e = errno;
    if (r >= 0 || !waitv_missing(e)) {
      waitv_support.store(kWorks, std::memory_order_relaxed);
      // EAGAIN: a bell rang between our read and the wait; EINTR, EFAULT (the bell's page is
      // gone): let the caller look.
      return r >= 0 || e != ETIMEDOUT;
    }
    waitv_support.store(kMissing, std::memory_order_relaxed);
  }
  return shared_wait(bell, seen, timeout_ms);
}

bool private_bells_work() {
  int known = waitv_support.load(std::memory_order_relaxed);
  if (known != kUnknown) return known == kWorks;
  // A wait on values the words do not hold returns at once: EAGAIN if the call exists.
  uint32_t a = 0;
  uint32_t b = 0;
  long r = waitv(&a, 1, &b, 1, 0);
  bool works = r >= 0 || !waitv_missing(errno);
  waitv_support.store(works ? kWorks : kMissing, std::memory_order_relaxed);
  return works;
}

}  // namespace shmch
