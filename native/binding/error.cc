#include "error.h"

#include <cstring>
#include <string>

namespace shmch_binding {

namespace {

const char* CodeOf(shmch_status s) {
  switch (s) {
    case SHMCH_E_INVALID_NAME: return "ERR_INVALID_NAME";
    case SHMCH_E_INVALID_SIZE: return "ERR_INVALID_SIZE";
    case SHMCH_E_INVALID_ARG: return "ERR_INVALID_ARG_VALUE";
    case SHMCH_E_EXISTS: return "ERR_ALREADY_OPEN";
    case SHMCH_E_BUSY: return "ERR_CHANNEL_BUSY";
    case SHMCH_E_NOT_FOUND:
    case SHMCH_E_NOT_READY:
    case SHMCH_E_ACCESS:
    case SHMCH_E_OS: return "ERR_SHM_OPEN_FAILED";
    case SHMCH_E_RESOURCE: return "ERR_RESOURCE_LIMIT";
    case SHMCH_E_INCOMPATIBLE: return "ERR_INCOMPATIBLE_SEGMENT";
    case SHMCH_E_PROTOCOL:
    case SHMCH_E_TRUNCATED: return "ERR_PROTOCOL";
    case SHMCH_E_CLOSED: return "ERR_CHANNEL_CLOSED";
    default: return "ERR_SHM_OPEN_FAILED";
  }
}

// Stable words the TypeScript layer may branch on (e.g. retry while NOT_FOUND).
const char* ReasonOf(shmch_status s) {
  switch (s) {
    case SHMCH_E_NOT_FOUND: return "NOT_FOUND";
    case SHMCH_E_NOT_READY: return "NOT_READY";
    case SHMCH_E_ACCESS: return "ACCESS";
    case SHMCH_E_BUSY: return "BUSY";
    case SHMCH_E_EXISTS: return "EXISTS";
    case SHMCH_E_PROTOCOL: return "PROTOCOL";
    case SHMCH_E_TRUNCATED: return "TRUNCATED";
    default: return "OTHER";
  }
}

}  // namespace

void ThrowStatus(Napi::Env env, shmch_status status, const shmch_error& err, const char* what) {
  std::string message = what;
  if (err.detail != nullptr) message += std::string(": ") + err.detail;
  if (err.owner_pid != 0) message += " (pid " + std::to_string(err.owner_pid) + ")";
  if (err.sys_errno != 0) {
    message += std::string(" (") + (err.syscall ? err.syscall : "system call") + ": " +
               std::strerror(err.sys_errno) + ")";
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", CodeOf(status));
  e.Set("reason", ReasonOf(status));
  if (err.sys_errno != 0) e.Set("errno", Napi::Number::New(env, err.sys_errno));
  if (err.syscall != nullptr) e.Set("syscall", err.syscall);
  if (err.owner_pid != 0) e.Set("ownerPid", Napi::Number::New(env, err.owner_pid));
  throw e;
}

}  // namespace shmch_binding
