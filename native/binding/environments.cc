#include "environments.h"

#include <mutex>

#include "../core/shmchannel.h"
#include "segment_watch.h"

namespace shmch_binding {
namespace environments {

namespace {

std::mutex entered_mutex;
int entered = 0;  // Init calls whose environment's cleanup hook has not run yet

void Leave(void*) {
  std::lock_guard<std::mutex> lock(entered_mutex);
  if (--entered > 0) return;
  segment_watch::Stop();
  // Every channel is closed by now; a SharedMemory left open is unmapped a moment later, as
  // its environment finishes its teardown. A SIGBUS in it until then kills the process, as it
  // would without the guard.
  (void)shmch_unguard_truncation();
}

}  // namespace

void Enter(Napi::Env env) {
  {
    std::lock_guard<std::mutex> lock(entered_mutex);
    // A peer that shrinks a segment then costs its channel, not the process. sigaction cannot
    // fail for SIGBUS; if it somehow did, shrinking would crash the process as it does anywhere.
    if (entered++ == 0) (void)shmch_guard_truncation();
  }
  // The environment as the hook's argument: Node refuses a second hook with the same function
  // and argument, and Init runs once per load of the addon, which may be twice in one
  // environment (the same file required by two paths), each load with an napi_env of its own.
  napi_status status = napi_add_env_cleanup_hook(env, Leave, static_cast<napi_env>(env));
  if (status != napi_ok) {
    // Never counted out otherwise: the thread and the handler would outlive the addon.
    Leave(nullptr);
    throw Napi::Error::New(env, "shmchannel: cannot register its environment cleanup hook");
  }
}

}  // namespace environments
}  // namespace shmch_binding
