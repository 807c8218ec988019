#include "pool.h"

#include <cstring>
#include <new>

#include "doorbell.h"
#include "layout.h"

namespace shmch {

namespace {

constexpr uint32_t kBlock = SHMCH_POOL_BLOCK_SIZE;

uint32_t blocks_for(uint32_t bytes) { return bytes == 0 ? 1 : (bytes - 1) / kBlock + 1; }

struct ReleaseEntry {
  uint32_t offset;
  uint32_t generation;
};
static_assert(sizeof(ReleaseEntry) == 8, "a release entry is 8 bytes");

}  // namespace

uint32_t pool_release_slots(uint32_t capacity) {
  if (capacity == 0) return 0;
  uint32_t blocks = capacity / kBlock;
  uint32_t slots = 1;
  while (slots < blocks) slots <<= 1;
  return slots;
}

SegmentLayout segment_layout(uint32_t capacity, uint32_t pool_capacity) {
  SegmentLayout l;
  uint64_t releases = uint64_t(pool_release_slots(pool_capacity)) * kReleaseEntrySize;
  l.ring_s2c = off::kData;
  l.ring_c2s = l.ring_s2c + capacity;
  l.pool_s2c = l.ring_c2s + capacity;
  l.pool_c2s = l.pool_s2c + pool_capacity;
  l.releases_s2c = l.pool_c2s + pool_capacity;
  l.releases_c2s = l.releases_s2c + releases;
  l.size = l.releases_c2s + releases;
  return l;
}

// ---- owner ----

void PoolOwner::attach(PoolView pool, uint32_t start_release_tail) {
  pool_ = pool;
  free_.clear();
  allocations_.clear();
  if (enabled()) free_.emplace(0, pool_.capacity / kBlock);
  release_tail_ = start_release_tail;
}

shmch_status PoolOwner::loan(uint32_t size, uint32_t* offset, uint8_t** data, uint32_t* extent) {
  if (!enabled()) return SHMCH_E_INVALID_ARG;
  uint32_t blocks = blocks_for(size);
  if (size > pool_.capacity) return SHMCH_E_INVALID_SIZE;
  for (int attempt = 0; attempt < 3; attempt++) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < blocks) continue;
      uint32_t first = it->first;
      uint32_t left = it->second - blocks;
      try {
        allocations_.emplace(first, Allocation{blocks, next_generation_++, Use::kLoaned});
        free_.erase(it);
        if (left > 0) free_.emplace(first + blocks, left);
      } catch (const std::bad_alloc&) {
        allocations_.erase(first);
        return SHMCH_E_RESOURCE;
      }
      if (next_generation_ == 0) next_generation_ = 1;
      *offset = first * kBlock;
      *data = pool_.data + size_t(first) * kBlock;
      *extent = blocks * kBlock;
      return SHMCH_OK;
    }
    if (attempt == 2) break;
    // Nothing fits by what we know: take back what the reader released, then look again.
    if (attempt == 1) {
      // Say we wait, then look again: either we see its release, or it sees the flag and rings.
      store_seq_cst(word32(pool_.control, off::kPoolWaiting), 1);
      fence_seq_cst();
    }
    shmch_status s = reclaim();
    if (s != SHMCH_OK) return s;
  }
  return SHMCH_E_FULL;
}

void PoolOwner::free_run(uint32_t first, uint32_t blocks) {
  // Coalesce with the free runs on either side.
  auto next = free_.lower_bound(first);
  if (next != free_.end() && next->first == first + blocks) {
    blocks += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == first) {
      prev->second += blocks;
      return;
    }
  }
  // Out of memory here (a map node) leaves the run unusable, never handed out twice.
  try {
    free_.emplace_hint(next, first, blocks);
  } catch (const std::bad_alloc&) {
  }
}

shmch_status PoolOwner::unloan(uint32_t offset) {
  if (offset % kBlock != 0) return SHMCH_E_INVALID_ARG;
  auto it = allocations_.find(offset / kBlock);
  if (it == allocations_.end() || it->second.use != Use::kLoaned) return SHMCH_E_INVALID_ARG;
  uint32_t first = it->first;
  uint32_t blocks = it->second.blocks;
  allocations_.erase(it);
  free_run(first, blocks);
  return SHMCH_OK;
}

shmch_status PoolOwner::describe(uint32_t offset, uint32_t start, uint32_t length,
                                 shmch_descriptor* d) const {
  if (offset % kBlock != 0) return SHMCH_E_INVALID_ARG;
  auto it = allocations_.find(offset / kBlock);
  if (it == allocations_.end() || it->second.use != Use::kLoaned) return SHMCH_E_INVALID_ARG;
  uint32_t extent = it->second.blocks * kBlock;
  if (start > extent || length > extent - start) return SHMCH_E_INVALID_ARG;
  *d = shmch_descriptor{offset, extent, it->second.generation, start};
  return SHMCH_OK;
}

void PoolOwner::mark_sent(uint32_t offset) {
  auto it = allocations_.find(offset / kBlock);
  if (it != allocations_.end()) it->second.use = Use::kSent;
}

shmch_status PoolOwner::reclaim() {
  if (!enabled()) return SHMCH_OK;
  uint32_t head = load_acquire(word32(pool_.control, off::kReleaseHead));
  uint32_t pending = head - release_tail_;
  // At most one entry per block can be outstanding: more is not a count the reader can reach.
  if (pending > pool_.release_slots) return SHMCH_E_PROTOCOL;
  shmch_status result = SHMCH_OK;
  while (release_tail_ != head) {
    ReleaseEntry e;
    std::memcpy(&e, pool_.releases + size_t(release_tail_ & (pool_.release_slots - 1)) * sizeof e, sizeof e);
    auto it = e.offset % kBlock == 0 ? allocations_.find(e.offset / kBlock) : allocations_.end();
    if (it == allocations_.end() || it->second.use != Use::kSent || it->second.generation != e.generation) {
      result = SHMCH_E_PROTOCOL;
      break;
    }
    uint32_t first = it->first;
    uint32_t blocks = it->second.blocks;
    allocations_.erase(it);
    free_run(first, blocks);
    release_tail_++;
  }
  store_release(word32(pool_.control, off::kReleaseTail), release_tail_);
  return result;
}

bool PoolOwner::waiting_cleared() const {
  return !enabled() || load_acquire(word32(pool_.control, off::kPoolWaiting)) == 0;
}

uint32_t PoolOwner::forget_sent() {
  for (auto it = allocations_.begin(); it != allocations_.end();) {
    if (it->second.use == Use::kSent) {
      uint32_t first = it->first;
      uint32_t blocks = it->second.blocks;
      it = allocations_.erase(it);
      free_run(first, blocks);
    } else {
      ++it;
    }
  }
  return release_tail_;
}

uint32_t PoolOwner::loans_unsent() const {
  uint32_t n = 0;
  for (const auto& a : allocations_) n += a.second.use == Use::kLoaned ? 1 : 0;
  return n;
}

// ---- borrower ----

void PoolBorrower::attach(PoolView pool, uint32_t start_release_head, uint32_t* owner_doorbell) {
  pool_ = pool;
  owner_doorbell_ = owner_doorbell;
  held_.clear();
  release_head_ = start_release_head;
}

shmch_status PoolBorrower::accept(const shmch_descriptor& d, uint32_t total) {
  if (!enabled()) return SHMCH_E_PROTOCOL;
  if (d.offset % kBlock != 0 || d.extent == 0 || d.extent % kBlock != 0 || d.offset > pool_.capacity ||
      d.extent > pool_.capacity - d.offset || d.start > d.extent || total > d.extent - d.start) {
    return SHMCH_E_PROTOCOL;
  }
  // The owner never lends one block twice at once: a descriptor that overlaps one we hold is forged.
  auto next = held_.lower_bound(d.offset);
  if (next != held_.end() && next->first < d.offset + d.extent) return SHMCH_E_PROTOCOL;
  if (next != held_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.extent > d.offset) return SHMCH_E_PROTOCOL;
  }
  try {
    held_.emplace_hint(next, d.offset, Held{d.extent, d.generation});
  } catch (const std::bad_alloc&) {
    return SHMCH_E_RESOURCE;
  }
  return SHMCH_OK;
}

shmch_status PoolBorrower::find(uint32_t offset, uint8_t** data, uint32_t* extent) const {
  auto it = held_.find(offset);
  if (it == held_.end()) return SHMCH_E_INVALID_ARG;
  *data = pool_.data + offset;
  *extent = it->second.extent;
  return SHMCH_OK;
}

shmch_status PoolBorrower::release(uint32_t offset) {
  auto it = held_.find(offset);
  if (it == held_.end()) return SHMCH_E_INVALID_ARG;
  uint32_t tail = load_acquire(word32(pool_.control, off::kReleaseTail));
  // The owner takes entries back one per block it lent: a full ring means it lies.
  uint32_t pending = release_head_ - tail;
  if (pending >= pool_.release_slots) return SHMCH_E_PROTOCOL;
  ReleaseEntry e{offset, it->second.generation};
  std::memcpy(pool_.releases + size_t(release_head_ & (pool_.release_slots - 1)) * sizeof e, &e, sizeof e);
  held_.erase(it);
  release_head_++;
  store_release(word32(pool_.control, off::kReleaseHead), release_head_);
  fence_seq_cst();
  uint32_t* waiting = word32(pool_.control, off::kPoolWaiting);
  if (__atomic_load_n(waiting, __ATOMIC_RELAXED) != 0 && exchange_seq_cst(waiting, 0) != 0) {
    doorbell_ring(owner_doorbell_);
  }
  return SHMCH_OK;
}

uint32_t PoolBorrower::forget_held() {
  held_.clear();
  return release_head_;
}

}  // namespace shmch
