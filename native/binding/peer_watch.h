// Wakes a channel's waker the moment the peer process exits: a thread in poll() on the peer's
// pidfd. With it, a dead peer is noticed at once and an idle channel needs no periodic
// liveness checks; without it (no pidfd, or no peer yet) the waker's timed waits still work.
#pragma once

#include <atomic>
#include <mutex>
#include <thread>

#include "../core/shmchannel.h"

namespace shmch_binding {

class PeerWatch {
 public:
  // Throws std::system_error if the eventfd or the thread cannot be created.
  explicit PeerWatch(shmch_channel* channel);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // Watches this pidfd from now on, instead of any earlier one (takes ownership; -1: none).
  void Watch(int pidfd);
  // True while a pidfd is watched and its process has not exited.
  bool Active() const { return active_.load(); }
  // Joins the thread and closes the descriptors; idempotent.
  void Stop();

 private:
  void Run();
  void Notify();

  shmch_channel* channel_;
  int event_fd_ = -1;
  std::mutex mutex_;
  int next_fd_ = -1;
  bool has_next_ = false;
  bool stopping_ = false;
  bool broken_ = false;  // the thread gave up: nothing is watched from then on
  std::atomic<bool> active_{false};
  std::thread thread_;
};

}  // namespace shmch_binding
