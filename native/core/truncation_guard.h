// Any process that can open a POSIX shm object read-write can also shrink it (they cannot be
// sealed), and touching a mapped page past the new end raises SIGBUS, which kills the process.
// (So does touching a page of a sparse object that a full tmpfs cannot provide.)
// The guard turns that into an error the owner can report: a SIGBUS inside a guarded mapping
// replaces the mapping's pages from the faulting one on with private zero pages, marks the
// mapping lost, and the faulting access resumes. Any other SIGBUS goes to the handler that was
// there before (or kills the process as it would have).
#pragma once

#include <cstddef>

#include "shmchannel.h"

namespace shmch {

struct GuardedRange;

// Installs the process-wide SIGBUS handler; does nothing while it is installed.
shmch_status install_truncation_guard();
// Puts back the handler that install_truncation_guard() found, if ours is still the one
// installed, so that this code may be unloaded (a handler installed after ours, left in
// place, may still pass signals on to ours). Not counted: one call undoes any number of
// installs.
shmch_status uninstall_truncation_guard();

// Registers a mapping whether or not the handler is installed. nullptr if out of memory.
GuardedRange* guard_range(void* start, size_t length);
// Call before munmap: after it, a SIGBUS at these addresses is no longer ours.
void unguard_range(GuardedRange* range);
// True once a SIGBUS has replaced pages of the range: what they held is gone.
bool range_lost(const GuardedRange* range);
// The owner learnt otherwise (the object is smaller than the mapping) that pages are gone.
void mark_range_lost(GuardedRange* range);

}  // namespace shmch
