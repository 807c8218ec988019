// Wakes a channel's waker when another process changes the size of its segment, or writes to
// it with write(2): one inotify instance and one thread for the whole process, so that a
// channel costs a watch, of which a user may have many, not an instance, of which a user has
// 128 by default. With it and a private wake (shmch_wake_is_private), an idle waker needs no
// timeout to notice a segment cut short; without it, the waker keeps one.
#pragma once

#include "../core/shmchannel.h"

namespace shmch_binding {
namespace segment_watch {

// Watches the channel's segment from now on. False if it cannot (no inotify, no /proc, a
// limit reached): the caller must notice a truncation some other way.
bool Add(shmch_channel* channel);
// Once it returns, the watch thread never touches the channel again. Idempotent. Only for a
// channel that Add() took (a forked child must not wait for a lock a parent thread held).
void Remove(shmch_channel* channel);
// False once the watch thread gave up (after waking every channel it watched).
bool Working();
// Stops and joins the thread and closes its descriptors, so that the addon can be unloaded;
// the next Add() starts them again. Only once every channel is removed (environments.cc).
void Stop();

}  // namespace segment_watch
}  // namespace shmch_binding
