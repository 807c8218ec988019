// The directory of a server of many clients (docs/PROTOCOL.md §7.1): byte offsets of its header
// and of its slots, the one function that validates a header someone else wrote, and the slot
// operations both sides share. The fields the directory shares with a channel's header (magic,
// version, pids, start time, state, pool capacity, kind) are at the same offsets, so that code
// that only asks "whose is this name, and is its server alive" reads either alike.
#pragma once

#include <cstddef>
#include <cstdint>

#include "layout.h"
#include "shmchannel.h"

namespace shmch {

constexpr uint32_t kDirectoryHeaderSize = 256;
constexpr uint32_t kSlotSize = 64;

namespace dir {
constexpr size_t kMagic = 0;
constexpr size_t kVersion = 8;
constexpr size_t kHeaderSize = 12;
constexpr size_t kSegmentSize = 16;
constexpr size_t kRingCapacity = 24;
constexpr size_t kMaxMessageSize = 28;
constexpr size_t kServerPid = 32;
constexpr size_t kMaxClients = 36;
constexpr size_t kServerStartTime = 40;
constexpr size_t kClaims = 48;
constexpr size_t kState = 56;
constexpr size_t kDoorbell = 64;
constexpr size_t kPoolCapacity = 200;
constexpr size_t kKind = 204;
constexpr size_t kSlots = 256;
// Within a slot.
constexpr size_t kOwnerPid = 0;
constexpr size_t kPhase = 4;
constexpr size_t kOwnerStartTime = 8;
constexpr size_t kConnectionId = 16;
constexpr size_t kOpenBell = 20;
}  // namespace dir

static_assert(dir::kState == off::kState && dir::kServerPid == off::kServerPid &&
                  dir::kServerStartTime == off::kServerStartTime && dir::kKind == off::kKind &&
                  dir::kPoolCapacity == off::kPoolCapacity,
              "the fields a directory shares with a channel header are where the channel has them");

constexpr size_t directory_size(uint32_t max_clients) {
  return kDirectoryHeaderSize + size_t(kSlotSize) * max_clients;
}

// What a validated directory header says: private copies, never read from the segment again.
struct DirectoryHeader {
  uint32_t max_clients = 0;
  uint32_t ring_capacity = 0;
  uint32_t max_message_size = 0;
  uint32_t pool_capacity = 0;
};

// Validates a directory someone else wrote (magic, version and kind checked before, by
// validate_identity in channel_internal.h): header size, max_clients, sizes as §7.1 says.
shmch_status validate_directory(const uint8_t* b, size_t mapped_size, DirectoryHeader* out, shmch_error* err);

inline uint8_t* slot_at(uint8_t* directory, uint32_t slot) {
  return directory + dir::kSlots + size_t(kSlotSize) * slot;
}
inline uint32_t* slot_word(uint8_t* directory, uint32_t slot, size_t field) {
  return word32(slot_at(directory, slot), field);
}

// "<name>~<slot>": the name of a slot's connection. `out` holds 256 bytes; false if it does not fit.
bool connection_name(const char* name, uint32_t slot, char* out, size_t out_size);

// Removes the connections "<name>~0" to "<name>~<max_clients - 1>" (at most SHMCH_MAX_CLIENTS)
// of the directory `name` read: shmchannel segments of kind CONNECTION made by that directory's
// server (the server pid and start time in their header are the directory's). Anything else
// under those names (another program's object, a channel of one client that happens to be called
// so, a connection of another server) is never removed: a directory is anyone's to write.
void unlink_connections(const char* name, const uint8_t* directory, uint32_t max_clients);

// Gives a slot back: everything but the owner cleared, then the owner (release), which lets
// the next client take it.
void free_slot(uint8_t* directory, uint32_t slot);

}  // namespace shmch
