#include "channel_wrap.h"

#include <cstring>
#include <string>

#include "arguments.h"
#include "connector_wrap.h"
#include "error.h"
#include "server_wrap.h"

namespace shmch_binding {

namespace {

void ThrowIfClosed(Napi::Env env, shmch_channel* ch) {
  if (ch == nullptr) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_CLOSED, err, "channel is closed");
  }
}

// Throws what a failed call ran into: `corrupt` for a protocol error, `otherwise` for the rest.
void ThrowUnlessOk(Napi::Env env, shmch_status s, const char* corrupt, const char* otherwise) {
  if (s == SHMCH_OK) return;
  const char* what = s == SHMCH_E_PROTOCOL ? corrupt : otherwise;
  if (s == SHMCH_E_TRUNCATED) {
    what = "the shared memory segment lost pages: another process shrank it";
  }
  shmch_error err{};
  ThrowStatus(env, s, err, what);
}

}  // namespace

Napi::Function ChannelWrap::Init(Napi::Env env) {
  return DefineClass(env, "Channel",
                     {
                         InstanceMethod<&ChannelWrap::Write>("write"),
                         InstanceMethod<&ChannelWrap::WriteFrames>("writeFrames"),
                         InstanceMethod<&ChannelWrap::Read>("read"),
                         InstanceMethod<&ChannelWrap::ReadContinuation>("readContinuation"),
                         InstanceMethod<&ChannelWrap::Loan>("loan"),
                         InstanceMethod<&ChannelWrap::Unloan>("unloan"),
                         InstanceMethod<&ChannelWrap::DetachLoan>("detachLoan"),
                         InstanceMethod<&ChannelWrap::WriteLoan>("writeLoan"),
                         InstanceMethod<&ChannelWrap::Borrow>("borrow"),
                         InstanceMethod<&ChannelWrap::CopyBorrowed>("copyBorrowed"),
                         InstanceMethod<&ChannelWrap::Release>("release"),
                         InstanceMethod<&ChannelWrap::Arm>("arm"),
                         InstanceMethod<&ChannelWrap::Info>("info"),
                         InstanceMethod<&ChannelWrap::AcceptNext>("acceptNext"),
                         InstanceMethod<&ChannelWrap::DropClient>("dropClient"),
                         InstanceMethod<&ChannelWrap::PeerState>("peerState"),
                         InstanceMethod<&ChannelWrap::Ref>("ref"),
                         InstanceMethod<&ChannelWrap::Unref>("unref"),
                         InstanceMethod<&ChannelWrap::Close>("close"),
                     });
}

ChannelWrap::ChannelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ChannelWrap>(info) {
  Napi::Env env = info.Env();
  // JavaScript has no way to make an External: only ServerWrap::Accept passes one.
  if (info[0].IsExternal()) {
    OpenConnection(info);
    return;
  }
  // Checked before the segment is opened, which a throw would leave open.
  Napi::Function on_wake = FunctionArg(info, 5, "onWake");
  channel_ = Open(info);
  try {
    waker_ = std::make_unique<Waker>(env, channel_, on_wake);
  } catch (...) {
    // A constructor that throws gets no destructor: release the segment here.
    shmch_close(channel_);
    channel_ = nullptr;
    throw;
  }
  env_ = env;
  // A process that exits with the channel open still stops the thread and, for a server,
  // unlinks the segment.
  napi_add_env_cleanup_hook(env_, &ChannelWrap::OnEnvExit, this);
}

shmch_channel* ChannelWrap::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t role = U32Arg(info, 0, "role");
  std::string name = StringArg(info, 1, "name");
  shmch_channel* ch = nullptr;
  shmch_error err{};
  shmch_status s;
  if (role == SHMCH_SERVER) {
    shmch_options o{U32Arg(info, 2, "ringCapacity"), U32Arg(info, 3, "maxMessageSize"),
                    U32Arg(info, 4, "mode"), U32Arg(info, 6, "poolCapacity")};
    s = shmch_create(name.c_str(), &o, &ch, &err);
  } else if (info.Length() > 7 && !info[7].IsUndefined()) {
    // Attached already, by the steps of a Connector (which no longer holds it).
    return ConnectorWrap::TakeChannel(info[7], "connector");
  } else {
    s = shmch_attach(name.c_str(), &ch, &err);
  }
  if (s != SHMCH_OK) ThrowStatus(env, s, err, (std::string("cannot open channel ") + name).c_str());
  return ch;
}

void ChannelWrap::OpenConnection(const Napi::CallbackInfo& info) {
  if (info.Length() < 3 || !info[1].IsExternal() || !info[2].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "a connection is made by its server's accept()");
  }
  // First what may throw: a constructor that throws leaves the connection to the server.
  server_object_ = Napi::Persistent(info[2].As<Napi::Object>());
  connection_ = true;
  channel_ = info[0].As<Napi::External<shmch_channel>>().Data();
  server_ = info[1].As<Napi::External<ServerWrap>>().Data();
}

void ChannelWrap::ForgetServer(bool javascript_runs) {
  if (javascript_runs) {
    // Before the server unmaps the connection: a view kept reads as empty.
    views_.DetachAll(Pool::kOwn);
    views_.DetachAll(Pool::kPeer);
    server_object_.Reset();
  } else {
    views_.Forget();
    server_object_.SuppressDestruct();
  }
  server_ = nullptr;
  channel_ = nullptr;
}

ChannelWrap::~ChannelWrap() {
  if (env_ != nullptr && channel_ != nullptr) napi_remove_env_cleanup_hook(env_, &ChannelWrap::OnEnvExit, this);
  Shutdown();
}

void ChannelWrap::OnEnvExit(void* self) {
  auto* wrap = static_cast<ChannelWrap*>(self);
  wrap->env_ = nullptr;
  // No JavaScript runs from here on: no view can be read again.
  wrap->views_.Forget();
  wrap->Shutdown();
}

void ChannelWrap::Shutdown() {
  if (connection_) {
    ServerWrap* server = server_;
    shmch_channel* connection = channel_;
    server_ = nullptr;
    channel_ = nullptr;
    // The server frees it (and forgets this wrap); a server closed first did both already.
    if (server != nullptr && connection != nullptr) server->Disconnect(this, connection);
    return;
  }
  if (waker_) waker_->Stop();
  waker_.reset();
  shmch_close(channel_);
  channel_ = nullptr;
}

// write(kind, id, total, payload: Uint8Array) -> boolean (false: ring full, retry on wake)
Napi::Value ChannelWrap::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  auto payload = BytesArg(info, 3, "write(kind, id, total, payload: Uint8Array)");
  uint8_t kind = U8Arg(info, 0, "kind");
  if (payload.ByteLength() > 0xFFFFFFFFu) throw Napi::RangeError::New(env, "payload too large");
  shmch_status s = shmch_write(channel_, kind, U32Arg(info, 1, "id"),
                               U32Arg(info, 2, "total"), payload.Data(),
                               static_cast<uint32_t>(payload.ByteLength()));
  if (s == SHMCH_OK) return Napi::Boolean::New(env, true);
  if (s == SHMCH_E_FULL) return Napi::Boolean::New(env, false);
  ThrowUnlessOk(env, s, "peer corrupted the outbound ring", "write rejected");
  return env.Undefined();
}

// writeFrames(frames: Uint8Array, length) -> bytes of whole frames taken from the front
// (fewer than length: the ring is full, retry on wake)
Napi::Value ChannelWrap::WriteFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  auto frames = BytesArg(info, 0, "writeFrames(frames: Uint8Array, length)");
  uint32_t length = U32Arg(info, 1, "length");
  if (length > frames.ByteLength()) throw Napi::RangeError::New(env, "length exceeds the frames buffer");
  size_t consumed = 0;
  shmch_status s = shmch_write_frames(channel_, frames.Data(), length, &consumed);
  ThrowUnlessOk(env, s, "peer corrupted the outbound ring", "frames rejected");
  return Napi::Number::New(env, static_cast<double>(consumed));
}

// read(target: Uint8Array) -> number of bytes of whole frames copied into target
Napi::Value ChannelWrap::Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  auto target = BytesArg(info, 0, "read(target: Uint8Array, largeFrom: number)");
  uint32_t large_from = U32Arg(info, 1, "largeFrom");
  size_t written = 0;
  shmch_status s = shmch_read_announcing(channel_, target.Data(), target.ByteLength(), large_from, &written);
  ThrowUnlessOk(env, s, "peer wrote an invalid frame", "read rejected");
  return Napi::Number::New(env, static_cast<double>(written));
}

Napi::Value ChannelWrap::ReadContinuation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  auto target = BytesArg(info, 0, "readContinuation(target: Uint8Array)");
  size_t written = 0;
  shmch_status s = shmch_read_continuation(channel_, target.Data(), target.ByteLength(), &written);
  ThrowUnlessOk(env, s, "peer wrote an invalid frame", "no message in progress of that length");
  return Napi::Number::New(env, static_cast<double>(written));
}

// loan(size) -> [offset, ArrayBuffer of size bytes in our pool]; null while the pool has no run
// that long (retry after a wake); undefined if the runtime refuses external memory (nothing
// is loaned then).
Napi::Value ChannelWrap::Loan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  uint32_t size = U32Arg(info, 0, "size");
  uint8_t* data = nullptr;
  uint32_t offset = 0;
  uint32_t extent = 0;
  shmch_status s = shmch_loan(channel_, size, &data, &offset, &extent);
  if (s == SHMCH_E_FULL) return env.Null();
  ThrowUnlessOk(env, s, "peer released a loan it did not hold", "loan refused");
  Napi::Value view;
  try {
    view = views_.Create(env, Pool::kOwn, offset, data, size);
  } catch (...) {
    shmch_unloan(channel_, offset);
    throw;
  }
  if (view.IsEmpty()) {
    shmch_unloan(channel_, offset);
    return env.Undefined();
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t{0}, Napi::Number::New(env, offset));
  result.Set(uint32_t{1}, view);
  return result;
}

// unloan(offset): a loan not sent goes back; its view is detached.
void ChannelWrap::Unloan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t offset = U32Arg(info, 0, "offset");
  views_.Detach(Pool::kOwn, offset);
  if (channel_ == nullptr) return;
  ThrowUnlessOk(env, shmch_unloan(channel_, offset), "unloan", "not a loan held unsent");
}

// detachLoan(offset): the loan's view goes dark (it is being sent); the loan stays loaned.
void ChannelWrap::DetachLoan(const Napi::CallbackInfo& info) {
  views_.Detach(Pool::kOwn, U32Arg(info, 0, "offset"));
}

// writeLoan(kind, id, offset, start, length) -> boolean (false: ring full, retry on wake)
Napi::Value ChannelWrap::WriteLoan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  uint32_t offset = U32Arg(info, 2, "offset");
  shmch_status s = shmch_write_loan(channel_, U8Arg(info, 0, "kind"), U32Arg(info, 1, "id"), offset,
                                    U32Arg(info, 3, "start"), U32Arg(info, 4, "length"));
  if (s == SHMCH_OK) {
    views_.Detach(Pool::kOwn, offset);
    return Napi::Boolean::New(env, true);
  }
  if (s == SHMCH_E_FULL) return Napi::Boolean::New(env, false);
  ThrowUnlessOk(env, s, "peer corrupted the outbound ring", "loan not sendable");
  return env.Undefined();
}

namespace {
// The bytes [start, start + length) of the held loan at `offset`, or a throw.
const uint8_t* BorrowedBytes(Napi::Env env, shmch_channel* ch, uint32_t offset, uint32_t start, size_t length) {
  const uint8_t* data = nullptr;
  uint32_t extent = 0;
  ThrowUnlessOk(env, shmch_borrowed(ch, offset, &data, &extent), "borrow", "not a held loan");
  if (start > extent || length > extent - start) throw Napi::RangeError::New(env, "outside the held loan");
  return data + start;
}
}  // namespace

// borrow(offset, start, length) -> ArrayBuffer over the held loan's message; undefined if the
// runtime refuses external memory (copy it with copyBorrowed instead).
Napi::Value ChannelWrap::Borrow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  uint32_t offset = U32Arg(info, 0, "offset");
  uint32_t length = U32Arg(info, 2, "length");
  const uint8_t* bytes = BorrowedBytes(env, channel_, offset, U32Arg(info, 1, "start"), length);
  Napi::Value view = views_.Create(env, Pool::kPeer, offset, const_cast<uint8_t*>(bytes), length);
  return view.IsEmpty() ? env.Undefined() : view;
}

// copyBorrowed(offset, start, target): copies target.length bytes of the held loan's message.
void ChannelWrap::CopyBorrowed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  auto target = BytesArg(info, 2, "copyBorrowed(offset, start, target: Uint8Array)");
  const uint8_t* bytes =
      BorrowedBytes(env, channel_, U32Arg(info, 0, "offset"), U32Arg(info, 1, "start"), target.ByteLength());
  if (target.ByteLength() > 0) std::memcpy(target.Data(), bytes, target.ByteLength());
}

// release(offset): the held loan goes back to the peer; its view, if any, is detached first.
void ChannelWrap::Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t offset = U32Arg(info, 0, "offset");
  views_.Detach(Pool::kPeer, offset);
  if (channel_ == nullptr) return;
  ThrowUnlessOk(env, shmch_release(channel_, offset), "peer corrupted its release ring", "not a held loan");
}

void ChannelWrap::Arm(const Napi::CallbackInfo& info) {
  // A connection has no waker: its server's wakes for all of them.
  if (connection_) return;
  ThrowIfClosed(info.Env(), channel_);
  waker_->Arm();
}

Napi::Value ChannelWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  shmch_info i{};
  shmch_get_info(channel_, &i);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ringCapacity", i.ring_capacity);
  o.Set("maxMessageSize", i.max_message_size);
  o.Set("maxFramePayload", i.max_frame_payload);
  o.Set("peerPid", i.peer_pid);
  o.Set("clientEpoch", i.client_epoch);
  o.Set("state", i.state);
  o.Set("poolCapacity", i.pool_capacity);
  return o;
}

// Only while the waker is disarmed (from the onWake callback, before arm()).
void ChannelWrap::AcceptNext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (connection_) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_INVALID_ARG, err, "a connection has no next client: close it, its server accepts the next");
  }
  ThrowIfClosed(env, channel_);
  // The next client will reuse the pool the old one lent us.
  views_.DetachAll(Pool::kPeer);
  ThrowUnlessOk(env, shmch_accept_next(channel_), "acceptNext", "acceptNext");
}

// Server, after a protocol error from its client: see shmch_drop_client.
void ChannelWrap::DropClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  ThrowUnlessOk(env, shmch_drop_client(channel_), "dropClient", "dropClient");
}

// peerState() -> 0 none, 1 alive, 2 gone (as the waker would judge it now)
Napi::Value ChannelWrap::PeerState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ThrowIfClosed(env, channel_);
  return Napi::Number::New(env, shmch_peer_state(channel_));
}

void ChannelWrap::Ref(const Napi::CallbackInfo& info) {
  if (waker_) waker_->Ref(info.Env());
}

void ChannelWrap::Unref(const Napi::CallbackInfo& info) {
  if (waker_) waker_->Unref(info.Env());
}

void ChannelWrap::Close(const Napi::CallbackInfo&) {
  if (env_ != nullptr && channel_ != nullptr) napi_remove_env_cleanup_hook(env_, &ChannelWrap::OnEnvExit, this);
  env_ = nullptr;
  // Before the mapping goes: a view kept after close reads as empty.
  views_.DetachAll(Pool::kOwn);
  views_.DetachAll(Pool::kPeer);
  Shutdown();
  server_object_.Reset();
}

}  // namespace shmch_binding
