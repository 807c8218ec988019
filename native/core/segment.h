// A named POSIX shared-memory object mapped into this process: the one owner of its mapping
// (RAII), with its descriptor, which says what size the object has now and names it for
// inotify. Used for channel segments and for raw shared memory (shmch_shm) alike.
#pragma once

#include <cstddef>
#include <cstdint>

#include <sys/types.h>

#include "shmchannel.h"
#include "truncation_guard.h"

namespace shmch {

class Segment {
 public:
  Segment() = default;
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  // O_CREAT|O_EXCL, sized to `size` and zero-filled by the kernel. `reserve`: allocate every
  // page now, so that a full /dev/shm fails here (SHMCH_E_RESOURCE) instead of at the first
  // touch of a page it cannot provide; else the object is sparse.
  shmch_status create(const char* name, size_t size, uint32_t mode, bool reserve, shmch_error* err);
  // Opens an existing object; maps its whole current size (which must be in [min_size, max_size]).
  shmch_status open(const char* name, size_t min_size, size_t max_size, shmch_error* err);
  void unmap();  // idempotent
  // Takes over other's mapping and descriptor (at the same address); other is left unmapped.
  void take_from(Segment& other);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Another process shrank the object and pages we touched were replaced (truncation_guard.h).
  bool lost() const { return range_lost(guard_); }
  // Asks the kernel for the object's size: smaller than the mapping, and pages are gone
  // whether or not a SIGBUS said so yet. Then the segment is lost from now on. Thread-safe.
  bool check_shrunk();
  // Open while mapped; -1 once unmapped.
  int fd() const { return fd_; }
  // The name still refers to this object, not to a successor created under it.
  bool is_named(const char* name) const;

 private:
  // Takes ownership of fd.
  shmch_status map(int fd, size_t size, shmch_error* err);

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  GuardedRange* guard_ = nullptr;
  int fd_ = -1;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

}  // namespace shmch
