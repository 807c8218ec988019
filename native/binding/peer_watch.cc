#include "peer_watch.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <system_error>

namespace shmch_binding {

PeerWatch::PeerWatch(shmch_channel* channel) : channel_(channel) {
  event_fd_ = eventfd(0, EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (...) {
    close(event_fd_);
    event_fd_ = -1;
    throw;
  }
}

PeerWatch::~PeerWatch() { Stop(); }

void PeerWatch::Watch(int pidfd) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || broken_) {
      // Nobody would poll it: the waker must keep checking the peer itself.
      if (pidfd >= 0) close(pidfd);
      active_.store(false);
      return;
    }
    if (has_next_ && next_fd_ >= 0) close(next_fd_);
    next_fd_ = pidfd;
    has_next_ = true;
    // Set here, not by the thread, so the caller's next wait already knows.
    active_.store(pidfd >= 0);
  }
  Notify();
}

void PeerWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  Notify();
  if (thread_.joinable()) thread_.join();
  if (has_next_ && next_fd_ >= 0) close(next_fd_);
  has_next_ = false;
  next_fd_ = -1;
  close(event_fd_);
  event_fd_ = -1;
}

void PeerWatch::Notify() {
  uint64_t one = 1;
  // Cannot fail short of a counter overflow; the thread reads it down to zero each time.
  ssize_t ignored = write(event_fd_, &one, sizeof one);
  (void)ignored;
}

void PeerWatch::Run() {
  // Named so that top -H, perf and /proc/<pid>/task show what the thread is.
  pthread_setname_np(pthread_self(), "shmch-watch");
  int watched = -1;
  for (;;) {
    pollfd fds[2] = {{event_fd_, POLLIN, 0}, {watched, POLLIN, 0}};
    int n = poll(fds, watched >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOMEM || errno == EAGAIN) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      // Anything else means broken descriptors: give up, and say so, so that the waker goes
      // back to checking the peer on every timed wake-up.
      std::lock_guard<std::mutex> lock(mutex_);
      broken_ = true;
      if (has_next_ && next_fd_ >= 0) close(next_fd_);
      has_next_ = false;
      next_fd_ = -1;
      break;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      uint64_t count;
      ssize_t ignored = read(event_fd_, &count, sizeof count);
      (void)ignored;
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) break;
      if (has_next_) {
        if (watched >= 0) close(watched);
        watched = next_fd_;
        next_fd_ = -1;
        has_next_ = false;
      }
      continue;
    }
    if (watched >= 0 && fds[1].revents != 0) {
      // The peer exited (POLLIN), or the descriptor broke: either way, let the waker judge.
      close(watched);
      watched = -1;
      active_.store(false);
      shmch_wake(channel_);
    }
  }
  if (watched >= 0) close(watched);
  active_.store(false);
  // A wait that counted on this watch must re-check the peer now.
  shmch_wake(channel_);
}

}  // namespace shmch_binding
