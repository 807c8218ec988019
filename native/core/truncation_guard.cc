#include "truncation_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <new>

namespace shmch {

// Every field is atomic because the signal handler reads them on whatever thread faulted.
struct GuardedRange {
  std::atomic<uintptr_t> start{0};  // 0: the slot guards nothing
  std::atomic<uintptr_t> end{0};    // page-aligned
  std::atomic<bool> claimed{false};
  std::atomic<bool> lost{false};
};

namespace {

constexpr size_t kSlotsPerChunk = 64;

// Chunks are only ever appended, never freed: the handler walks them without a lock.
struct Chunk {
  GuardedRange slots[kSlotsPerChunk];
  std::atomic<Chunk*> next{nullptr};
};

Chunk first_chunk;
const uintptr_t kPageSize = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
struct sigaction previous_action;

GuardedRange* claim_slot(Chunk* chunk) {
  for (GuardedRange& r : chunk->slots) {
    bool expected = false;
    if (!r.claimed.load(std::memory_order_relaxed) && r.claimed.compare_exchange_strong(expected, true)) {
      return &r;
    }
  }
  return nullptr;
}

// Async-signal-safe: atomics and one mmap system call.
bool replace_lost_pages(uintptr_t address) {
  for (Chunk* c = &first_chunk; c != nullptr; c = c->next.load(std::memory_order_acquire)) {
    for (GuardedRange& r : c->slots) {
      uintptr_t start = r.start.load(std::memory_order_acquire);
      if (start == 0 || address < start) continue;
      uintptr_t end = r.end.load(std::memory_order_acquire);
      if (address >= end) continue;
      uintptr_t from = address & ~(kPageSize - 1);
      void* p = mmap(reinterpret_cast<void*>(from), end - from, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
      if (p == MAP_FAILED) return false;
      r.lost.store(true, std::memory_order_release);
      return true;
    }
  }
  return false;
}

void pass_on(int sig, siginfo_t* info, void* context) {
  if ((previous_action.sa_flags & SA_SIGINFO) != 0 && previous_action.sa_sigaction != nullptr) {
    previous_action.sa_sigaction(sig, info, context);
    return;
  }
  if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(sig);
    return;
  }
  // The default action: a fault recurs when we return and kills the process as it would have;
  // a signal sent with kill() is raised again (blocked until we return).
  signal(sig, SIG_DFL);
  if (info == nullptr || info->si_code <= 0) raise(sig);
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  int saved_errno = errno;
  // BUS_ADRERR: the page is past the end of the object it maps (not a hardware error).
  bool ours = info != nullptr && info->si_code == BUS_ADRERR &&
              replace_lost_pages(reinterpret_cast<uintptr_t>(info->si_addr));
  errno = saved_errno;
  if (!ours) pass_on(sig, info, context);
}

}  // namespace

shmch_status install_truncation_guard() {
  static const shmch_status result = [] {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGBUS, &action, &previous_action) == 0 ? SHMCH_OK : SHMCH_E_OS;
  }();
  return result;
}

GuardedRange* guard_range(void* start, size_t length) {
  Chunk* chunk = &first_chunk;
  GuardedRange* slot = nullptr;
  for (;;) {
    slot = claim_slot(chunk);
    if (slot != nullptr) break;
    Chunk* next = chunk->next.load(std::memory_order_acquire);
    if (next == nullptr) {
      Chunk* fresh = new (std::nothrow) Chunk();
      if (fresh == nullptr) return nullptr;
      slot = claim_slot(fresh);
      // Another thread may have appended first: then ours goes after its chunk.
      while (!chunk->next.compare_exchange_weak(next, fresh)) {
        if (next != nullptr) {
          chunk = next;
          next = nullptr;
        }
      }
      break;
    }
    chunk = next;
  }
  uintptr_t begin = reinterpret_cast<uintptr_t>(start);
  slot->lost.store(false);
  slot->end.store(begin + ((length + kPageSize - 1) & ~(kPageSize - 1)), std::memory_order_release);
  slot->start.store(begin, std::memory_order_release);
  return slot;
}

void unguard_range(GuardedRange* range) {
  if (range == nullptr) return;
  range->start.store(0, std::memory_order_release);
  range->claimed.store(false, std::memory_order_release);
}

bool range_lost(const GuardedRange* range) {
  return range != nullptr && range->lost.load(std::memory_order_acquire);
}

}  // namespace shmch
