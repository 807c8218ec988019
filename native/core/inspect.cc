// Looking at a name from outside, without attaching: what it holds (shmch_inspect), who holds a
// directory's slots (shmch_inspect_clients), and removing it with what it names (shmch_unlink).
#include <errno.h>
#include <sys/mman.h>

#include <algorithm>

#include "channel_internal.h"
#include "directory.h"
#include "layout.h"
#include "liveness.h"
#include "segment.h"
#include "shmchannel.h"
#include "status.h"

using namespace shmch;

namespace {

size_t largest_object() { return std::max(largest_segment(), directory_size(SHMCH_MAX_CLIENTS)); }

// Opens `name` and validates its magic, version and kind.
shmch_status open_ours(const char* name, Segment* seg, uint32_t* kind, shmch_error* err) {
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  s = seg->open(name, kDirectoryHeaderSize, largest_object(), err);
  if (s != SHMCH_OK) return s;
  return validate_identity(seg->data(), kind, err);
}

shmch_status inspect_directory(const Segment& seg, shmch_segment_info* info, shmch_error* err) {
  const uint8_t* b = seg.data();
  DirectoryHeader h;
  shmch_status s = validate_directory(b, seg.size(), &h, err);
  if (s != SHMCH_OK) return s;
  info->ring_capacity = h.ring_capacity;
  info->max_message_size = h.max_message_size;
  info->pool_capacity = h.pool_capacity;
  info->max_clients = h.max_clients;
  info->state = load_acquire(reinterpret_cast<const uint32_t*>(b + dir::kState));
  info->server_pid = read_u32(b, dir::kServerPid);
  info->server_alive = (info->state & SHMCH_STATE_SERVER_CLOSED) == 0 &&
                       process_alive(info->server_pid, read_u64(b, dir::kServerStartTime));
  return SHMCH_OK;
}

shmch_status inspect_channel(const Segment& seg, uint32_t kind, shmch_segment_info* info, shmch_error* err) {
  const uint8_t* b = seg.data();
  shmch_status s = validate_header(b, seg.size(), kind, &info->ring_capacity, &info->max_message_size,
                                   &info->pool_capacity, err);
  if (s != SHMCH_OK) return s;
  info->max_clients = 1;
  info->connection_id = kind == SHMCH_SEGMENT_CONNECTION ? read_u32(b, off::kClientEpoch) : 0;
  info->state = load_acquire(reinterpret_cast<const uint32_t*>(b + off::kState));
  info->server_pid = read_u32(b, off::kServerPid);
  info->client_pid = read_u32(b, off::kClientPid);
  info->server_alive = (info->state & SHMCH_STATE_SERVER_CLOSED) == 0 &&
                       process_alive(info->server_pid, read_u64(b, off::kServerStartTime));
  info->client_alive = (info->state & SHMCH_STATE_CLIENT_ATTACHED) != 0 &&
                       process_alive(info->client_pid, read_u64(b, off::kClientStartTime));
  return SHMCH_OK;
}

}  // namespace

extern "C" {

shmch_status shmch_inspect(const char* name, shmch_segment_info* info, shmch_error* err) {
  if (info == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "info is NULL");
  *info = shmch_segment_info{};
  Segment seg;
  uint32_t kind = 0;
  shmch_status s = open_ours(name, &seg, &kind, err);
  if (s != SHMCH_OK) return s;
  if (kind == SHMCH_SEGMENT_DIRECTORY) {
    s = inspect_directory(seg, info, err);
  } else if (kind == SHMCH_SEGMENT_CHANNEL || kind == SHMCH_SEGMENT_CONNECTION) {
    s = inspect_channel(seg, kind, info, err);
  } else {
    s = fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "unknown segment kind");
  }
  if (s != SHMCH_OK) {
    *info = shmch_segment_info{};
    return s;
  }
  info->version = SHMCH_PROTOCOL_VERSION;
  info->kind = kind;
  if (seg.lost()) return fail(err, SHMCH_E_TRUNCATED, 0, nullptr, "the segment shrank while being read");
  return SHMCH_OK;
}

shmch_status shmch_inspect_clients(const char* name, shmch_client_info* clients, size_t capacity, size_t* count,
                                   shmch_error* err) {
  if (count == nullptr || (clients == nullptr && capacity > 0))
    return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "count or clients is NULL");
  *count = 0;
  Segment seg;
  uint32_t kind = 0;
  shmch_status s = open_ours(name, &seg, &kind, err);
  if (s != SHMCH_OK) return s;
  if (kind != SHMCH_SEGMENT_DIRECTORY)
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "not the directory of a server of many clients");
  DirectoryHeader h;
  s = validate_directory(seg.data(), seg.size(), &h, err);
  if (s != SHMCH_OK) return s;
  size_t taken = 0;
  for (uint32_t i = 0; i < h.max_clients; i++) {
    uint8_t* slot = slot_at(seg.data(), i);
    uint32_t pid = load_acquire(word32(slot, dir::kOwnerPid));
    if (pid == 0) continue;
    if (taken < capacity) {
      shmch_client_info& c = clients[taken];
      c.slot = i;
      c.pid = pid;
      c.phase = load_acquire(word32(slot, dir::kPhase));
      c.connection_id = load_acquire(word32(slot, dir::kConnectionId));
      c.alive = process_alive(pid, read_u64(slot, dir::kOwnerStartTime)) ? 1 : 0;
    }
    taken++;
  }
  *count = taken;
  if (seg.lost()) return fail(err, SHMCH_E_TRUNCATED, 0, nullptr, "the directory shrank while being read");
  return SHMCH_OK;
}

shmch_status shmch_unlink(const char* name, shmch_error* err) {
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  {
    // A directory of ours names its connections: they go first, read from it while it exists.
    Segment seg;
    uint32_t kind = 0;
    DirectoryHeader h;
    if (open_ours(name, &seg, &kind, nullptr) == SHMCH_OK && kind == SHMCH_SEGMENT_DIRECTORY &&
        validate_directory(seg.data(), seg.size(), &h, nullptr) == SHMCH_OK) {
      unlink_connections(name, seg.data(), h.max_clients);
    }
  }
  if (shm_unlink(name) != 0) {
    int e = errno;
    return fail(err, status_from_errno(e), e, "shm_unlink", nullptr);
  }
  return SHMCH_OK;
}

}  // extern "C"
