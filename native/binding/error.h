// Turns a core status into a JS Error carrying Node-style `code`, plus `errno`/`syscall`
// where a system call failed and `ownerPid` where a live process holds the name.
#pragma once

#include <napi.h>

#include "../core/shmchannel.h"

namespace shmch_binding {

[[noreturn]] void ThrowStatus(Napi::Env env, shmch_status status, const shmch_error& err,
                              const char* what);

}  // namespace shmch_binding
