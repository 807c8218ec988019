// The message API's watch of the peer process (message.cc): a thread that sleeps in poll() on
// a pidfd of the peer (shmch_open_peer_fd) and wakes the endpoint's wait (shmch_wake) when the
// process exits. So a death is seen at once, and /proc is read only after the pidfd fired
// instead of at every timed wake-up.
//
// Across fork(): the child gets a copy of the watch but not its thread, and shares the parent's
// eventfd (one open file description). So stop() in any process but the one that called
// start() only closes that process's fds: writing the eventfd would stop the parent's thread,
// and the parent would never hear of its peer's death. In the child, active() is false after
// that stop(); before it, the child's copy still says active() (the endpoint is not meant to be
// used in a child: only closed). If the thread ends for any reason but stop() or the peer's exit
// (poll failing), active() turns false and the endpoint is woken, so the caller goes back to
// reading /proc on a timer.
#pragma once

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <memory>
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
    owner_ = getpid();
    fired_.store(false);
    failed_.store(false);
    try {
      thread_.reset(new std::thread([this, ch] { run(ch); }));
    } catch (const std::exception&) {  // std::system_error, std::bad_alloc
      thread_.reset();
      close_fds();
      return false;
    }
    return true;
  }

  void stop() {
    if (thread_ && getpid() != owner_) {
      // A forked child's copy: the thread is the parent's, and so is the eventfd's counter.
      // The std::thread cannot be joined or destroyed here (destroying a joinable one
      // terminates), so its few bytes are left behind on purpose.
      (void)thread_.release();
    } else if (thread_) {
      uint64_t one = 1;
      // An eventfd write of 1 cannot block or fail short of a counter at its maximum.
      ssize_t ignored = write(stopfd_, &one, sizeof one);
      (void)ignored;
      thread_->join();
      thread_.reset();
    }
    close_fds();
    fired_.store(false);
    failed_.store(false);
  }

  bool active() const { return pidfd_ >= 0 && !failed_.load(); }
  // The peer process exited (the pidfd polled readable) since start().
  bool fired() const { return fired_.load(); }

 private:
  void run(shmch_channel* ch) {
    struct pollfd fds[2] = {{pidfd_, POLLIN, 0}, {stopfd_, POLLIN, 0}};
    for (;;) {
      int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        // Not watching any more: the endpoint must look at /proc again, starting now.
        failed_.store(true);
        shmch_wake(ch);
        return;
      }
      if ((fds[1].revents & POLLIN) != 0) return;
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
  pid_t owner_ = 0;  // the process that started the thread
  std::unique_ptr<std::thread> thread_;
  std::atomic<bool> fired_{false};
  std::atomic<bool> failed_{false};
};

}  // namespace message
}  // namespace shmch
