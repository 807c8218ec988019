#include "segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "status.h"

namespace shmch {

Segment::~Segment() {
  unmap();
}

void Segment::unmap() {
  if (data_ != nullptr) {
    unguard_range(guard_);
    munmap(data_, size_);
    ::close(fd_);
  }
  data_ = nullptr;
  fd_ = -1;
  size_ = 0;
  guard_ = nullptr;
}

void Segment::take_from(Segment& other) {
  if (&other == this) return;
  unmap();
  data_ = other.data_;
  size_ = other.size_;
  guard_ = other.guard_;
  fd_ = other.fd_;
  device_ = other.device_;
  inode_ = other.inode_;
  other.data_ = nullptr;
  other.size_ = 0;
  other.guard_ = nullptr;
  other.fd_ = -1;
}

// Maps all of fd and registers the mapping with the truncation guard. Closes fd on failure.
shmch_status Segment::map(int fd, size_t size, shmch_error* err) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return fail(err, status_from_errno(e), e, "fstat", nullptr);
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    return fail(err, status_from_errno(e), e, "mmap", nullptr);
  }
  GuardedRange* guard = guard_range(p, size);
  if (guard == nullptr) {
    munmap(p, size);
    ::close(fd);
    return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, "no memory to register the mapping");
  }
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  guard_ = guard;
  fd_ = fd;
  device_ = st.st_dev;
  inode_ = st.st_ino;
  return SHMCH_OK;
}

bool Segment::check_shrunk() {
  if (data_ == nullptr) return false;
  struct stat st;
  if (fstat(fd_, &st) == 0 && st.st_size >= 0 && static_cast<size_t>(st.st_size) < size_) mark_range_lost(guard_);
  return lost();
}

bool Segment::is_named(const char* name) const {
  if (data_ == nullptr) return false;
  // glibc's shm_open names files in /dev/shm; stat needs no permission on the object itself.
  std::string path = std::string("/dev/shm") + name;
  struct stat st;
  // While we map our object its inode cannot be reused, so equal numbers mean the same object.
  return stat(path.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_;
}

shmch_status Segment::create(const char* name, size_t size, uint32_t mode, bool reserve, shmch_error* err) {
  unmap();
  int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, static_cast<mode_t>(mode & 0777));
  if (fd < 0) {
    int e = errno;
    return fail(err, status_from_errno(e), e, "shm_open", nullptr);
  }
  // shm_open applies the umask; the caller asked for exactly `mode`.
  if (fchmod(fd, static_cast<mode_t>(mode & 0777)) != 0 ||
      ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int e = errno;
    ::close(fd);
    shm_unlink(name);
    return fail(err, status_from_errno(e), e, "ftruncate", nullptr);
  }
  if (reserve) {
    int e = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (e != 0) {
      ::close(fd);
      shm_unlink(name);
      return fail(err, status_from_errno(e), e, "posix_fallocate", "not enough room in /dev/shm for the segment");
    }
  }
  shmch_status s = map(fd, size, err);
  if (s != SHMCH_OK) shm_unlink(name);
  return s;
}

shmch_status Segment::open(const char* name, size_t min_size, size_t max_size, shmch_error* err) {
  unmap();
  int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    return fail(err, status_from_errno(e), e, "shm_open", nullptr);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return fail(err, status_from_errno(e), e, "fstat", nullptr);
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (st.st_size < 0 || size < min_size || size > max_size) {
    ::close(fd);
    // A zero-sized object is one whose creator has not reached ftruncate yet.
    return fail(err, size == 0 ? SHMCH_E_NOT_READY : SHMCH_E_INCOMPATIBLE, 0, nullptr,
                "segment size out of range");
  }
  return map(fd, size, err);
}

}  // namespace shmch
