// The message API's watch of the peer process (message.cc): a thread that sleeps in poll() on
// a pidfd of the peer (shmch_open_peer_fd) and wakes the endpoint's wait (shmch_wake) when the
// process exits. So a death is seen at once, and /proc is read only after the pidfd fired
// instead of at every timed wake-up.
#pragma once

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <system_error>
#include <thread>

#include "shmchannel.h"

namespace shmch {
namespace message {

class PeerWatch {
 public:
  PeerWatch() = default;
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;
  ~PeerWatch() { stop(); }

  // Takes pidfd (closing it whatever happens); false if the thread could not start, in which
  // case the caller keeps looking at /proc on a timer.
  bool start(int pidfd, shmch_channel* ch) {
    stop();
    if (pidfd < 0) return false;
    int stopfd = eventfd(0, EFD_CLOEXEC);
    if (stopfd < 0) {
      close(pidfd);
      return false;
    }
    pidfd_ = pidfd;
    stopfd_ = stopfd;
    fired_.store(false);
    try {
      thread_ = std::thread([this, ch] { run(ch); });
    } catch (const std::system_error&) {
      close_fds();
      return false;
    }
    return true;
  }

  void stop() {
    if (thread_.joinable()) {
      uint64_t one = 1;
      // An eventfd write of 1 cannot block or fail short of a counter at its maximum.
      ssize_t ignored = write(stopfd_, &one, sizeof one);
      (void)ignored;
      thread_.join();
    }
    close_fds();
    fired_.store(false);
  }

  bool active() const { return pidfd_ >= 0; }
  // The peer process exited (the pidfd polled readable) since start().
  bool fired() const { return fired_.load(); }

 private:
  void run(shmch_channel* ch) {
    struct pollfd fds[2] = {{pidfd_, POLLIN, 0}, {stopfd_, POLLIN, 0}};
    for (;;) {
      int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (fds[1].revents & POLLIN) != 0) return;
      if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        fired_.store(true);
        shmch_wake(ch);
        return;
      }
    }
  }

  void close_fds() {
    if (pidfd_ >= 0) close(pidfd_);
    if (stopfd_ >= 0) close(stopfd_);
    pidfd_ = stopfd_ = -1;
  }

  int pidfd_ = -1;
  int stopfd_ = -1;
  std::thread thread_;
  std::atomic<bool> fired_{false};
};

}  // namespace message
}  // namespace shmch
