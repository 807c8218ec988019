// A client connects (PROTOCOL §5.2, §7.2): to a server of one client it attaches at once; to a
// server of many it claims a slot of the directory, waits for the server to make its
// connection, and attaches to that. Every byte of the directory is someone else's: a slot is
// ours only while its owner_pid is our pid, and what the server wrote is validated as any header.
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>

#include "channel_internal.h"
#include "directory.h"
#include "doorbell.h"
#include "layout.h"
#include "liveness.h"
#include "segment.h"
#include "shmchannel.h"
#include "status.h"

using namespace shmch;

struct shmch_connect_attempt {
  char name[256] = {0};
  // Whatever `name` held when we opened it; a directory stays here until a channel takes it.
  Segment directory;
  DirectoryHeader header;
  // Attached and not handed out yet (a server of one client: from shmch_connect on).
  shmch_channel* attached = nullptr;
  // The slot we claimed and have not given back nor handed over as a channel.
  bool claimed = false;
  uint32_t slot = 0;
  uint32_t pid = 0;
};

namespace {

// A server that dies rings nothing: a waiting client looks at its liveness this often.
constexpr int kServerCheckMs = 100;
// How long shmch_attach waits for a server of many to make the connection.
constexpr int kAttachTimeoutMs = 2000;

int64_t now_ms() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

uint32_t* slot_field(shmch_connect_attempt* a, size_t field) { return slot_word(a->directory.data(), a->slot, field); }

uint32_t* directory_doorbell(shmch_connect_attempt* a) { return word32(a->directory.data(), dir::kDoorbell); }

bool server_gone(shmch_connect_attempt* a) {
  const uint8_t* d = a->directory.data();
  uint32_t state = load_acquire(reinterpret_cast<const uint32_t*>(d + dir::kState));
  return (state & SHMCH_STATE_SERVER_CLOSED) != 0 ||
         !process_alive(read_u32(d, dir::kServerPid), read_u64(d, dir::kServerStartTime));
}

// The claim is still ours: nobody (the server freeing a slot it took for dead, or a scribbler)
// gave the slot to someone else.
bool still_ours(shmch_connect_attempt* a) { return load_acquire(slot_field(a, dir::kOwnerPid)) == a->pid; }

// A server of one client: the name is its channel; attach as always.
shmch_status attach_channel(shmch_connect_attempt* a, shmch_error* err) {
  shmch_channel* ch = new_channel(a->name, SHMCH_CLIENT);
  if (ch == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  ch->segment.take_from(a->directory);
  shmch_status s = validate_header(base(ch), ch->segment.size(), SHMCH_SEGMENT_CHANNEL, &ch->capacity,
                                   &ch->max_message_size, &ch->pool_capacity, err);
  if (s != SHMCH_OK) {
    delete ch;
    return s;
  }
  s = attach_mapped(ch, err);
  if (s == SHMCH_OK) a->attached = ch;
  return s;
}

// Every slot is taken. Busy, unless one of them is on its way out: its owner died, or it is
// in a phase that the server or its owner will end by itself (cancelled, refused, or one that
// no live client leaves a slot in for more than an instant).
shmch_status no_free_slot(shmch_connect_attempt* a, shmch_error* err) {
  uint8_t* d = a->directory.data();
  bool leaving = false;
  for (uint32_t i = 0; i < a->header.max_clients && !leaving; i++) {
    uint32_t owner = load_acquire(slot_word(d, i, dir::kOwnerPid));
    uint32_t phase = load_acquire(slot_word(d, i, dir::kPhase));
    bool settled = phase == SHMCH_SLOT_CLAIMED || phase == SHMCH_SLOT_READY;
    leaving = owner == 0 || !settled || !process_alive(owner, read_u64(slot_at(d, i), dir::kOwnerStartTime));
  }
  if (leaving) {
    // Knock: the server frees such a slot when it looks, and an idle server has no reason to.
    doorbell_ring(directory_doorbell(a));
    return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "a client that left is being freed");
  }
  if (err != nullptr) err->owner_pid = load_acquire(slot_word(d, 0, dir::kOwnerPid));
  static thread_local char detail[64];
  std::snprintf(detail, sizeof detail, "all %u connections are taken", a->header.max_clients);
  return fail(err, SHMCH_E_BUSY, 0, nullptr, detail);
}

// A server of many clients: validate its directory and claim a slot (PROTOCOL §7.2, steps 1-3).
shmch_status claim_slot(shmch_connect_attempt* a, shmch_error* err) {
  uint8_t* d = a->directory.data();
  shmch_status s = validate_directory(d, a->directory.size(), &a->header, err);
  if (s != SHMCH_OK) return s;
  if (server_gone(a)) return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "server gone");
  a->pid = static_cast<uint32_t>(getpid());
  for (uint32_t i = 0; i < a->header.max_clients; i++) {
    uint32_t expected = 0;
    // One compare-and-swap takes the slot with our pid in it: the server never sees a taken
    // slot without the pid that took it.
    if (!__atomic_compare_exchange_n(slot_word(d, i, dir::kOwnerPid), &expected, a->pid, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
      continue;
    }
    a->slot = i;
    a->claimed = true;
    write_u64(slot_at(d, i), dir::kOwnerStartTime, process_start_time(a->pid));
    store_release(slot_field(a, dir::kPhase), SHMCH_SLOT_CLAIMED);
    __atomic_fetch_add(word32(d, dir::kClaims), 1, __ATOMIC_RELEASE);
    doorbell_ring(directory_doorbell(a));
    return SHMCH_OK;
  }
  return no_free_slot(a, err);
}

// The server made our connection: attach to it (PROTOCOL §7.2 step 5).
shmch_status attach_connection(shmch_connect_attempt* a, shmch_channel** out, shmch_error* err) {
  uint32_t id = load_acquire(slot_field(a, dir::kConnectionId));
  char name[256];
  if (!connection_name(a->name, a->slot, name, sizeof name))
    return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "no room for the connection's name");
  shmch_channel* ch = new_channel(name, SHMCH_CLIENT);
  if (ch == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  ch->kind = SHMCH_SEGMENT_CONNECTION;
  shmch_status s = ch->segment.open(name, kHeaderSize, largest_segment(), err);
  if (s == SHMCH_OK) {
    s = validate_header(base(ch), ch->segment.size(), SHMCH_SEGMENT_CONNECTION, &ch->capacity,
                        &ch->max_message_size, &ch->pool_capacity, err);
  }
  if (s == SHMCH_OK && (read_u32(base(ch), off::kClientEpoch) != id || ch->capacity != a->header.ring_capacity ||
                        ch->max_message_size != a->header.max_message_size ||
                        ch->pool_capacity != a->header.pool_capacity)) {
    s = fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "the connection does not match its directory");
  }
  if (s != SHMCH_OK) {
    delete ch;
    return s;
  }
  // Every ring of the server's doorbell goes to the directory's (PROTOCOL §7.4); the mapping
  // moves to the channel once attached, at the same address.
  ch->server_doorbell = directory_doorbell(a);
  s = attach_mapped(ch, err);
  if (s != SHMCH_OK) return s;
  ch->directory.take_from(a->directory);
  a->claimed = false;  // the slot is the connection's now: the server frees it when we leave
  *out = ch;
  return SHMCH_OK;
}

// We gave up after the server made the connection: attach and leave at once, so that the server
// ends it as any other (PROTOCOL §7.2). A client that takes CLIENT_ATTACHED and CLIENT_CLOSED in
// one step has nothing to read or write: the flags are all the server looks at.
void leave_connection(shmch_connect_attempt* a) {
  uint32_t id = load_acquire(slot_field(a, dir::kConnectionId));
  char name[256];
  Segment conn;
  if (connection_name(a->name, a->slot, name, sizeof name) &&
      conn.open(name, kHeaderSize, largest_segment(), nullptr) == SHMCH_OK) {
    uint32_t kind = 0;
    uint8_t* b = conn.data();
    if (validate_identity(b, &kind, nullptr) == SHMCH_OK && kind == SHMCH_SEGMENT_CONNECTION &&
        read_u32(b, off::kClientEpoch) == id) {
      uint32_t* state = word32(b, off::kState);
      uint32_t seen = load_acquire(state);
      while ((seen & SHMCH_STATE_CLIENT_ATTACHED) == 0 &&
             !__atomic_compare_exchange_n(state, &seen, seen | SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED,
                                          false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      }
    }
  }
  doorbell_ring(directory_doorbell(a));
}

// Gives the claimed slot back (PROTOCOL §7.2, "cancels").
void give_back(shmch_connect_attempt* a) {
  uint32_t* phase = slot_field(a, dir::kPhase);
  for (;;) {
    if (!still_ours(a)) return;
    uint32_t seen = load_acquire(phase);
    if (seen == SHMCH_SLOT_READY) {
      leave_connection(a);
      return;
    }
    if (seen == SHMCH_SLOT_REFUSED) {
      free_slot(a->directory.data(), a->slot);
      return;
    }
    // CLAIMED, or whatever someone wrote over it: the server frees a CANCELLED slot.
    if (__atomic_compare_exchange_n(phase, &seen, SHMCH_SLOT_CANCELLED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      __atomic_fetch_add(word32(a->directory.data(), dir::kClaims), 1, __ATOMIC_RELEASE);
      doorbell_ring(directory_doorbell(a));
      return;
    }
  }
}

}  // namespace

extern "C" {

shmch_status shmch_connect(const char* name, shmch_connect_attempt** out, shmch_error* err) {
  if (out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "out is NULL");
  *out = nullptr;
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  shmch_connect_attempt* a = new (std::nothrow) shmch_connect_attempt();
  if (a == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  std::strncpy(a->name, name, sizeof a->name - 1);
  // A directory is smaller than a channel's header: open at its size, decide by the kind.
  s = a->directory.open(name, kDirectoryHeaderSize, std::max(largest_segment(), directory_size(SHMCH_MAX_CLIENTS)),
                        err);
  if (s == SHMCH_OK) {
    const uint8_t* b = a->directory.data();
    // A server writes the magic first into a zero-filled segment: zero is one still being
    // created, worth waiting for; anything else but ours will never become a server.
    uint64_t magic = read_u64(b, off::kMagic);
    uint32_t state = load_acquire(reinterpret_cast<const uint32_t*>(b + off::kState));
    uint32_t kind = 0;
    if (magic != 0 && magic != kMagic) {
      s = fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "not a shmchannel segment (bad magic)");
    } else if ((state & SHMCH_STATE_SERVER_READY) == 0 || (state & SHMCH_STATE_SERVER_CLOSED) != 0) {
      s = fail(err, SHMCH_E_NOT_READY, 0, nullptr, "server not ready");
    } else if ((s = validate_identity(b, &kind, err)) != SHMCH_OK) {
    } else if (kind == SHMCH_SEGMENT_CHANNEL) {
      s = attach_channel(a, err);
    } else if (kind == SHMCH_SEGMENT_DIRECTORY) {
      s = claim_slot(a, err);
    } else if (kind == SHMCH_SEGMENT_CONNECTION) {
      s = fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "a connection of a server of many clients, not its name");
    } else {
      s = fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "unknown segment kind");
    }
  }
  if (s != SHMCH_OK) {
    delete a;
    return s;
  }
  *out = a;
  return SHMCH_OK;
}

shmch_status shmch_connect_finish(shmch_connect_attempt* a, int timeout_ms, shmch_channel** out, shmch_error* err) {
  if (out != nullptr) *out = nullptr;
  if (a == nullptr || out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "attempt or out is NULL");
  if (a->attached != nullptr) {
    *out = a->attached;
    a->attached = nullptr;
    return SHMCH_OK;
  }
  if (!a->claimed) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "the attempt is over");
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
  for (;;) {
    if (a->directory.lost()) return fail(err, SHMCH_E_TRUNCATED, 0, nullptr, "the directory shrank");
    uint32_t* bell = slot_field(a, dir::kOpenBell);
    // Read the bell before the phase: a ring after this read ends the wait below.
    uint32_t seen = __atomic_load_n(bell, __ATOMIC_SEQ_CST);
    if (!still_ours(a)) {
      a->claimed = false;
      return fail(err, SHMCH_E_PROTOCOL, 0, nullptr, "someone else took our slot of the directory");
    }
    uint32_t phase = load_acquire(slot_field(a, dir::kPhase));
    if (phase == SHMCH_SLOT_READY) return attach_connection(a, out, err);
    if (phase == SHMCH_SLOT_REFUSED) {
      // The server reads REFUSED no more: the client that saw it frees the slot (PROTOCOL §7.2).
      free_slot(a->directory.data(), a->slot);
      a->claimed = false;
      return fail(err, SHMCH_E_RESOURCE, 0, nullptr, "the server could not make the connection");
    }
    if (server_gone(a)) return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "server gone");
    int64_t left = deadline - now_ms();
    if (left <= 0) return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "the server has not made the connection yet");
    // The server rings open_bell for READY, REFUSED and its close; its death rings nothing.
    uint32_t unused = 0;
    doorbell_wait(bell, seen, &unused, 0, static_cast<int>(std::min<int64_t>(left, kServerCheckMs)));
  }
}

void shmch_connect_cancel(shmch_connect_attempt* a) {
  if (a == nullptr) return;
  // Attached to a server of one client and never handed out: leave as any client does.
  if (a->attached != nullptr) shmch_close(a->attached);
  if (a->claimed) give_back(a);
  delete a;
}

shmch_status shmch_attach(const char* name, shmch_channel** out, shmch_error* err) {
  if (out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "out is NULL");
  *out = nullptr;
  shmch_connect_attempt* a = nullptr;
  shmch_status s = shmch_connect(name, &a, err);
  if (s != SHMCH_OK) return s;
  s = shmch_connect_finish(a, kAttachTimeoutMs, out, err);
  shmch_connect_cancel(a);
  return s;
}

}  // extern "C"
