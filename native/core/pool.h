// The loan pools of docs/PROTOCOL.md §6: one per direction, owned by that direction's writer.
// The owner alone decides which blocks are free (its allocator is private memory); the reader
// of a loaned message gives it back through a release ring, and the owner checks every release
// against what it sent. The reader checks every descriptor against the pool's bounds and what
// it already holds. Neither trusts a byte of the other's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include "shmchannel.h"

namespace shmch {

// Where one pool and its release ring are, with its size: validated, private copies.
struct PoolView {
  uint8_t* data = nullptr;        // capacity bytes of loans
  uint8_t* control = nullptr;     // the ring control block of the pool's direction
  uint8_t* releases = nullptr;    // release_slots entries of 8 bytes
  uint32_t capacity = 0;          // multiple of SHMCH_POOL_BLOCK_SIZE; 0: no pool
  uint32_t release_slots = 0;     // power of two, at least capacity / block size
};

// Release-ring entries for a pool of `capacity` bytes: one per block, rounded up to a power of two.
uint32_t pool_release_slots(uint32_t capacity);

// Where the parts of a segment with rings of `capacity` and pools of `pool_capacity` bytes per
// direction start (PROTOCOL.md §1): ring data s2c, c2s, pool s2c, c2s, release rings s2c, c2s.
struct SegmentLayout {
  uint64_t ring_s2c, ring_c2s, pool_s2c, pool_c2s, releases_s2c, releases_c2s, size;
};
SegmentLayout segment_layout(uint32_t capacity, uint32_t pool_capacity);

// The writer's side: loans out of its own pool, and takes back what the reader releases.
class PoolOwner {
 public:
  void attach(PoolView pool, uint32_t start_release_tail);
  bool enabled() const { return pool_.capacity != 0; }
  uint32_t capacity() const { return pool_.capacity; }

  // A free run of blocks for `size` bytes (at least one block). SHMCH_E_FULL: not now (the
  // owner is marked waiting; the reader rings once it releases). SHMCH_E_INVALID_SIZE: never.
  shmch_status loan(uint32_t size, uint32_t* offset, uint8_t** data, uint32_t* extent);
  // A loan not sent goes back. SHMCH_E_INVALID_ARG if `offset` is not a loan held unsent.
  shmch_status unloan(uint32_t offset);
  // The descriptor for sending bytes [start, start + length) of the loan at `offset`; the loan
  // counts as sent once mark_sent() is called (after the frame was written).
  shmch_status describe(uint32_t offset, uint32_t start, uint32_t length, shmch_descriptor* d) const;
  void mark_sent(uint32_t offset);
  // Frees what the reader released. SHMCH_E_PROTOCOL: it released what it does not hold.
  shmch_status reclaim();
  // After FULL: true once the reader cleared pool_waiting, i.e. released something.
  bool waiting_cleared() const;
  // The reader left: whatever was sent to it is free again; loans still unsent stay loaned.
  // Pending releases are dropped: returns the count the release ring restarts from.
  uint32_t forget_sent();
  uint32_t loans_unsent() const;

 private:
  enum class Use : uint8_t { kLoaned, kSent };
  struct Allocation {
    uint32_t blocks;
    uint32_t generation;
    Use use;
  };
  void free_run(uint32_t first, uint32_t blocks);

  PoolView pool_;
  uint32_t release_tail_ = 0;
  uint32_t next_generation_ = 1;
  std::map<uint32_t, uint32_t> free_;            // first block -> run length, coalesced
  std::map<uint32_t, Allocation> allocations_;   // first block -> allocation
};

// The reader's side: the loaned messages it received and has not released yet.
class PoolBorrower {
 public:
  void attach(PoolView pool, uint32_t start_release_head, uint32_t* owner_doorbell);
  bool enabled() const { return pool_.capacity != 0; }
  // Validates a received descriptor for a message of `total` bytes and records it as held.
  shmch_status accept(const shmch_descriptor& d, uint32_t total);
  // The bytes of a held loan: its first byte and its extent. SHMCH_E_INVALID_ARG if not held.
  shmch_status find(uint32_t offset, uint8_t** data, uint32_t* extent) const;
  // Gives a held loan back to its owner. SHMCH_E_INVALID_ARG if not held; SHMCH_E_PROTOCOL if
  // the owner's counters are impossible.
  shmch_status release(uint32_t offset);
  // The owner left: nothing is held any more (the caller dropped its views first). Returns the
  // count the release ring restarts from.
  uint32_t forget_held();
  size_t held() const { return held_.size(); }

 private:
  struct Held {
    uint32_t extent;
    uint32_t generation;
  };
  PoolView pool_;
  uint32_t* owner_doorbell_ = nullptr;
  uint32_t release_head_ = 0;
  std::map<uint32_t, Held> held_;  // offset -> held loan; never overlapping
};

}  // namespace shmch
