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
