// JS class `Channel`: one core channel and its waker. Mechanism only: frames in, frames out.
#pragma once

#include <napi.h>

#include <memory>

#include "../core/shmchannel.h"
#include "loan_views.h"
#include "waker.h"

namespace shmch_binding {

class ChannelWrap : public Napi::ObjectWrap<ChannelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new Channel(role: 0 server | 1 client, name, ringCapacity, maxMessageSize, mode, onWake, poolCapacity)
  explicit ChannelWrap(const Napi::CallbackInfo& info);
  ~ChannelWrap() override;

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
  void Shutdown();
  static void OnEnvExit(void* self);

  shmch_channel* channel_ = nullptr;
  std::unique_ptr<Waker> waker_;
  LoanViews views_;
  napi_env env_ = nullptr;
};

}  // namespace shmch_binding
