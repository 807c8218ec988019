#include "connector_wrap.h"

#include <cstring>

#include "arguments.h"
#include "error.h"

namespace shmch_binding {

namespace {

// Marks the objects this class wraps, so that TakeChannel() unwraps nothing else (ObjectWrap's
// Unwrap of another class's object would hand out the wrong type).
const napi_type_tag kConnectorTag = {0x7368'6d63'6843'6f6eULL, 0x6e65'6374'6f72'0001ULL};

bool IsConnector(Napi::Value value) {
  if (!value.IsObject()) return false;
  bool tagged = false;
  return napi_check_object_type_tag(value.Env(), value, &kConnectorTag, &tagged) == napi_ok && tagged;
}

// The core says so in the detail of a NOT_READY: the server closed or died after the claim, so
// this attempt can never finish (a new one may, with the next server under the name).
bool ServerGone(const shmch_error& err) {
  return err.detail != nullptr && std::strstr(err.detail, "server gone") != nullptr;
}

}  // namespace

Napi::Function ConnectorWrap::Init(Napi::Env env) {
  return DefineClass(env, "Connector",
                     {
                         InstanceMethod<&ConnectorWrap::Finish>("finish"),
                         InstanceMethod<&ConnectorWrap::Cancel>("cancel"),
                     });
}

ConnectorWrap::ConnectorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ConnectorWrap>(info) {
  Napi::Env env = info.Env();
  name_ = StringArg(info, 0, "name");
  if (napi_type_tag_object(env, info.This(), &kConnectorTag) != napi_ok) {
    throw Napi::Error::New(env, "cannot tag the connector");
  }
  shmch_error err{};
  shmch_status s = shmch_connect(name_.c_str(), &attempt_, &err);
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("cannot open channel " + name_).c_str());
  env_ = env;
  // A worker that ends mid-connect gives the slot (or the channel) back.
  napi_add_env_cleanup_hook(env_, &ConnectorWrap::OnEnvExit, this);
}

ConnectorWrap::~ConnectorWrap() { Shutdown(); }

void ConnectorWrap::OnEnvExit(void* self) {
  auto* wrap = static_cast<ConnectorWrap*>(self);
  wrap->env_ = nullptr;
  wrap->Shutdown();
}

void ConnectorWrap::Shutdown() {
  if (env_ != nullptr) napi_remove_env_cleanup_hook(env_, &ConnectorWrap::OnEnvExit, this);
  env_ = nullptr;
  shmch_connect_cancel(attempt_);
  attempt_ = nullptr;
  // Finished and never taken: the client leaves (the server sees it close).
  shmch_close(channel_);
  channel_ = nullptr;
}

// finish() -> true once attached (the channel waits to be taken by new Channel(..., this)),
// false while the server has yet to make the connection; throws if it cannot be made (the
// attempt is over then).
Napi::Value ConnectorWrap::Finish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (channel_ != nullptr) return Napi::Boolean::New(env, true);
  if (attempt_ == nullptr) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_CLOSED, err, "the connector was cancelled, or its channel taken");
  }
  shmch_channel* ch = nullptr;
  shmch_error err{};
  shmch_status s = shmch_connect_finish(attempt_, 0, &ch, &err);
  if (s == SHMCH_E_NOT_READY && !ServerGone(err)) return Napi::Boolean::New(env, false);
  // Whatever the status, the attempt is over: it is freed (a slot not handed over goes back).
  std::string detail = err.detail != nullptr ? err.detail : "";
  if (err.detail != nullptr) err.detail = detail.c_str();
  shmch_connect_cancel(attempt_);
  attempt_ = nullptr;
  if (s == SHMCH_OK) {
    channel_ = ch;
    return Napi::Boolean::New(env, true);
  }
  ThrowStatus(env, s, err, ("cannot open channel " + name_).c_str());
}

// cancel(): gives the slot back, or closes the attached channel no Channel took. Idempotent.
void ConnectorWrap::Cancel(const Napi::CallbackInfo&) { Shutdown(); }

shmch_channel* ConnectorWrap::TakeChannel(Napi::Value value, const char* name) {
  Napi::Env env = value.Env();
  if (!IsConnector(value)) throw Napi::TypeError::New(env, std::string(name) + " must be a Connector");
  ConnectorWrap* connector = Unwrap(value.As<Napi::Object>());
  if (connector == nullptr || connector->channel_ == nullptr) {
    throw Napi::TypeError::New(env, std::string(name) + " must be a Connector that finished, its channel not yet taken");
  }
  shmch_channel* ch = connector->channel_;
  connector->channel_ = nullptr;
  // Nothing left to clean up at the environment's end: the Channel owns the channel now.
  connector->Shutdown();
  return ch;
}

}  // namespace shmch_binding
