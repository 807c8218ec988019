#include "server_wrap.h"

#include <algorithm>
#include <string>

#include "arguments.h"
#include "channel_wrap.h"
#include "error.h"

namespace shmch_binding {

namespace {

void ThrowIfClosed(Napi::Env env, shmch_server* server) {
  if (server == nullptr) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_CLOSED, err, "server is closed");
  }
}

}  // namespace

Napi::Function ServerWrap::Init(Napi::Env env, Napi::Function channel_class) {
  auto* channel = new Napi::FunctionReference(Napi::Persistent(channel_class));
  Napi::Function server_class;
  try {
    server_class = DefineClass(env, "Server",
                               {
                                   InstanceMethod<&ServerWrap::Arm>("arm"),
                                   InstanceMethod<&ServerWrap::Accept>("accept"),
                                   InstanceMethod<&ServerWrap::Left>("left"),
                                   InstanceMethod<&ServerWrap::Connections>("connections"),
                                   InstanceMethod<&ServerWrap::Ref>("ref"),
                                   InstanceMethod<&ServerWrap::Unref>("unref"),
                                   InstanceMethod<&ServerWrap::Close>("close"),
                               },
                               channel);
    // Every instance keeps the class alive (its prototype's constructor), so no server outlives
    // the reference but at the environment's end, when no server makes connections.
    server_class.AddFinalizer([](Napi::Env, Napi::FunctionReference* ref) { delete ref; }, channel);
  } catch (...) {
    delete channel;
    throw;
  }
  return server_class;
}

ServerWrap::ServerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ServerWrap>(info) {
  Napi::Env env = info.Env();
  channel_class_ = static_cast<Napi::FunctionReference*>(info.Data());
  // Every argument is checked before the directory is created, which a throw would leave open.
  Napi::Function on_wake = FunctionArg(info, 6, "onWake");
  std::string name = StringArg(info, 0, "name");
  shmch_options o{U32Arg(info, 1, "ringCapacity"), U32Arg(info, 2, "maxMessageSize"), U32Arg(info, 3, "mode"),
                  U32Arg(info, 4, "poolCapacity")};
  uint32_t max_clients = U32Arg(info, 5, "maxClients");
  shmch_error err{};
  shmch_status s = shmch_server_create(name.c_str(), &o, max_clients, &server_, &err);
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("cannot open channel " + name).c_str());
  try {
    waker_ = std::make_unique<ServerWaker>(env, server_, on_wake);
  } catch (...) {
    // A constructor that throws gets no destructor: release the directory here.
    shmch_server_close(server_);
    server_ = nullptr;
    throw;
  }
  env_ = env;
  // A process (or worker) that ends with the server open still stops the thread, ends every
  // connection and unlinks the names.
  napi_add_env_cleanup_hook(env_, &ServerWrap::OnEnvExit, this);
}

ServerWrap::~ServerWrap() {
  if (env_ != nullptr) napi_remove_env_cleanup_hook(env_, &ServerWrap::OnEnvExit, this);
  env_ = nullptr;
  // Collected: no connection wrap is left (each holds this object), but at the environment's
  // end, whose cleanup hook ran first.
  Shutdown(false);
}

void ServerWrap::OnEnvExit(void* self) {
  auto* wrap = static_cast<ServerWrap*>(self);
  wrap->env_ = nullptr;
  // No JavaScript runs from here on: the connections' views are forgotten, not detached.
  wrap->Shutdown(false);
}

void ServerWrap::Shutdown(bool javascript_runs) {
  // First: nothing below may run during a wait, and the thread must not wait on what is freed.
  if (waker_) waker_->Stop();
  waker_.reset();
  std::vector<ChannelWrap*> connections;
  connections.swap(connections_);
  for (ChannelWrap* connection : connections) connection->ForgetServer(javascript_runs);
  // Frees every connection: no wrap points at one any more.
  shmch_server_close(server_);
  server_ = nullptr;
}

void ServerWrap::FreeConnection(shmch_channel* connection) {
  // The user may close a connection while the waker waits: the pause ends that wait first.
  ServerWaker::Paused paused(waker_.get());
  if (waker_) waker_->Unwatch(connection);
  shmch_server_disconnect(server_, connection);
}

void ServerWrap::Disconnect(ChannelWrap* wrap, shmch_channel* connection) {
  connections_.erase(std::remove(connections_.begin(), connections_.end(), wrap), connections_.end());
  if (server_ != nullptr) FreeConnection(connection);
}

void ServerWrap::Arm(const Napi::CallbackInfo& info) {
  ThrowIfClosed(info.Env(), server_);
  waker_->Arm();
}

// accept() -> [connectionId, clientPid, Channel] for the next client that asks, null if none
// does; throws the error that made the server refuse a client (call again for the next).
Napi::Value ServerWrap::Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, server_);
  shmch_channel* connection = nullptr;
  uint32_t id = 0;
  uint32_t pid = 0;
  shmch_error err{};
  shmch_status s;
  {
    ServerWaker::Paused paused(waker_.get());
    s = shmch_server_accept(server_, &connection, &id, &pid, &err);
    if (s == SHMCH_OK && waker_) waker_->Watch(connection);
  }
  if (s == SHMCH_E_NOT_FOUND) return env.Null();
  if (s != SHMCH_OK) ThrowStatus(env, s, err, "could not connect a client");
  Napi::Object channel;
  try {
    channel = channel_class_->New({Napi::External<shmch_channel>::New(env, connection),
                                   Napi::External<ServerWrap>::New(env, this), Value()});
  } catch (...) {
    FreeConnection(connection);
    throw;
  }
  connections_.push_back(ChannelWrap::Unwrap(channel));
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(uint32_t{0}, Napi::Number::New(env, id));
  result.Set(uint32_t{1}, Napi::Number::New(env, pid));
  result.Set(uint32_t{2}, channel);
  return result;
}

// left() -> the ids of connections whose client closed or died since the last call (each
// once): read what they left, then close() them.
Napi::Value ServerWrap::Left(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, server_);
  std::vector<uint32_t> ids;
  {
    ServerWaker::Paused paused(waker_.get());
    uint32_t batch[SHMCH_MAX_CLIENTS];
    size_t n;
    do {
      n = shmch_server_left(server_, batch, SHMCH_MAX_CLIENTS);
      ids.insert(ids.end(), batch, batch + n);
    } while (n == SHMCH_MAX_CLIENTS);
  }
  Napi::Array result = Napi::Array::New(env, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) result.Set(static_cast<uint32_t>(i), Napi::Number::New(env, ids[i]));
  return result;
}

// connections() -> how many connections are open (0 once closed).
Napi::Value ServerWrap::Connections(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), shmch_server_connections(server_));
}

void ServerWrap::Ref(const Napi::CallbackInfo& info) {
  if (waker_) waker_->Ref(info.Env());
}

void ServerWrap::Unref(const Napi::CallbackInfo& info) {
  if (waker_) waker_->Unref(info.Env());
}

// close(): ends every connection (their Channel objects read as closed), unlinks the names.
// Idempotent.
void ServerWrap::Close(const Napi::CallbackInfo&) {
  if (env_ != nullptr) napi_remove_env_cleanup_hook(env_, &ServerWrap::OnEnvExit, this);
  env_ = nullptr;
  Shutdown(true);
}

}  // namespace shmch_binding
