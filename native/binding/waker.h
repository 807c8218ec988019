// The thread per channel that sleeps on the channel's doorbell and wakes the JS event
// loop (ThreadSafeFunction) when there is something to read, space to write, or the peer
// is gone. After each wake-up it stays disarmed until JS has drained and calls Arm(), so a
// busy stream makes no cross-thread calls and the peer's writes no system calls.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include <memory>

#include "../core/shmchannel.h"
#include "peer_watch.h"

namespace shmch_binding {

// The bits of onWake's argument; the addon exports them as constants.WakeEvent (addon.cc).
constexpr int kEventActivity = 1;
constexpr int kEventPeerLost = 2;

class Waker {
 public:
  Waker(Napi::Env env, shmch_channel* channel, Napi::Function on_wake);
  ~Waker();
  void Arm();
  void Stop();  // joins the thread and releases the ThreadSafeFunction; idempotent
  void Ref(Napi::Env env);
  void Unref(Napi::Env env);

 private:
  void Run();
  // Points the peer watch at the current peer. True if the wait needs a timeout to notice the
  // peer go: there is one and no watch on it, or it has flagged that it is leaving.
  bool WatchPeer();
  // How long a wait with nothing to watch may sleep: -1, no timeout, if all that could need a
  // look wakes the thread.
  int IdleWaitMs() const;

  shmch_channel* channel_;
  Napi::ThreadSafeFunction tsfn_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
  std::unique_ptr<PeerWatch> peer_watch_;  // null if it could not start
  uint32_t watched_pid_ = 0;               // waker thread only
  bool segment_watched_ = false;           // segment_watch::Add() took the channel
  std::thread thread_;
};

}  // namespace shmch_binding
