#include "status.h"

#include <cerrno>

namespace shmch {

shmch_status status_from_errno(int e) {
  switch (e) {
    case EACCES:
    case EPERM:
      return SHMCH_E_ACCESS;
    case ENOENT:
      return SHMCH_E_NOT_FOUND;
    case EEXIST:
      return SHMCH_E_EXISTS;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EFBIG:
      return SHMCH_E_RESOURCE;
    case ENAMETOOLONG:
    case EINVAL:
      return SHMCH_E_INVALID_NAME;
    default:
      return SHMCH_E_OS;
  }
}

shmch_status fail(shmch_error* err, shmch_status status, int sys_errno, const char* syscall,
                  const char* detail) {
  if (err != nullptr) {
    err->sys_errno = sys_errno;
    err->syscall = syscall;
    err->detail = detail;
  }
  return status;
}

}  // namespace shmch

namespace {

struct StatusText {
  const char* name;
  const char* description;
};

// Indexed by shmch_status; the names are the enumerators', so a C user can grep for them.
constexpr StatusText kStatusTexts[] = {
    {"SHMCH_OK", "success"},
    {"SHMCH_E_INVALID_NAME", "not a POSIX shared memory name"},
    {"SHMCH_E_INVALID_SIZE", "a capacity, message size or segment size out of range"},
    {"SHMCH_E_INVALID_ARG", "an invalid argument (a bad kind, a payload too large, a null pointer)"},
    {"SHMCH_E_EXISTS", "a live server owns the name"},
    {"SHMCH_E_NOT_FOUND", "no segment of that name"},
    {"SHMCH_E_NOT_READY", "the segment's server has not finished creating it, or its last client is leaving"},
    {"SHMCH_E_BUSY", "another client is attached"},
    {"SHMCH_E_ACCESS", "permission denied"},
    {"SHMCH_E_RESOURCE", "out of memory, shared memory space or descriptors"},
    {"SHMCH_E_OS", "a system call failed"},
    {"SHMCH_E_INCOMPATIBLE", "not a shmchannel segment, or another protocol version"},
    {"SHMCH_E_PROTOCOL", "the peer wrote something invalid into the segment"},
    {"SHMCH_E_FULL", "the ring has no room for the frame now"},
    {"SHMCH_E_CLOSED", "the channel was closed"},
    {"SHMCH_E_TRUNCATED", "the segment lost pages"},
};
static_assert(sizeof kStatusTexts / sizeof kStatusTexts[0] == SHMCH_E_TRUNCATED + 1,
              "a status without a name: add it to kStatusTexts");

const StatusText* status_text(shmch_status status) {
  // Through unsigned: a C caller may pass any int, negative ones included.
  unsigned index = static_cast<unsigned>(status);
  return index < sizeof kStatusTexts / sizeof kStatusTexts[0] ? &kStatusTexts[index] : nullptr;
}

}  // namespace

extern "C" const char* shmch_status_string(shmch_status status) {
  const StatusText* t = status_text(status);
  return t != nullptr ? t->name : "SHMCH_E_UNKNOWN";
}

extern "C" const char* shmch_status_description(shmch_status status) {
  const StatusText* t = status_text(status);
  return t != nullptr ? t->description : "unknown status";
}
