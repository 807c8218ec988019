// How the core reports a failure: a status for the caller to branch on, and what went wrong
// (errno, system call, a static text) in the caller's shmch_error.
#pragma once

#include "shmchannel.h"

namespace shmch {

// What a system call's errno means to a caller: EACCES is SHMCH_E_ACCESS, ENOSPC
// SHMCH_E_RESOURCE, ...; anything without a status of its own is SHMCH_E_OS.
shmch_status status_from_errno(int e);

// Fills *err (when given) and returns `status`, so that a failure is reported in one statement.
shmch_status fail(shmch_error* err, shmch_status status, int sys_errno, const char* syscall,
                  const char* detail);

}  // namespace shmch
