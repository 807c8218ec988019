#include "liveness.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmch {

namespace {
// PID_MAX_LIMIT on 64-bit Linux; anything larger cannot be a pid.
constexpr uint32_t kMaxPid = 4194304;

// Reads state (field 3) and start time (field 22) of /proc/PID/stat; false if unreadable.
bool read_proc_stat(uint32_t pid, char* state, uint64_t* start_time) {
  if (pid == 0 || pid > kMaxPid) return false;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) may hold spaces and ')': fields resume after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ' || p[2] == '\0') return false;
  *state = p[2];
  p += 2;
  // p is at field 3; start time is field 22, 19 fields on.
  for (int field = 3; field < 22; field++) {
    while (*p != ' ' && *p != '\0') p++;
    while (*p == ' ') p++;
    if (*p == '\0') return false;
  }
  *start_time = std::strtoull(p, nullptr, 10);
  return true;
}

}  // namespace

uint64_t process_start_time(uint32_t pid) {
  char state = 0;
  uint64_t start = 0;
  return read_proc_stat(pid, &state, &start) ? start : 0;
}

bool process_alive(uint32_t pid, uint64_t start_time) {
  if (pid == 0 || pid > kMaxPid) return false;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  char state = 0;
  uint64_t now = 0;
  // Unreadable /proc entry (another pid namespace, hidepid): trust kill().
  if (!read_proc_stat(pid, &state, &now)) return true;
  // A killed process stays a zombie until its parent reaps it; it will never read again.
  if (state == 'Z' || state == 'X') return false;
  return start_time == 0 || now == start_time;
}

}  // namespace shmch
