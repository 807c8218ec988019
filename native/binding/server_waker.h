// The thread per server of many clients that sleeps in shmch_server_wait() and wakes the JS
// event loop (ThreadSafeFunction) when a client asks, a connection has data or space, or a
// client left. As the channel's Waker: after each wake-up it stays disarmed until JS has done
// its work and calls Arm().
//
// The core forbids shmch_server_accept() and shmch_server_disconnect() during the wait. JS calls
// accept() and left() from onWake, while disarmed, but a connection may be closed (or collected)
// whenever: so every such call runs inside a Pause (see Paused below), which wakes a wait in
// progress and keeps the thread out of the next until it is done.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "../core/shmchannel.h"

namespace shmch_binding {

class ServerWaker {
 public:
  ServerWaker(Napi::Env env, shmch_server* server, Napi::Function on_wake);
  ~ServerWaker();
  ServerWaker(const ServerWaker&) = delete;
  ServerWaker& operator=(const ServerWaker&) = delete;

  void Arm();
  void Stop();  // joins the thread and releases the ThreadSafeFunction; idempotent
  void Ref(Napi::Env env);
  void Unref(Napi::Env env);

  // While one lives, the thread is not inside shmch_server_wait() and does not enter it: the
  // constructor wakes a wait in progress and blocks until it returned (the thread then reports
  // a wake, a harmless onWake at most). Only from the JS thread; nestable.
  class Paused {
   public:
    explicit Paused(ServerWaker* waker);  // null: nothing to pause (no thread)
    ~Paused();
    Paused(const Paused&) = delete;
    Paused& operator=(const Paused&) = delete;

   private:
    ServerWaker* waker_;
  };

  // Another process cutting a connection's segment short rings nothing: the process-wide
  // segment watch (segment_watch.h) notices it and wakes the connection, which wakes the
  // server's wait; a connection it cannot take is checked by a timed-out wait instead. Watch
  // once the connection is made, Unwatch before it is freed (Stop() unwatches those left).
  void Watch(shmch_channel* connection);
  void Unwatch(shmch_channel* connection);

 private:
  void Run();
  // How long a wait may sleep: -1, no timeout, if all that could need a look wakes it. Under mutex_.
  int IdleWaitMs() const;

  struct Watched {
    shmch_channel* connection;
    bool segment_watched;  // segment_watch::Add() took it
  };

  shmch_server* server_;
  Napi::ThreadSafeFunction tsfn_;
  std::mutex mutex_;
  std::condition_variable cv_;  // armed_, stopping_, pauses_ and waiting_ changed
  bool armed_ = false;
  bool stopping_ = false;
  int pauses_ = 0;        // Paused objects alive
  bool waiting_ = false;  // the thread is in shmch_server_wait() (or about to enter it)
  bool stopped_ = false;  // JS thread only
  std::vector<Watched> watched_;
  size_t unwatched_ = 0;  // connections of watched_ the segment watch did not take
  std::thread thread_;
};

}  // namespace shmch_binding
