// JS class `Channel`: one core channel and its waker. Mechanism only: frames in, frames out.
// Also one connection of a server of many clients (made by ServerWrap::Accept): the same
// channel calls, but no waker of its own (the server's waits for all of them), and the server
// owns the core object.
#pragma once

#include <napi.h>

#include <memory>

#include "../core/shmchannel.h"
#include "loan_views.h"
#include "waker.h"

namespace shmch_binding {

class ServerWrap;

class ChannelWrap : public Napi::ObjectWrap<ChannelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new Channel(role: 0 server | 1 client, name, ringCapacity, maxMessageSize, mode, onWake, poolCapacity,
  //             connector?: a finished Connector whose channel a client takes instead of attaching)
  // Connection mode, from ServerWrap only: new Channel(External<shmch_channel>, External<ServerWrap>, server)
  explicit ChannelWrap(const Napi::CallbackInfo& info);
  ~ChannelWrap() override;

  // Connection mode: the server is closing (close(), its environment ending, its collection)
  // and frees this connection with it. From now on the channel is closed. `javascript_runs`:
  // the views can be detached (else they are only forgotten: no JavaScript runs again).
  void ForgetServer(bool javascript_runs);

 private:
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value WriteFrames(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value ReadContinuation(const Napi::CallbackInfo& info);
  Napi::Value Loan(const Napi::CallbackInfo& info);
  void Unloan(const Napi::CallbackInfo& info);
  void DetachLoan(const Napi::CallbackInfo& info);
  Napi::Value WriteLoan(const Napi::CallbackInfo& info);
  Napi::Value Borrow(const Napi::CallbackInfo& info);
  void CopyBorrowed(const Napi::CallbackInfo& info);
  void Release(const Napi::CallbackInfo& info);
  void Arm(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  void AcceptNext(const Napi::CallbackInfo& info);
  void DropClient(const Napi::CallbackInfo& info);
  Napi::Value PeerState(const Napi::CallbackInfo& info);
  void Ref(const Napi::CallbackInfo& info);
  void Unref(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  shmch_channel* Open(const Napi::CallbackInfo& info);
  void OpenConnection(const Napi::CallbackInfo& info);
  void Shutdown();
  static void OnEnvExit(void* self);

  shmch_channel* channel_ = nullptr;
  std::unique_ptr<Waker> waker_;
  LoanViews views_;
  napi_env env_ = nullptr;  // set while the environment cleanup hook is registered
  // Connection mode: the server that owns channel_ (null once either is closed), and its JS
  // object, held so that the server is not collected before its connections. The server keeps
  // a list of its connection wraps: whichever goes first tells the other (ForgetServer,
  // ServerWrap::Disconnect).
  bool connection_ = false;
  ServerWrap* server_ = nullptr;
  Napi::ObjectReference server_object_;
};

}  // namespace shmch_binding
