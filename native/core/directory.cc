#include "directory.h"

#include <sys/mman.h>

#include <cstdio>

#include "channel_internal.h"
#include "segment.h"
#include "status.h"

namespace shmch {

shmch_status validate_directory(const uint8_t* b, size_t mapped_size, DirectoryHeader* out, shmch_error* err) {
  uint32_t max_clients = read_u32(b, dir::kMaxClients);
  uint32_t capacity = read_u32(b, dir::kRingCapacity);
  uint32_t max_message_size = read_u32(b, dir::kMaxMessageSize);
  uint32_t pool_capacity = read_u32(b, dir::kPoolCapacity);
  if (read_u32(b, dir::kHeaderSize) != kDirectoryHeaderSize || max_clients == 0 || max_clients > SHMCH_MAX_CLIENTS ||
      !valid_sizes(capacity, max_message_size, pool_capacity)) {
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "inconsistent directory header");
  }
  uint64_t size = directory_size(max_clients);
  if (read_u64(b, dir::kSegmentSize) != size || mapped_size != size)
    return fail(err, SHMCH_E_INCOMPATIBLE, 0, nullptr, "inconsistent directory header");
  out->max_clients = max_clients;
  out->ring_capacity = capacity;
  out->max_message_size = max_message_size;
  out->pool_capacity = pool_capacity;
  return SHMCH_OK;
}

bool connection_name(const char* name, uint32_t slot, char* out, size_t out_size) {
  int n = std::snprintf(out, out_size, "%s~%u", name, slot);
  return n > 0 && static_cast<size_t>(n) < out_size;
}

void unlink_connections(const char* name, const uint8_t* directory, uint32_t max_clients) {
  if (max_clients > SHMCH_MAX_CLIENTS) max_clients = SHMCH_MAX_CLIENTS;
  uint32_t server_pid = read_u32(directory, dir::kServerPid);
  uint64_t server_start_time = read_u64(directory, dir::kServerStartTime);
  for (uint32_t i = 0; i < max_clients; i++) {
    char conn[256];
    if (!connection_name(name, i, conn, sizeof conn)) return;
    Segment old;
    if (old.open(conn, kDirectoryHeaderSize, largest_segment(), nullptr) != SHMCH_OK) continue;
    const uint8_t* b = old.data();
    if (read_u64(b, off::kMagic) == kMagic && read_u32(b, off::kKind) == SHMCH_SEGMENT_CONNECTION &&
        read_u32(b, off::kServerPid) == server_pid && read_u64(b, off::kServerStartTime) == server_start_time &&
        !old.lost()) {
      shm_unlink(conn);
    }
  }
}

void free_slot(uint8_t* directory, uint32_t slot) {
  store_release(slot_word(directory, slot, dir::kPhase), SHMCH_SLOT_FREE);
  store_release(slot_word(directory, slot, dir::kConnectionId), 0);
  write_u64(slot_at(directory, slot), dir::kOwnerStartTime, 0);
  // Last: a client that takes the slot from here writes its own start time and phase.
  store_release(slot_word(directory, slot, dir::kOwnerPid), 0);
}

}  // namespace shmch
