// Module entry: the classes and the name-level functions. Context-aware (N-API), so it
// loads in worker_threads and in several contexts of one process.
#include <napi.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "../core/shmchannel.h"
#include "arguments.h"
#include "channel_wrap.h"
#include "connector_wrap.h"
#include "environments.h"
#include "error.h"
#include "message_pool.h"
#include "server_wrap.h"
#include "shared_memory_wrap.h"
#include "waker.h"

namespace shmch_binding {

namespace {

// What lib/load-addon.ts checks: bump both whenever the JavaScript side needs another export
// or call. A build left over from another version then fails to load with a clear message
// instead of failing at its first call to what it lacks.
constexpr uint32_t kBindingRevision = 7;

Napi::Object Group(Napi::Env env, std::initializer_list<std::pair<const char*, uint32_t>> members) {
  Napi::Object group = Napi::Object::New(env);
  for (const auto& [name, value] : members) group.Set(name, value);
  return group;
}

// The numbers TypeScript copies from the definitions here, under its names for them (lib/protocol.ts,
// lib/native.ts): lib/native-constants.ts refuses a build in which any of them differs, or which has
// one that TypeScript lacks, so a stale build or a change on one side only fails at load.
Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("PROTOCOL_VERSION", SHMCH_PROTOCOL_VERSION);
  c.Set("FRAME_HEADER_SIZE", SHMCH_FRAME_HEADER_SIZE);
  c.Set("MIN_RING_CAPACITY", SHMCH_MIN_RING_CAPACITY);
  c.Set("MAX_RING_CAPACITY", SHMCH_MAX_RING_CAPACITY);
  c.Set("MAX_MESSAGE_SIZE", SHMCH_MAX_MESSAGE_SIZE);
  c.Set("POOL_BLOCK_SIZE", SHMCH_POOL_BLOCK_SIZE);
  c.Set("MAX_POOL_CAPACITY", SHMCH_MAX_POOL_CAPACITY);
  c.Set("MAX_CLIENTS", SHMCH_MAX_CLIENTS);
  c.Set("DEFAULT_MAX_CLIENTS", SHMCH_DEFAULT_MAX_CLIENTS);
  c.Set("FrameFlag", Group(env, {{"LOANED", SHMCH_FLAG_LOANED}}));
  c.Set("FrameKind", Group(env, {{"HELLO", SHMCH_HELLO},
                                 {"BYE", SHMCH_BYE},
                                 {"NOTIFY", SHMCH_NOTIFY},
                                 {"REQUEST", SHMCH_REQUEST},
                                 {"RESPONSE", SHMCH_RESPONSE},
                                 {"COMPLETE", SHMCH_COMPLETE},
                                 {"ERROR", SHMCH_ERROR},
                                 {"CANCEL", SHMCH_CANCEL}}));
  c.Set("SegmentState", Group(env, {{"SERVER_READY", SHMCH_STATE_SERVER_READY},
                                    {"CLIENT_ATTACHED", SHMCH_STATE_CLIENT_ATTACHED},
                                    {"SERVER_CLOSED", SHMCH_STATE_SERVER_CLOSED},
                                    {"CLIENT_CLOSED", SHMCH_STATE_CLIENT_CLOSED},
                                    {"CLIENT_DROPPED", SHMCH_STATE_CLIENT_DROPPED}}));
  c.Set("SegmentKind", Group(env, {{"CHANNEL", SHMCH_SEGMENT_CHANNEL},
                                   {"DIRECTORY", SHMCH_SEGMENT_DIRECTORY},
                                   {"CONNECTION", SHMCH_SEGMENT_CONNECTION}}));
  c.Set("SlotPhase", Group(env, {{"FREE", SHMCH_SLOT_FREE},
                                 {"CLAIMED", SHMCH_SLOT_CLAIMED},
                                 {"READY", SHMCH_SLOT_READY},
                                 {"CANCELLED", SHMCH_SLOT_CANCELLED},
                                 {"REFUSED", SHMCH_SLOT_REFUSED}}));
  c.Set("PeerState", Group(env, {{"NONE", SHMCH_PEER_NONE}, {"ALIVE", SHMCH_PEER_ALIVE}, {"GONE", SHMCH_PEER_GONE}}));
  c.Set("WakeEvent", Group(env, {{"ACTIVITY", kEventActivity}, {"PEER_LOST", kEventPeerLost}}));
  return c;
}

void ValidateName(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "name");
  shmch_error err{};
  shmch_status s = shmch_validate_name(name.c_str(), &err);
  if (s != SHMCH_OK) ThrowStatus(info.Env(), s, err, ("invalid name " + name).c_str());
}

void Unlink(const Napi::CallbackInfo& info) {
  std::string name = StringArg(info, 0, "name");
  shmch_error err{};
  shmch_status s = shmch_unlink(name.c_str(), &err);
  if (s != SHMCH_OK) ThrowStatus(info.Env(), s, err, ("cannot unlink " + name).c_str());
}

// inspect(name) -> { version, ringCapacity, maxMessageSize, poolCapacity, state, serverPid, clientPid,
//                    serverAlive, clientAlive, kind, maxClients, connectionId }
Napi::Value Inspect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  shmch_segment_info si{};
  shmch_error err{};
  shmch_status s = shmch_inspect(name.c_str(), &si, &err);
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("cannot inspect " + name).c_str());
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", si.version);
  o.Set("ringCapacity", si.ring_capacity);
  o.Set("poolCapacity", si.pool_capacity);
  o.Set("maxMessageSize", si.max_message_size);
  o.Set("state", si.state);
  o.Set("serverPid", si.server_pid);
  o.Set("clientPid", si.client_pid);
  o.Set("serverAlive", Napi::Boolean::New(env, si.server_alive != 0));
  o.Set("clientAlive", Napi::Boolean::New(env, si.client_alive != 0));
  o.Set("kind", si.kind);
  o.Set("maxClients", si.max_clients);
  o.Set("connectionId", si.connection_id);
  return o;
}

// inspectClients(name) -> [{ slot, pid, phase, connectionId, alive }] for the taken slots of a
// directory (ERR_INCOMPATIBLE_SEGMENT for any other segment)
Napi::Value InspectClients(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  // A directory has at most this many slots: one call reads them all.
  std::vector<shmch_client_info> clients(SHMCH_MAX_CLIENTS);
  size_t count = 0;
  shmch_error err{};
  shmch_status s = shmch_inspect_clients(name.c_str(), clients.data(), clients.size(), &count, &err);
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("cannot inspect " + name).c_str());
  count = std::min(count, clients.size());
  Napi::Array result = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("slot", clients[i].slot);
    o.Set("pid", clients[i].pid);
    o.Set("phase", clients[i].phase);
    o.Set("connectionId", clients[i].connection_id);
    o.Set("alive", Napi::Boolean::New(env, clients[i].alive != 0));
    result.Set(static_cast<uint32_t>(i), o);
  }
  return result;
}

// messagePoolTake(length) -> Buffer | undefined (see MessagePool::Take)
Napi::Value MessagePoolTake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return env.GetInstanceData<MessagePool>()->Take(env, ByteCountArg(info, 0, "length"));
}

void MessagePoolRelease(const Napi::CallbackInfo& info) {
  info.Env().GetInstanceData<MessagePool>()->Release();
}

Napi::Value MessagePoolIdleBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(info.Env().GetInstanceData<MessagePool>()->IdleBytes()));
}

// Lets a thread that waits for this core run first (a polling peer on the same core). Returns
// the milliseconds it took: far more than the system call's ~0.4 us when another thread ran.
Napi::Value YieldProcessor(const Napi::CallbackInfo& info) {
  struct timespec before;
  struct timespec after;
  clock_gettime(CLOCK_MONOTONIC, &before);
  sched_yield();
  clock_gettime(CLOCK_MONOTONIC, &after);
  double ms = double(after.tv_sec - before.tv_sec) * 1e3 + double(after.tv_nsec - before.tv_nsec) / 1e6;
  return Napi::Number::New(info.Env(), ms);
}

// refuseExternalMemory(refuse): loans and borrowed messages fall back as under Electron's V8
// sandbox (LoanViews::RefuseExternalMemory), for the specs of that fallback.
void RefuseExternalMemory(const Napi::CallbackInfo& info) {
  LoanViews::RefuseExternalMemory(BoolArg(info, 0, "refuse"));
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  // First: its cleanup hook must run after those of the channels this environment opens.
  environments::Enter(env);
  // One pool per environment (main thread, each worker), deleted with it.
  env.SetInstanceData<MessagePool>(new MessagePool());
  Napi::Function channel_class = ChannelWrap::Init(env);
  exports.Set("Channel", channel_class);
  exports.Set("Server", ServerWrap::Init(env, channel_class));
  exports.Set("Connector", ConnectorWrap::Init(env));
  exports.Set("SharedMemory", SharedMemoryWrap::Init(env));
  exports.Set("validateName", Napi::Function::New<ValidateName>(env, "validateName"));
  exports.Set("unlink", Napi::Function::New<Unlink>(env, "unlink"));
  exports.Set("yieldProcessor", Napi::Function::New<YieldProcessor>(env, "yieldProcessor"));
  exports.Set("inspect", Napi::Function::New<Inspect>(env, "inspect"));
  exports.Set("inspectClients", Napi::Function::New<InspectClients>(env, "inspectClients"));
  exports.Set("messagePoolTake", Napi::Function::New<MessagePoolTake>(env, "messagePoolTake"));
  exports.Set("messagePoolRelease", Napi::Function::New<MessagePoolRelease>(env, "messagePoolRelease"));
  exports.Set("messagePoolIdleBytes", Napi::Function::New<MessagePoolIdleBytes>(env, "messagePoolIdleBytes"));
  exports.Set("refuseExternalMemory", Napi::Function::New<RefuseExternalMemory>(env, "refuseExternalMemory"));
  exports.Set("bindingRevision", Napi::Number::New(env, kBindingRevision));
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

}  // namespace shmch_binding

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return shmch_binding::InitModule(env, exports);
}

NODE_API_MODULE(shmchannel, Init)
