// JS class `Connector`: a client's connect in steps (shmch_connect, shmch_connect_finish,
// shmch_connect_cancel), so that the event loop never blocks while a server of many clients
// makes the connection. A finished Connector holds the attached channel until a client
// `Channel` takes it (new Channel(1, name, 0, 0, 0, onWake, 0, connector)).
#pragma once

#include <napi.h>

#include <string>

#include "../core/shmchannel.h"

namespace shmch_binding {

class ConnectorWrap : public Napi::ObjectWrap<ConnectorWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new Connector(name): claims a slot (or, for a server of one client, attaches at once).
  explicit ConnectorWrap(const Napi::CallbackInfo& info);
  ~ConnectorWrap() override;

  // The attached channel of the finished Connector `value`, which gives it up: the caller owns
  // it. A TypeError if `value` is no Connector or has not finished (or gave it up already).
  static shmch_channel* TakeChannel(Napi::Value value, const char* name);

 private:
  Napi::Value Finish(const Napi::CallbackInfo& info);
  void Cancel(const Napi::CallbackInfo& info);

  void Shutdown();
  static void OnEnvExit(void* self);

  std::string name_;
  shmch_connect_attempt* attempt_ = nullptr;  // until finished or cancelled
  shmch_channel* channel_ = nullptr;          // finished, not yet taken
  napi_env env_ = nullptr;                    // set while the environment cleanup hook is registered
};

}  // namespace shmch_binding
