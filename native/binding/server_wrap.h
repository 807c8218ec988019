// JS class `Server`: a server of many clients (shmch_server of shmchannel.h), its waker, and
// the connections it made, each a `Channel` object in connection mode (channel_wrap.h).
//
// Lifetimes. The core frees every connection with its server, so a connection wrap must never
// reach its channel once the server is gone, nor the server once it is gone itself:
// - each connection wrap holds its server's JS object (a strong reference): the server is not
//   collected before its connections;
// - the server keeps the list of its live connection wraps; a connection closed or collected
//   first asks the server to free it (Disconnect) and leaves the list; a server closed first
//   (close(), its environment's end) detaches every wrap on the list (ForgetServer: channel and
//   server pointers null, views detached) before shmch_server_close();
// - the waker thread is joined before shmch_server_close(), and accept, left and disconnect
//   run while it is paused (ServerWaker::Paused), never during its shmch_server_wait().
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../core/shmchannel.h"
#include "server_waker.h"

namespace shmch_binding {

class ChannelWrap;

class ServerWrap : public Napi::ObjectWrap<ServerWrap> {
 public:
  // `channel_class`: the Channel constructor, which makes the connection objects.
  static Napi::Function Init(Napi::Env env, Napi::Function channel_class);
  // new Server(name, ringCapacity, maxMessageSize, mode, poolCapacity, maxClients, onWake)
  explicit ServerWrap(const Napi::CallbackInfo& info);
  ~ServerWrap() override;

  // From a connection wrap that closes or is collected: frees its connection, at once even if
  // the waker is waiting, and forgets the wrap.
  void Disconnect(ChannelWrap* wrap, shmch_channel* connection);

 private:
  void Arm(const Napi::CallbackInfo& info);
  Napi::Value Accept(const Napi::CallbackInfo& info);
  Napi::Value Left(const Napi::CallbackInfo& info);
  Napi::Value Connections(const Napi::CallbackInfo& info);
  void Ref(const Napi::CallbackInfo& info);
  void Unref(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  void FreeConnection(shmch_channel* connection);
  // `javascript_runs`: false from the environment's end or a finalizer (views are forgotten).
  void Shutdown(bool javascript_runs);
  static void OnEnvExit(void* self);

  shmch_server* server_ = nullptr;
  std::unique_ptr<ServerWaker> waker_;
  std::vector<ChannelWrap*> connections_;
  Napi::FunctionReference* channel_class_ = nullptr;  // the class's data, freed with the class
  napi_env env_ = nullptr;                            // set while the environment cleanup hook is registered
};

}  // namespace shmch_binding
