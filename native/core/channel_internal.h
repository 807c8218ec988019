// What channel.cc (one channel), connect.cc (a client of a server of many) and server.cc (the
// server of many) share: the channel object and the steps that set one up. Not part of the API.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "layout.h"
#include "pool.h"
#include "ring.h"
#include "segment.h"
#include "shmchannel.h"

struct shmch_channel {
  shmch_role role = SHMCH_SERVER;
  char name[256] = {0};
  shmch::Segment segment;
  // SHMCH_SEGMENT_CHANNEL, or SHMCH_SEGMENT_CONNECTION: one client of a server of many.
  uint32_t kind = SHMCH_SEGMENT_CHANNEL;
  uint32_t capacity = 0;
  uint32_t max_message_size = 0;
  uint32_t pool_capacity = 0;
  shmch::RingWriter writer;
  shmch::RingReader reader;
  // Our pool (the writer's role) and what we hold of the peer's (the reader's role).
  shmch::PoolOwner pool;
  shmch::PoolBorrower borrowed;
  uint32_t* own_doorbell = nullptr;
  uint32_t* own_sleeping = nullptr;
  // What wakes the server side: the segment's server_doorbell, or for a connection the
  // directory's one doorbell (PROTOCOL §7.4). Set before wire_rings(); null: the segment's.
  uint32_t* server_doorbell = nullptr;
  // A client of a server of many keeps the directory mapped: its doorbell is the server's.
  shmch::Segment directory;
  // Latched on the first protocol violation: a corrupt ring is never read again.
  std::atomic<bool> failed{false};
  // The peer we last saw, for liveness (copied out of the header when it attached). Atomic:
  // the waker thread reads and refreshes them while the JS thread may accept a new client.
  // For a server's connection: the client that claimed the slot, fixed at accept.
  std::atomic<uint32_t> peer_pid{0};
  std::atomic<uint64_t> peer_start_time{0};
  // A write got FULL: the waker must report when the reader frees space (see shmch_wait).
  std::atomic<bool> writer_blocked{false};
  // A loan got FULL: the waker must report when the reader releases (see shmch_wait).
  std::atomic<bool> loan_blocked{false};
  // shmch_wake() was called: the next shmch_wait() returns at once, so no ring is lost.
  std::atomic<bool> wake_requested{false};
  // What shmch_wake() rings: ours alone, so it wakes the wait even once the segment's pages
  // (the doorbell with them) are gone.
  uint32_t private_bell = 0;
  // Where shmch_wake() sets its flag and rings: this channel's own, or for a server's
  // connection the server's, whose one thread waits for all its connections.
  std::atomic<bool>* wake_flag = &wake_requested;
  uint32_t* wake_bell = &private_bell;
  // A server's connection: the server that made it (shmch_close hands it back to it).
  shmch_server* server = nullptr;
  // Server: since when a client holds the slot without having written its pid (ms, 0: not).
  std::atomic<int64_t> pidless_since_ms{0};
  // shmch_wait() has sent the reader to find out that the segment was shrunk.
  bool lost_reported = false;
};

namespace shmch {

inline uint8_t* base(shmch_channel* ch) { return ch->segment.data(); }
inline uint32_t* state_word(shmch_channel* ch) { return word32(base(ch), off::kState); }

inline bool is_power_of_two(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }
inline bool valid_pool_capacity(uint32_t p) {
  return p % SHMCH_POOL_BLOCK_SIZE == 0 && p <= SHMCH_MAX_POOL_CAPACITY;
}
// The sizes a header states (or a creator asks for) are within the protocol's limits.
inline bool valid_sizes(uint32_t capacity, uint32_t max_message_size, uint32_t pool_capacity) {
  return is_power_of_two(capacity) && capacity >= SHMCH_MIN_RING_CAPACITY && capacity <= SHMCH_MAX_RING_CAPACITY &&
         max_message_size != 0 && max_message_size <= SHMCH_MAX_MESSAGE_SIZE && valid_pool_capacity(pool_capacity);
}
// A name that exists: reclaim it if its server is dead or closed (a directory with the
// connections it names), else report the live owner (SHMCH_E_EXISTS).
shmch_status reclaim_if_stale(const char* name, shmch_error* err);
// The options of shmch_create and shmch_server_create.
shmch_status validate_options(const shmch_options* o, shmch_error* err);

size_t largest_segment();

shmch_channel* new_channel(const char* name, shmch_role role);

// Magic, version and kind of a header someone else wrote, the first checks of any segment:
// SHMCH_E_INCOMPATIBLE with a detail naming both versions if the version is not ours. Fills
// *kind (any value: the caller decides which it accepts).
shmch_status validate_identity(const uint8_t* b, uint32_t* kind, shmch_error* err);
// Validates a channel or connection header written by someone else (identity included, kind
// must be `kind`); fills capacity and sizes on success.
shmch_status validate_header(const uint8_t* b, size_t mapped_size, uint32_t kind, uint32_t* capacity,
                             uint32_t* max_message_size, uint32_t* pool_capacity, shmch_error* err);

// Server: writes the header of a segment just created (zero-filled, sized for `o`), wires the
// rings and stores SERVER_READY. `epoch`: the client_epoch field (a connection's id).
void publish_header(shmch_channel* ch, const shmch_options* o, uint32_t kind, uint32_t epoch);

// Client: ch->segment is mapped and its header validated (ch->capacity and sizes filled): take
// the client's place (CLIENT_ATTACHED), write our pid, wire the rings and knock the server.
// On failure ch is freed.
shmch_status attach_mapped(shmch_channel* ch, shmch_error* err);

// The pieces of shmch_wait that a server of many asks of each of its connections.
bool space_freed(shmch_channel* ch);
bool peer_flagged_leave(shmch_channel* ch);

// "segment speaks protocol version N, this library version 3", in a buffer of this thread.
const char* version_detail(uint32_t version);

}  // namespace shmch
