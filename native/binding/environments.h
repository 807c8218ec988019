// What the addon holds for the whole process rather than for one environment (the main
// thread, each worker): the SIGBUS guard and the segment-watch thread. Node unloads the addon
// (dlclose) when the last environment that loaded it is torn down, which is a worker's when
// only workers load it; a thread of ours still running then, or a signal handler of ours
// still installed, would run unmapped code. So they are counted: set up with the first
// environment, torn down with the last, set up again if another loads the addon later.
#pragma once

#include <napi.h>

namespace shmch_binding {
namespace environments {

// Counts env in, and registers the cleanup hook that counts it out as it is torn down. Called
// from the module's Init, first, so that the hook runs after the cleanup hooks of everything
// created in env later (Node runs them last in, first out): every channel of env has stopped
// its threads and left the segment watch by then. Throws if the hook cannot be registered.
void Enter(Napi::Env env);

}  // namespace environments
}  // namespace shmch_binding
