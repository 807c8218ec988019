// The C API of shmchannel.h: segment setup and validation, attach/accept, waiting, liveness.
#include <errno.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "channel_internal.h"
#include "directory.h"
#include "doorbell.h"
#include "layout.h"
#include "liveness.h"
#include "pool.h"
#include "ring.h"
#include "segment.h"
#include "shmchannel.h"
#include "status.h"
#include "test_hooks.h"
#include "truncation_guard.h"

using namespace shmch;

void (*shmch::test_hooks::before_writer_marked_blocked)(shmch_channel*) = nullptr;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture
#endif

namespace {

// What a call that may have touched pages the segment lost (truncation_guard.h) returns instead
// of its result: whatever it read from them was zeros, and whatever it wrote reached no one.
shmch_status unless_lost(shmch_channel* ch, shmch_status s) {
  return ch->segment.lost() ? SHMCH_E_TRUNCATED : s;
}

uint32_t max_frame_payload(uint32_t capacity) {
  // A quarter of the ring lets the reader drain one fragment while the next is written.
  return capacity / 4 - SHMCH_FRAME_HEADER_SIZE;
}

struct Directions {
  RingView s2c, c2s;
  PoolView pool_s2c, pool_c2s;
};

Directions directions(shmch_channel* ch) {
  uint8_t* b = base(ch);
  SegmentLayout l = segment_layout(ch->capacity, ch->pool_capacity);
  uint32_t slots = pool_release_slots(ch->pool_capacity);
  Directions d;
  d.s2c = RingView{b + off::kRingS2C, b + l.ring_s2c, ch->capacity};
  d.c2s = RingView{b + off::kRingC2S, b + l.ring_c2s, ch->capacity};
  d.pool_s2c = PoolView{b + l.pool_s2c, b + off::kRingS2C, b + l.releases_s2c, ch->pool_capacity, slots};
  d.pool_c2s = PoolView{b + l.pool_c2s, b + off::kRingC2S, b + l.releases_c2s, ch->pool_capacity, slots};
  return d;
}

}  // namespace

namespace shmch {

size_t largest_segment() {
  return segment_layout(SHMCH_MAX_RING_CAPACITY, SHMCH_MAX_POOL_CAPACITY).size;
}

// Each side starts its private counters where the shared ones are: after a reset they are not
// zero, and the server may have written to a client before it came (PROTOCOL §1.2).
void wire_rings(shmch_channel* ch) {
  uint8_t* b = base(ch);
  Directions d = directions(ch);
  if (ch->server_doorbell == nullptr) ch->server_doorbell = word32(b, off::kServerDoorbell);
  uint32_t* server_bell = ch->server_doorbell;
  uint32_t* client_bell = word32(b, off::kClientDoorbell);
  uint32_t* server_sleeping = word32(b, off::kServerSleeping);
  uint32_t* client_sleeping = word32(b, off::kClientSleeping);
  auto shared = [b](size_t control, size_t field) { return load_acquire(word32(b, control + field)); };
  if (ch->role == SHMCH_SERVER) {
    ch->writer.attach(d.s2c, 0, client_sleeping, client_bell);
    ch->reader.attach(d.c2s, 0, ch->max_message_size, client_bell, &ch->borrowed);
    ch->pool.attach(d.pool_s2c, 0);
    ch->borrowed.attach(d.pool_c2s, 0, client_bell);
    ch->own_doorbell = server_bell;
    ch->own_sleeping = server_sleeping;
  } else {
    ch->writer.attach(d.c2s, shared(off::kRingC2S, off::kTail), server_sleeping, server_bell);
    ch->reader.attach(d.s2c, shared(off::kRingS2C, off::kTail), ch->max_message_size, server_bell, &ch->borrowed);
    ch->pool.attach(d.pool_c2s, shared(off::kRingC2S, off::kReleaseTail));
    ch->borrowed.attach(d.pool_s2c, shared(off::kRingS2C, off::kReleaseHead), server_bell);
    ch->own_doorbell = client_bell;
    ch->own_sleeping = client_sleeping;
  }
}

const char* version_detail(uint32_t version) {
  // err->detail is a const char* the caller does not free: this thread's buffer holds it until
  // this thread's next failure of the kind.
  static thread_local char detail[96];
  std::snprintf(detail, sizeof detail, "segment speaks protocol version %u, this library version %u", version,
                SHMCH_PROTOCOL_VERSION);
  return detail;
}

shmch_status validate_identity(const uint8_t* b, uint32_t* kind, shmch_error* err) {
  if (read_u64(b, off::kMagic) != kMagic)
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "not a shmchannel segment (bad magic)");
  uint32_t version = read_u32(b, off::kVersion);
  if (version != SHMCH_PROTOCOL_VERSION) return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, version_detail(version));
  *kind = read_u32(b, off::kKind);
  return SHMCH_OK;
}

shmch_status validate_header(const uint8_t* b, size_t mapped_size, uint32_t kind, uint32_t* capacity,
                             uint32_t* max_message_size, uint32_t* pool_capacity, shmch_error* err) {
  uint32_t stated_kind = 0;
  shmch_status s = validate_identity(b, &stated_kind, err);
  if (s != SHMCH_OK) return s;
  if (stated_kind != kind) {
    if (stated_kind == SHMCH_SEGMENT_DIRECTORY)
      return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "a directory of a server of many clients, not a channel");
    if (stated_kind == SHMCH_SEGMENT_CONNECTION)
      return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "a connection of a server of many clients, not its name");
    if (stated_kind == SHMCH_SEGMENT_CHANNEL)
      return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "a channel, not a connection");
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "unknown segment kind");
  }
  uint32_t cap = read_u32(b, off::kRingCapacity);
  uint32_t max = read_u32(b, off::kMaxMessageSize);
  uint32_t pool = read_u32(b, off::kPoolCapacity);
  if (read_u32(b, off::kHeaderSize) != kHeaderSize || !valid_sizes(cap, max, pool))
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "inconsistent segment header");
  uint64_t size = segment_layout(cap, pool).size;
  if (read_u64(b, off::kSegmentSize) != size || mapped_size != size)
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "inconsistent segment header");
  *capacity = cap;
  *max_message_size = max;
  *pool_capacity = pool;
  return SHMCH_OK;
}

shmch_status validate_options(const shmch_options* o, shmch_error* err) {
  if (o == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "options is NULL");
  if (!valid_sizes(o->ring_capacity, o->max_message_size, 0)) {
    return fail(err, SHMCH_E_INVALID_SIZE, 0, nullptr, "ring capacity or max message size out of range");
  }
  if (!valid_pool_capacity(o->pool_capacity))
    return fail(err, SHMCH_E_INVALID_SIZE, 0, nullptr, "pool capacity not a multiple of 4096 up to 2^30");
  return SHMCH_OK;
}

shmch_status reclaim_if_stale(const char* name, shmch_error* err) {
  Segment old;
  shmch_status s = old.open(name, kDirectoryHeaderSize, SIZE_MAX, err);
  if (s == SHMCH_E_NOT_FOUND) return SHMCH_OK;  // gone meanwhile: just retry
  if (s == SHMCH_E_NOT_READY) return fail(err, SHMCH_E_EXISTS, 0, nullptr, "being created");
  if (s != SHMCH_OK) return s;
  const uint8_t* b = old.data();
  uint32_t state = load_acquire(reinterpret_cast<const uint32_t*>(b + off::kState));
  uint32_t pid = read_u32(b, off::kServerPid);
  uint64_t start = read_u64(b, off::kServerStartTime);
  bool ours = read_u64(b, off::kMagic) == kMagic;
  if (ours && (state & SHMCH_STATE_SERVER_CLOSED) == 0 && process_alive(pid, start)) {
    if (err != nullptr) err->owner_pid = pid;
    return fail(err, SHMCH_E_EXISTS, EEXIST, "shm_open", "owned by a live server");
  }
  if (!ours) {
    // Not a shmchannel segment: never delete someone else's data.
    return fail(err, SHMCH_E_EXISTS, EEXIST, "shm_open", "name is used by another program");
  }
  // A directory's connections first: once the name is gone, a new server may make its own.
  if (read_u32(b, off::kKind) == SHMCH_SEGMENT_DIRECTORY) unlink_connections(name, b, read_u32(b, dir::kMaxClients));
  if (shm_unlink(name) != 0 && errno != ENOENT) {
    int e = errno;
    return fail(err, status_from_errno(e), e, "shm_unlink", "cannot reclaim stale segment");
  }
  return SHMCH_OK;
}

shmch_channel* new_channel(const char* name, shmch_role role) {
  shmch_channel* ch = new (std::nothrow) shmch_channel();
  if (ch == nullptr) return nullptr;
  ch->role = role;
  std::strncpy(ch->name, name, sizeof ch->name - 1);
  return ch;
}

void publish_header(shmch_channel* ch, const shmch_options* o, uint32_t kind, uint32_t epoch) {
  uint8_t* b = base(ch);
  ch->kind = kind;
  ch->capacity = o->ring_capacity;
  ch->max_message_size = o->max_message_size;
  ch->pool_capacity = o->pool_capacity;
  write_u64(b, off::kMagic, kMagic);
  write_u32(b, off::kVersion, SHMCH_PROTOCOL_VERSION);
  write_u32(b, off::kHeaderSize, kHeaderSize);
  write_u64(b, off::kSegmentSize, segment_layout(ch->capacity, ch->pool_capacity).size);
  write_u32(b, off::kRingCapacity, ch->capacity);
  write_u32(b, off::kMaxMessageSize, ch->max_message_size);
  write_u32(b, off::kPoolCapacity, ch->pool_capacity);
  write_u32(b, off::kKind, kind);
  write_u32(b, off::kClientEpoch, epoch);
  uint32_t pid = static_cast<uint32_t>(getpid());
  write_u32(b, off::kServerPid, pid);
  write_u64(b, off::kServerStartTime, process_start_time(pid));
  wire_rings(ch);
  store_release(state_word(ch), SHMCH_STATE_SERVER_READY);
}

shmch_status attach_mapped(shmch_channel* ch, shmch_error* err) {
  uint8_t* b = base(ch);
  uint32_t state = load_acquire(state_word(ch));
  // Attach: exactly one client may set CLIENT_ATTACHED. A compare-and-swap that fails gives
  // the state as it is now: look again, so that another flag changing meanwhile is not taken
  // for another client.
  bool attached = false;
  while ((state & (SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED | SHMCH_STATE_SERVER_CLOSED)) == 0 &&
         (state & SHMCH_STATE_SERVER_READY) != 0) {
    if (__atomic_compare_exchange_n(state_word(ch), &state, state | SHMCH_STATE_CLIENT_ATTACHED, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
      attached = true;
      break;
    }
  }
  if (!attached && ((state & SHMCH_STATE_SERVER_CLOSED) != 0 || (state & SHMCH_STATE_SERVER_READY) == 0)) {
    delete ch;
    return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "server not ready");
  }
  if (!attached) {
    uint32_t holder = __atomic_load_n(word32(b, off::kClientPid), __ATOMIC_ACQUIRE);
    uint64_t holder_start = read_u64(b, off::kClientStartTime);
    state = load_acquire(state_word(ch));
    // The slot's holder closed or died, and the server has not freed the slot yet (it does
    // at its next wake-up): not busy, just not ready. A holder still without a pid is
    // transient too: it writes its pid within microseconds (then a retry sees BUSY), or it
    // died and the server frees the slot.
    bool leaving = (state & SHMCH_STATE_CLIENT_CLOSED) != 0 ||
                   ((state & SHMCH_STATE_CLIENT_ATTACHED) != 0 &&
                    (holder == 0 || !process_alive(holder, holder_start)));
    // Knock: a holder that died before it rang (between its attach and its hello) left the
    // server no reason to look at the slot, and an idle server has no timer that would.
    doorbell_ring(ch->server_doorbell != nullptr ? ch->server_doorbell : word32(b, off::kServerDoorbell));
    delete ch;
    if (leaving) return fail(err, SHMCH_E_NOT_READY, 0, nullptr, "the previous client is leaving");
    if (err != nullptr) err->owner_pid = holder;
    return fail(err, SHMCH_E_BUSY, 0, nullptr, "another client is connected");
  }
  ch->peer_pid = read_u32(b, off::kServerPid);
  ch->peer_start_time = read_u64(b, off::kServerStartTime);
  uint32_t pid = static_cast<uint32_t>(getpid());
  write_u64(b, off::kClientStartTime, process_start_time(pid));
  __atomic_store_n(word32(b, off::kClientPid), pid, __ATOMIC_RELEASE);
  wire_rings(ch);
  // Announce the attach: from now on the server watches this pid, even if we die before a
  // word (it learns of the attach, and the pid, at its next look).
  doorbell_ring(ch->server_doorbell);
  if (ch->segment.lost()) {
    shmch_close(ch);
    return fail(err, SHMCH_E_TRUNCATED, 0, nullptr, "the segment shrank while attaching");
  }
  return SHMCH_OK;
}

}  // namespace shmch

extern "C" {

shmch_status shmch_guard_truncation(void) {
  return install_truncation_guard();
}

shmch_status shmch_unguard_truncation(void) {
  return uninstall_truncation_guard();
}

shmch_status shmch_validate_name(const char* name, shmch_error* err) {
  if (name == nullptr || name[0] != '/')
    return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "must start with '/'");
  size_t n = strnlen(name, 256);
  if (n < 2) return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "must have a character after '/'");
  if (n > 255) return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "longer than 255 bytes");
  if (std::strchr(name + 1, '/') != nullptr)
    return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "may not contain '/' after the first");
  // /dev/shm/. and /dev/shm/.. are the directories themselves: shm_open can never open them.
  if (std::strcmp(name, "/.") == 0 || std::strcmp(name, "/..") == 0)
    return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "'.' and '..' name directories, not segments");
  return SHMCH_OK;
}

shmch_status shmch_create(const char* name, const shmch_options* o, shmch_channel** out,
                          shmch_error* err) {
  if (out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "out is NULL");
  *out = nullptr;
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  s = validate_options(o, err);
  if (s != SHMCH_OK) return s;
  shmch_channel* ch = new_channel(name, SHMCH_SERVER);
  if (ch == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  size_t size = segment_layout(o->ring_capacity, o->pool_capacity).size;
  s = ch->segment.create(name, size, o->mode, true, err);
  if (s == SHMCH_E_EXISTS) {
    s = reclaim_if_stale(name, err);
    if (s == SHMCH_OK) s = ch->segment.create(name, size, o->mode, true, err);
  }
  if (s != SHMCH_OK) {
    delete ch;
    return s;
  }
  publish_header(ch, o, SHMCH_SEGMENT_CHANNEL, 0);
  *out = ch;
  return SHMCH_OK;
}

void shmch_close(shmch_channel* ch) {
  if (ch == nullptr) return;
  // A server's connection is its server's to end: that frees its slot too.
  if (ch->server != nullptr) {
    shmch_server_disconnect(ch->server, ch);
    return;
  }
  if (ch->segment.data() != nullptr) {
    // Unlink only if the name still refers to our segment, and before saying we closed: after
    // that, a new server may reclaim the name, and its segment is not ours to remove.
    if (ch->role == SHMCH_SERVER && ch->segment.is_named(ch->name)) shm_unlink(ch->name);
    uint32_t flag = ch->role == SHMCH_SERVER ? SHMCH_STATE_SERVER_CLOSED : SHMCH_STATE_CLIENT_CLOSED;
    __atomic_fetch_or(state_word(ch), flag, __ATOMIC_ACQ_REL);
    // Wake the peer so it notices at once rather than at its next timed wake-up.
    uint32_t* peer_bell = ch->role == SHMCH_SERVER ? word32(base(ch), off::kClientDoorbell) : ch->server_doorbell;
    if (peer_bell != nullptr) doorbell_ring(peer_bell);
  }
  delete ch;
}

void shmch_get_info(shmch_channel* ch, shmch_info* info) {
  if (info == nullptr) return;
  if (ch == nullptr) {
    *info = shmch_info{};
    return;
  }
  uint8_t* b = base(ch);
  info->ring_capacity = ch->capacity;
  info->max_message_size = ch->max_message_size;
  info->max_frame_payload = max_frame_payload(ch->capacity);
  // A connection's client is the one that claimed its slot, whatever the header says now.
  bool from_header = ch->role == SHMCH_SERVER && ch->kind == SHMCH_SEGMENT_CHANNEL;
  info->peer_pid = from_header ? __atomic_load_n(word32(b, off::kClientPid), __ATOMIC_ACQUIRE) : ch->peer_pid.load();
  info->client_epoch = read_u32(b, off::kClientEpoch);
  info->state = load_acquire(state_word(ch));
  info->pool_capacity = ch->pool_capacity;
}

// After a write that found the ring full (space_for() flagged the wait in the ring first).
// A waker that looked at writer_blocked before this store, after the reader had freed space
// and rung, counted that ring in what it sleeps on and would sleep through it: if the space is
// free by now, wake it to look again.
static void mark_writer_blocked(shmch_channel* ch) {
  if (test_hooks::before_writer_marked_blocked != nullptr) test_hooks::before_writer_marked_blocked(ch);
  ch->writer_blocked.store(true);
  fence_seq_cst();
  if (ch->writer.waiting_cleared()) shmch_wake(ch);
}

shmch_status shmch_write(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t total,
                         const uint8_t* payload, uint32_t length) {
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  if (total > ch->max_message_size) return SHMCH_E_INVALID_SIZE;
  if (length > max_frame_payload(ch->capacity)) return SHMCH_E_INVALID_ARG;
  shmch_status s = unless_lost(ch, ch->writer.write(kind, id, total, payload, length));
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  if (s == SHMCH_E_FULL) mark_writer_blocked(ch);
  return s;
}

shmch_status shmch_write_frames(shmch_channel* ch, const uint8_t* frames, size_t length,
                                size_t* consumed) {
  if (consumed == nullptr) return SHMCH_E_INVALID_ARG;
  *consumed = 0;
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  shmch_status s = unless_lost(ch, ch->writer.write_frames(frames, length, ch->max_message_size,
                                                           max_frame_payload(ch->capacity), consumed));
  if (s == SHMCH_E_TRUNCATED) *consumed = 0;
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  // Not all taken: the ring is full and space_for() announced the wait.
  if (s == SHMCH_OK && *consumed < length) mark_writer_blocked(ch);
  return s;
}

shmch_status shmch_read(shmch_channel* ch, uint8_t* dst, size_t dst_capacity, size_t* written) {
  return shmch_read_announcing(ch, dst, dst_capacity, UINT32_MAX, written);
}

shmch_status shmch_read_announcing(shmch_channel* ch, uint8_t* dst, size_t dst_capacity, uint32_t large_from,
                                   size_t* written) {
  if (written == nullptr) return SHMCH_E_INVALID_ARG;
  *written = 0;
  if (ch == nullptr || (dst == nullptr && dst_capacity > 0)) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  shmch_status s = unless_lost(ch, ch->reader.read(dst, dst_capacity, large_from == 0 ? 1 : large_from, written));
  if (s == SHMCH_E_TRUNCATED) *written = 0;
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  return s;
}

shmch_status shmch_read_continuation(shmch_channel* ch, uint8_t* dst, size_t dst_capacity,
                                     size_t* written) {
  if (written == nullptr) return SHMCH_E_INVALID_ARG;
  *written = 0;
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  if (dst == nullptr) return SHMCH_E_INVALID_ARG;
  shmch_status s = unless_lost(ch, ch->reader.read_continuation(dst, dst_capacity, written));
  if (s == SHMCH_E_TRUNCATED) *written = 0;
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  return s;
}

static void mark_loan_blocked(shmch_channel* ch) {
  ch->loan_blocked.store(true);
  fence_seq_cst();
  if (ch->pool.waiting_cleared()) shmch_wake(ch);
}

shmch_status shmch_loan(shmch_channel* ch, uint32_t size, uint8_t** data, uint32_t* offset, uint32_t* extent) {
  if (data != nullptr) *data = nullptr;
  if (offset != nullptr) *offset = 0;
  if (extent != nullptr) *extent = 0;
  if (ch == nullptr || data == nullptr || offset == nullptr || extent == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  if (size > ch->max_message_size && ch->pool.enabled()) return SHMCH_E_INVALID_SIZE;
  shmch_status s = unless_lost(ch, ch->pool.loan(size, offset, data, extent));
  if (s != SHMCH_OK) {
    *data = nullptr;
    *offset = 0;
    *extent = 0;
  }
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  if (s == SHMCH_E_FULL) mark_loan_blocked(ch);
  return s;
}

shmch_status shmch_unloan(shmch_channel* ch, uint32_t offset) {
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  return ch->pool.unloan(offset);
}

shmch_status shmch_write_loan(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t offset, uint32_t start,
                              uint32_t length) {
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  if (length > ch->max_message_size) return SHMCH_E_INVALID_SIZE;
  shmch_descriptor d;
  shmch_status s = ch->pool.describe(offset, start, length, &d);
  if (s != SHMCH_OK) return s;
  s = unless_lost(ch, ch->writer.write_loaned(kind, id, length, d));
  if (s == SHMCH_OK) ch->pool.mark_sent(offset);
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  if (s == SHMCH_E_FULL) mark_writer_blocked(ch);
  return s;
}

shmch_status shmch_borrowed(shmch_channel* ch, uint32_t offset, const uint8_t** data, uint32_t* extent) {
  if (data != nullptr) *data = nullptr;
  if (extent != nullptr) *extent = 0;
  if (ch == nullptr || data == nullptr || extent == nullptr) return SHMCH_E_INVALID_ARG;
  uint8_t* p = nullptr;
  shmch_status s = ch->borrowed.find(offset, &p, extent);
  *data = p;
  return s;
}

shmch_status shmch_release(shmch_channel* ch, uint32_t offset) {
  if (ch == nullptr) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  if (ch->failed.load(std::memory_order_relaxed)) return SHMCH_E_PROTOCOL;
  shmch_status s = unless_lost(ch, ch->borrowed.release(offset));
  if (s == SHMCH_E_PROTOCOL) ch->failed.store(true);
  return s;
}

}  // extern "C"

namespace shmch {
// A blocked writer whose reader has since freed space. Checked, like readable(), before and
// after announcing sleep: the reader's doorbell ring may have come while the waker was
// disarmed, before it looked at the bell, and would otherwise be lost.
bool space_freed(shmch_channel* ch) {
  return (ch->writer_blocked.load() && ch->writer.waiting_cleared() && ch->writer_blocked.exchange(false)) ||
         (ch->loan_blocked.load() && ch->pool.waiting_cleared() && ch->loan_blocked.exchange(false));
}


// The peer flagged that it left (a server: its client closed; a client: its server closed or
// dropped it). Flags this side sets itself do not count, or a server that dropped its client
// would be woken at once until the client goes; nor does CLIENT_CLOSED without CLIENT_ATTACHED,
// which no client sets, or a server would be woken at once by a stray flag forever.
bool peer_flagged_leave(shmch_channel* ch) {
  uint32_t state = load_acquire(state_word(ch));
  if (ch->role == SHMCH_CLIENT) return (state & (SHMCH_STATE_SERVER_CLOSED | SHMCH_STATE_CLIENT_DROPPED)) != 0;
  uint32_t left = SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED;
  return (state & left) == left;
}
}  // namespace shmch

extern "C" {

namespace {
// A shrunk segment is reported once as readable, so that the reader calls shmch_read and
// learns of it there; after that the channel waits like a failed one.
bool report_lost(shmch_channel* ch) {
  if (ch->lost_reported || !ch->segment.lost()) return false;
  ch->lost_reported = true;
  return true;
}

// `ignore_readable`: data in the inbound ring does not end the wait (SHMCH_WAIT_IGNORE_READABLE).
int wait_for_event(shmch_channel* ch, int timeout_ms, bool ignore_readable) {
  // A failed channel is never read again, so only the doorbell or the timeout ends the wait.
  bool failed = ch->failed.load(std::memory_order_relaxed) || ch->segment.lost();
  // Whether the ring's data counts: never on a failed channel, nor when the caller said not.
  auto readable = [&] { return !failed && !ignore_readable && ch->reader.readable(); };
  if (readable()) return SHMCH_WAIT_READABLE;
  if (!failed && space_freed(ch)) return SHMCH_WAIT_WOKEN;
  // Read the bell before saying we sleep: a ring after this read makes the wait return.
  uint32_t seen = __atomic_load_n(ch->own_doorbell, __ATOMIC_SEQ_CST);
  uint32_t private_seen = __atomic_load_n(ch->wake_bell, __ATOMIC_SEQ_CST);
  // shmch_wake() sets the flag before it rings: seen after `private_seen`, or its ring is not
  // in it.
  if (ch->wake_flag->exchange(false)) return SHMCH_WAIT_WOKEN;
  // A peer sets its flag before it rings: a ring already counted in `seen` shows here.
  if (peer_flagged_leave(ch)) return SHMCH_WAIT_WOKEN;
  store_seq_cst(ch->own_sleeping, 1);
  // Pairs with the writer's fence between publishing head and looking at our flag.
  fence_seq_cst();
  if (readable() || (!failed && space_freed(ch))) {
    store_seq_cst(ch->own_sleeping, 0);
    return readable() ? SHMCH_WAIT_READABLE : SHMCH_WAIT_WOKEN;
  }
  bool rang = doorbell_wait(ch->own_doorbell, seen, ch->wake_bell, private_seen, timeout_ms);
  store_seq_cst(ch->own_sleeping, 0);
  // Ignoring readable data, a ring of the peer's writer (it wrote more) ends the sleep as a
  // wake: the caller looks at what it waits for and sleeps again; a writer that filled the ring
  // blocks and rings no more, so this does not spin.
  if (readable()) return SHMCH_WAIT_READABLE;
  if (!failed && space_freed(ch)) return SHMCH_WAIT_WOKEN;
  return rang ? SHMCH_WAIT_WOKEN : SHMCH_WAIT_TIMEOUT;
}
}  // namespace

int shmch_wait(shmch_channel* ch, int timeout_ms) { return shmch_wait_flags(ch, timeout_ms, 0); }

int shmch_wait_flags(shmch_channel* ch, int timeout_ms, int flags) {
  if (ch == nullptr) return SHMCH_WAIT_TIMEOUT;
  if (report_lost(ch)) return SHMCH_WAIT_READABLE;
  int r = wait_for_event(ch, timeout_ms, (flags & SHMCH_WAIT_IGNORE_READABLE) != 0);
  return report_lost(ch) ? SHMCH_WAIT_READABLE : r;
}

void shmch_wake(shmch_channel* ch) {
  if (ch == nullptr) return;
  // A signal handler may call this: the code it interrupted may be about to read errno.
  int saved_errno = errno;
  ch->wake_flag->store(true);
  private_bell_ring(ch->wake_bell);
  // Without futex_waitv the wait sleeps on the doorbell alone.
  if (!private_bells_work()) doorbell_ring(ch->own_doorbell);
  errno = saved_errno;
}

int shmch_wake_is_private(void) {
  return private_bells_work() ? 1 : 0;
}

int shmch_watch_segment(shmch_channel* ch, int inotify_fd) {
  if (ch == nullptr) {
    errno = EINVAL;
    return -1;
  }
  // Through our descriptor, not the name: the name may be gone, or taken by a successor.
  std::string path = "/proc/self/fd/" + std::to_string(ch->segment.fd());
  // IN_MODIFY: ftruncate raises it (as write(2) does); stores through a mapping do not.
  return inotify_add_watch(inotify_fd, path.c_str(), IN_MODIFY);
}

int shmch_check_segment(shmch_channel* ch) {
  if (ch == nullptr) return 0;
  return ch->segment.check_shrunk() ? 1 : 0;
}

int shmch_open_peer_fd(shmch_channel* ch) {
  if (ch == nullptr) return -1;
  uint32_t pid = ch->peer_pid.load();
  uint64_t start_time = ch->peer_start_time.load();
  if (pid == 0) return -1;
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
  if (fd < 0) return -1;
  // The pid may have been reused just before the open. If the process holding it after the
  // open is still the peer (same start time), the descriptor is the peer's.
  if (!process_alive(pid, start_time)) {
    close(fd);
    return -1;
  }
  return fd;
}

int shmch_peer_state(shmch_channel* ch) {
  if (ch == nullptr) return SHMCH_PEER_NONE;
  uint8_t* b = base(ch);
  uint32_t state = load_acquire(state_word(ch));
  if (ch->role == SHMCH_CLIENT) {
    if ((state & (SHMCH_STATE_SERVER_CLOSED | SHMCH_STATE_CLIENT_DROPPED)) != 0) return SHMCH_PEER_GONE;
    return process_alive(ch->peer_pid, ch->peer_start_time) ? SHMCH_PEER_ALIVE : SHMCH_PEER_GONE;
  }
  if (ch->kind == SHMCH_SEGMENT_CONNECTION) {
    // Its client is known from the slot it claimed, before it attaches and whatever it writes.
    uint32_t left = SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED;
    if ((state & left) == left) return SHMCH_PEER_GONE;
    return process_alive(ch->peer_pid, ch->peer_start_time) ? SHMCH_PEER_ALIVE : SHMCH_PEER_GONE;
  }
  if ((state & SHMCH_STATE_CLIENT_ATTACHED) == 0) {
    ch->pidless_since_ms.store(0);
    return SHMCH_PEER_NONE;
  }
  uint32_t pid = __atomic_load_n(word32(b, off::kClientPid), __ATOMIC_ACQUIRE);
  if (pid == 0) {
    if ((state & SHMCH_STATE_CLIENT_CLOSED) != 0) return SHMCH_PEER_GONE;
    // Attached but no pid yet: the client is between its attach and its pid store, which
    // takes microseconds. One that stays pidless (it died right there) frees the slot.
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t now_ms = int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
    int64_t since = ch->pidless_since_ms.load();
    if (since == 0) {
      ch->pidless_since_ms.store(now_ms);
      return SHMCH_PEER_ALIVE;
    }
    return now_ms - since > 2000 ? SHMCH_PEER_GONE : SHMCH_PEER_ALIVE;
  }
  ch->pidless_since_ms.store(0);
  if (pid != ch->peer_pid) {
    ch->peer_start_time = read_u64(b, off::kClientStartTime);
    ch->peer_pid = pid;
  }
  if ((state & SHMCH_STATE_CLIENT_CLOSED) != 0) return SHMCH_PEER_GONE;
  return process_alive(ch->peer_pid, ch->peer_start_time) ? SHMCH_PEER_ALIVE : SHMCH_PEER_GONE;
}

shmch_status shmch_accept_next(shmch_channel* ch) {
  // A connection serves one client and is never reset (PROTOCOL §7.3).
  if (ch == nullptr || ch->role != SHMCH_SERVER || ch->kind != SHMCH_SEGMENT_CHANNEL) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  uint8_t* b = base(ch);
  // Discard what the old client left unread and what it sent that we did not read.
  ch->writer.reset_to(ch->writer.head());
  store_release(word32(b, off::kRingS2C + off::kTail), ch->writer.head());
  store_release(word32(b, off::kRingC2S + off::kHead), ch->reader.tail());
  ch->reader.reset_to(ch->reader.tail());
  store_seq_cst(word32(b, off::kRingS2C + off::kWriterWaiting), 0);
  store_seq_cst(word32(b, off::kRingC2S + off::kWriterWaiting), 0);
  // The pools: what the client held of ours comes back, what we held of its is forgotten, and
  // both release rings start empty where their counters are.
  uint32_t s2c_released = ch->pool.forget_sent();
  store_release(word32(b, off::kRingS2C + off::kReleaseTail), s2c_released);
  store_release(word32(b, off::kRingS2C + off::kReleaseHead), s2c_released);
  uint32_t c2s_released = ch->borrowed.forget_held();
  store_release(word32(b, off::kRingC2S + off::kReleaseHead), c2s_released);
  store_release(word32(b, off::kRingC2S + off::kReleaseTail), c2s_released);
  store_seq_cst(word32(b, off::kRingS2C + off::kPoolWaiting), 0);
  store_seq_cst(word32(b, off::kRingC2S + off::kPoolWaiting), 0);
  store_seq_cst(word32(b, off::kClientSleeping), 0);
  __atomic_store_n(word32(b, off::kClientPid), 0, __ATOMIC_RELEASE);
  write_u64(b, off::kClientStartTime, 0);
  write_u32(b, off::kClientEpoch, read_u32(b, off::kClientEpoch) + 1);
  ch->peer_pid = 0;
  ch->peer_start_time = 0;
  ch->pidless_since_ms.store(0);
  ch->writer_blocked.store(false);
  ch->loan_blocked.store(false);
  ch->failed.store(false);
  __atomic_fetch_and(state_word(ch),
                     ~(SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED | SHMCH_STATE_CLIENT_DROPPED),
                     __ATOMIC_ACQ_REL);
  return SHMCH_OK;
}

shmch_status shmch_drop_client(shmch_channel* ch) {
  if (ch == nullptr || ch->role != SHMCH_SERVER) return SHMCH_E_INVALID_ARG;
  if (ch->segment.lost()) return SHMCH_E_TRUNCATED;
  // Nothing more is read from this client, whatever it writes until it leaves.
  ch->failed.store(true);
  // With no client attached (the bad bytes came from someone else), the slot is taken as if a
  // client had attached and left at once: no client can attach until accept_next, and no new
  // client ever sees DROPPED.
  uint32_t state = load_acquire(state_word(ch));
  for (;;) {
    uint32_t next = (state & SHMCH_STATE_CLIENT_ATTACHED) != 0
                        ? state | SHMCH_STATE_CLIENT_DROPPED
                        : state | SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED;
    if (__atomic_compare_exchange_n(state_word(ch), &state, next, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) break;
  }
  doorbell_ring(word32(base(ch), off::kClientDoorbell));
  // Our own waker checks the peer now rather than at its next timeout.
  doorbell_ring(ch->own_doorbell);
  return SHMCH_OK;
}

}  // extern "C"
