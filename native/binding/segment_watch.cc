#include "segment_watch.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace shmch_binding {
namespace segment_watch {

namespace {

struct State {
  std::mutex mutex;
  // The running thread's: inotify_fd holds the watches, wake_fd ends the thread when written.
  int inotify_fd = -1;
  int wake_fd = -1;
  std::thread thread;  // joinable from Add()'s start to Stop()
  // The channels behind each watch: a process that opens both ends of a segment gets one
  // watch descriptor for both (inotify watches an inode once per instance).
  std::unordered_map<int, std::vector<shmch_channel*>> channels_by_watch;
  std::unordered_map<shmch_channel*, int> watch_by_channel;
  std::atomic<bool> working{true};
  // In a child forked without exec: the descriptors came along, the thread did not.
  std::atomic<bool> forked{false};
};

// Never destroyed: while the main thread's environment lives (process.exit() does not tear it
// down), the thread may run on as exit() destroys static objects. A copy of this State (a few
// maps, empty by then) is left behind each time the addon is unloaded.
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

// Given its descriptors rather than reading them from the State, which Stop() resets as soon
// as it has told this thread to end.
void run(int inotify_fd, int wake_fd) {
  pthread_setname_np(pthread_self(), "shmch-segwatch");
  State& s = state();
  // Aligned as inotify_event is; room for many events per read.
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    pollfd fds[2] = {{inotify_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int polled = poll(fds, 2, -1);
    if (polled < 0 && errno == EINTR) continue;
    if (polled > 0 && fds[1].revents != 0) return;  // Stop(): nothing is watched any more
    ssize_t n = -1;
    if (polled > 0) {
      n = read(inotify_fd, buffer, sizeof buffer);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    }
    if ((polled < 0 || n < 0) && (errno == ENOMEM || errno == EAGAIN)) {
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

// A child forked without exec has the descriptors but not the thread that reads them: its
// channels go back to timed waits. (Only atomic stores: the mutex may be held at the fork.)
void in_forked_child() {
  state().forked.store(true);
  state().working.store(false);
}

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// With the mutex held.
bool start(State& s) {
  // Registered once per load of the addon: glibc forgets the handlers of a library as it
  // unloads it (__cxa_finalize), and the static is initialized again with the next load.
  static const bool fork_handled = pthread_atfork(nullptr, nullptr, in_forked_child) == 0;
  if (!fork_handled) return false;
  // Nonblocking: a read after poll() never waits, so the thread only ever waits in poll().
  s.inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  s.wake_fd = eventfd(0, EFD_CLOEXEC);
  if (s.inotify_fd < 0 || s.wake_fd < 0) {
    // EMFILE: tried again by the next channel.
    close_fd(s.inotify_fd);
    close_fd(s.wake_fd);
    return false;
  }
  try {
    s.thread = std::thread(run, s.inotify_fd, s.wake_fd);
  } catch (const std::system_error&) {
    close_fd(s.inotify_fd);
    close_fd(s.wake_fd);
    return false;
  }
  s.working.store(true);
  return true;
}

}  // namespace

bool Add(shmch_channel* channel) {
  State& s = state();
  // Before the lock: in a forked child, a thread of the parent may have held it at the fork.
  if (s.forked.load()) return false;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.thread.joinable() && !start(s)) return false;
  if (!s.working.load()) return false;
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
    // Queues an IN_IGNORED event, which wakes the thread.
    inotify_rm_watch(s.inotify_fd, wd);
  }
}

bool Working() {
  return state().working.load();
}

void Stop() {
  State& s = state();
  // The thread is the parent's; this process never had it to join.
  if (s.forked.load()) return;
  std::thread thread;
  int inotify_fd;
  int wake_fd;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.thread.joinable()) return;
    thread = std::move(s.thread);
    inotify_fd = std::exchange(s.inotify_fd, -1);
    wake_fd = std::exchange(s.wake_fd, -1);
    // Only watches of channels not removed, which should not exist: forgotten with their fd.
    s.channels_by_watch.clear();
    s.watch_by_channel.clear();
  }
  uint64_t one = 1;
  // Cannot fail short of a counter overflow, and this is the only write.
  ssize_t ignored = write(wake_fd, &one, sizeof one);
  (void)ignored;
  thread.join();
  close(inotify_fd);
  close(wake_fd);
}

}  // namespace segment_watch
}  // namespace shmch_binding
