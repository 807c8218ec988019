// Seams for native/test only, null in the library: a test sets one to hold a thread inside a
// window far too narrow to hit by chance, and so shows that the window is handled.
#pragma once

#include "shmchannel.h"

namespace shmch::test_hooks {

// In shmch_write and shmch_write_frames, once the ring was found full (the writer's wait is
// flagged in the ring) and before the channel records that its writer is blocked.
extern void (*before_writer_marked_blocked)(shmch_channel* ch);

}  // namespace shmch::test_hooks
