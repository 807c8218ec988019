// The ArrayBuffers a channel lends JavaScript over its pools: its own loans (outbound pool)
// and the messages it borrows (the peer's pool). Each is external memory inside the segment's
// mapping, so each is detached before the core may hand its bytes to someone else (a sent
// loan, a released message, a client that left) and before the mapping goes (close).
// A view collected without being given back is only forgotten here: the TypeScript layer
// notices it (FinalizationRegistry) and gives its bytes back to the core.
#pragma once

#include <napi.h>

#include <cstdint>
#include <unordered_map>

namespace shmch_binding {

enum class Pool : uint8_t { kOwn, kPeer };

class LoanViews {
 public:
  // An ArrayBuffer over `length` bytes at `data`, remembered under (pool, offset); an empty
  // value if the runtime refuses external memory (Electron's V8 sandbox).
  Napi::Value Create(Napi::Env env, Pool pool, uint32_t offset, uint8_t* data, size_t length);
  // Detaches the view remembered under (pool, offset), if it is still alive; forgets it.
  void Detach(Pool pool, uint32_t offset);
  // Detaches every view of `pool`.
  void DetachAll(Pool pool);
  // Forgets every view without touching JavaScript (the environment is ending).
  void Forget();
  // From now on, Create() acts as under Electron's V8 sandbox (external memory refused), or
  // stops doing so: how the specs reach the fallback. Process-wide.
  static void RefuseExternalMemory(bool refuse);

 private:
  static uint64_t Key(Pool pool, uint32_t offset) { return (uint64_t(pool) << 32) | offset; }
  std::unordered_map<uint64_t, Napi::Reference<Napi::ArrayBuffer>> views_;
};

}  // namespace shmch_binding
