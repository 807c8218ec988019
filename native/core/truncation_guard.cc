#include "truncation_guard.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
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
// Serializes install and uninstall; the handler reads previous_action without it, which is
// safe because previous_action only changes while our handler is not installed.
std::mutex install_mutex;
bool installed = false;
struct sigaction previous_action;
// Handlers between their look at the registry and their mmap. unguard_range waits for zero
// before it frees a slot: a handler never pairs a stale start with a new end, and never maps
// over an address that the caller is about to unmap and maybe reuse.
std::atomic<int> handlers_inside{0};

GuardedRange* claim_slot(Chunk* chunk) {
  for (GuardedRange& r : chunk->slots) {
    bool expected = false;
    if (!r.claimed.load(std::memory_order_relaxed) && r.claimed.compare_exchange_strong(expected, true)) {
      return &r;
    }
  }
  return nullptr;
}

// The guarded range that holds address, or nullptr.
GuardedRange* range_holding(uintptr_t address) {
  for (Chunk* c = &first_chunk; c != nullptr; c = c->next.load()) {
    for (GuardedRange& r : c->slots) {
      uintptr_t start = r.start.load();
      if (start != 0 && address >= start && address < r.end.load()) return &r;
    }
  }
  return nullptr;
}

// Async-signal-safe: atomics and one mmap system call.
bool replace_lost_pages(uintptr_t address) {
  handlers_inside.fetch_add(1);
  GuardedRange* range = range_holding(address);
  bool replaced = false;
  if (range != nullptr) {
    // Lost before the pages change: a thread that reads the zero pages without faulting
    // itself then sees the flag when it checks after its read.
    range->lost.store(true);
    uintptr_t from = address & ~(kPageSize - 1);
    // NORESERVE: a segment may be larger than the commit limit allows a private mapping.
    void* p = mmap(reinterpret_cast<void*>(from), range->end.load() - from, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    replaced = p != MAP_FAILED;
  }
  handlers_inside.fetch_sub(1);
  return replaced;
}

void pass_on(int sig, siginfo_t* info, void* context) {
  bool sent = info == nullptr || info->si_code <= 0;  // by kill() or raise(), not by a fault
  if (previous_action.sa_handler == SIG_IGN && sent) return;
  if (previous_action.sa_handler == SIG_DFL || previous_action.sa_handler == SIG_IGN) {
    // The default action, which a fault cannot be spared: raised again, it is delivered when
    // we return (SIGBUS is blocked while we run) and ends the process as it would have.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  if ((previous_action.sa_flags & SA_SIGINFO) != 0) {
    previous_action.sa_sigaction(sig, info, context);
  } else {
    previous_action.sa_handler(sig);
  }
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  int saved_errno = errno;
  // BUS_ADRERR: the page is past the end of the object it maps (not a hardware error).
  bool ours = info != nullptr && info->si_code == BUS_ADRERR &&
              replace_lost_pages(reinterpret_cast<uintptr_t>(info->si_addr));
  errno = saved_errno;
  if (!ours) pass_on(sig, info, context);
}

bool is_ours(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == on_sigbus;
}

}  // namespace

shmch_status install_truncation_guard() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (installed) return SHMCH_OK;
  struct sigaction current {};
  // What to pass other signals on to is known before the first one can arrive.
  if (sigaction(SIGBUS, nullptr, &current) != 0) return SHMCH_E_OS;
  // Ours already: a handler installed after ours, which the last uninstall left in place, has
  // put ours back since. previous_action still holds what came before ours; recorded as
  // previous, ours would pass every other SIGBUS on to itself.
  if (!is_ours(current)) previous_action = current;
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGBUS, &action, nullptr) != 0) return SHMCH_E_OS;
  installed = true;
  return SHMCH_OK;
}

shmch_status uninstall_truncation_guard() {
  std::lock_guard<std::mutex> lock(install_mutex);
  if (!installed) return SHMCH_OK;
  installed = false;
  struct sigaction current {};
  if (sigaction(SIGBUS, nullptr, &current) != 0) return SHMCH_E_OS;
  // A handler installed after ours (which may pass signals on to ours) is its owner's to
  // remove. sigaction has no compare-and-swap: one installed between these two calls is lost.
  if (!is_ours(current)) return SHMCH_OK;
  if (sigaction(SIGBUS, &previous_action, nullptr) != 0) return SHMCH_E_OS;
  // A handler that started before the restore may still be walking the ranges; the caller
  // may be about to unload this code. (One passing a signal on to the previous handler is not
  // counted: it may never return.)
  while (handlers_inside.load() != 0) sched_yield();
  return SHMCH_OK;
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
  slot->end.store(begin + ((length + kPageSize - 1) & ~(kPageSize - 1)));
  slot->start.store(begin);
  return slot;
}

void unguard_range(GuardedRange* range) {
  if (range == nullptr) return;
  range->start.store(0);
  // A handler that found the range before the store above may still be mapping over it. It
  // never blocks, so this wait is as short as one mmap.
  while (handlers_inside.load() != 0) sched_yield();
  range->claimed.store(false);
}

bool range_lost(const GuardedRange* range) {
  return range != nullptr && range->lost.load();
}

void mark_range_lost(GuardedRange* range) {
  if (range != nullptr) range->lost.store(true);
}

}  // namespace shmch
