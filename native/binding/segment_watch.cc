#include "segment_watch.h"

#include <pthread.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

namespace shmch_binding {
namespace segment_watch {

namespace {

struct State {
  std::mutex mutex;
  int inotify_fd = -1;
  bool started = false;
  // The channels behind each watch: a process that opens both ends of a segment gets one
  // watch descriptor for both (inotify watches an inode once per instance).
  std::unordered_map<int, std::vector<shmch_channel*>> channels_by_watch;
  std::unordered_map<shmch_channel*, int> watch_by_channel;
  std::atomic<bool> working{true};
};

// Never destroyed: the thread may still run while the process exits.
State& state() {
  static State* s = new State();
  return *s;
}

// With the mutex held: the channel is open for as long as it is in the maps.
void look(shmch_channel* ch) {
  // A shrunk segment is marked lost here, so that the woken wait reports it.
  shmch_check_segment(ch);
  shmch_wake(ch);
}

void look_at_all(State& s) {
  for (auto& entry : s.watch_by_channel) look(entry.first);
}

void run() {
  pthread_setname_np(pthread_self(), "shmch-segwatch");
  State& s = state();
  // Aligned as inotify_event is; room for many events per read.
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    ssize_t n = read(s.inotify_fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == ENOMEM || errno == EAGAIN)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    std::lock_guard<std::mutex> lock(s.mutex);
    if (n <= 0) {
      // A broken descriptor: nothing will be watched from now on. Every waker looks once more
      // and, seeing Working() false, goes back to timed waits.
      s.working.store(false);
      look_at_all(s);
      return;
    }
    for (ssize_t at = 0; at + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        look_at_all(s);
        continue;
      }
      auto found = s.channels_by_watch.find(event->wd);
      if (found == s.channels_by_watch.end()) continue;  // a watch removed meanwhile
      for (shmch_channel* ch : found->second) look(ch);
    }
  }
}

// A child forked without exec has the descriptor but not the thread that reads it: its
// channels go back to timed waits. (Only an atomic store: the mutex may be held at the fork.)
void in_forked_child() {
  state().working.store(false);
}

}  // namespace

bool Add(shmch_channel* channel) {
  State& s = state();
  // Before the lock: in a forked child, a thread of the parent may have held it at the fork.
  if (!s.working.load()) return false;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.working.load()) return false;
  if (!s.started) {
    static const bool fork_handled = pthread_atfork(nullptr, nullptr, in_forked_child) == 0;
    if (!fork_handled) return false;
    if (s.inotify_fd < 0) s.inotify_fd = inotify_init1(IN_CLOEXEC);
    if (s.inotify_fd < 0) return false;  // EMFILE: tried again by the next channel
    try {
      std::thread(run).detach();
    } catch (const std::system_error&) {
      return false;
    }
    s.started = true;
  }
  int wd = shmch_watch_segment(channel, s.inotify_fd);
  if (wd < 0) return false;
  s.channels_by_watch[wd].push_back(channel);
  s.watch_by_channel[channel] = wd;
  return true;
}

void Remove(shmch_channel* channel) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto found = s.watch_by_channel.find(channel);
  if (found == s.watch_by_channel.end()) return;
  int wd = found->second;
  s.watch_by_channel.erase(found);
  std::vector<shmch_channel*>& channels = s.channels_by_watch[wd];
  for (size_t i = 0; i < channels.size(); i++) {
    if (channels[i] == channel) {
      channels.erase(channels.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  if (channels.empty()) {
    s.channels_by_watch.erase(wd);
    inotify_rm_watch(s.inotify_fd, wd);
  }
}

bool Working() {
  return state().working.load();
}

}  // namespace segment_watch
}  // namespace shmch_binding
