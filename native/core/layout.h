// Byte offsets of docs/PROTOCOL.md §1, and atomic access to words inside the segment.
#pragma once

#include <cstdint>
#include <cstring>

namespace shmch {

constexpr uint64_t kMagic = 0x314E414843484D53ull;  // "SHMCHAN1"
constexpr uint32_t kHeaderSize = 512;               // header + both ring controls
constexpr uint32_t kReleaseEntrySize = 8;

namespace off {
constexpr size_t kMagic = 0;
constexpr size_t kVersion = 8;
constexpr size_t kHeaderSize = 12;
constexpr size_t kSegmentSize = 16;
constexpr size_t kRingCapacity = 24;
constexpr size_t kMaxMessageSize = 28;
constexpr size_t kServerPid = 32;
constexpr size_t kClientPid = 36;
constexpr size_t kServerStartTime = 40;
constexpr size_t kClientStartTime = 48;
constexpr size_t kState = 56;
constexpr size_t kClientEpoch = 60;
constexpr size_t kServerDoorbell = 64;
constexpr size_t kClientDoorbell = 128;
constexpr size_t kServerSleeping = 192;
constexpr size_t kClientSleeping = 196;
constexpr size_t kPoolCapacity = 200;
// What the segment is (SHMCH_SEGMENT_*): a channel, a directory (directory.h) or a connection.
constexpr size_t kKind = 204;
constexpr size_t kRingS2C = 256;
constexpr size_t kRingC2S = 384;
// Within a ring control block.
// The producer's cache line: its ring head, and how far it took back its pool's releases.
constexpr size_t kHead = 0;
constexpr size_t kReleaseTail = 4;
// The consumer's: its ring tail, and how many of the producer's loans it released.
constexpr size_t kTail = 64;
constexpr size_t kWriterWaiting = 68;
constexpr size_t kReleaseHead = 72;
constexpr size_t kPoolWaiting = 76;
constexpr size_t kData = 512;
}  // namespace off

inline uint32_t* word32(uint8_t* base, size_t offset) {
  return reinterpret_cast<uint32_t*>(base + offset);
}
inline uint32_t load_acquire(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void store_release(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline void store_seq_cst(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
inline uint32_t exchange_seq_cst(uint32_t* p, uint32_t v) {
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
inline void fence_seq_cst() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Plain (non-atomic) little-endian reads of fields written once before SERVER_READY.
inline uint32_t read_u32(const uint8_t* base, size_t offset) {
  uint32_t v;
  std::memcpy(&v, base + offset, sizeof v);
  return v;
}
inline uint64_t read_u64(const uint8_t* base, size_t offset) {
  uint64_t v;
  std::memcpy(&v, base + offset, sizeof v);
  return v;
}
inline void write_u32(uint8_t* base, size_t offset, uint32_t v) { std::memcpy(base + offset, &v, sizeof v); }
inline void write_u64(uint8_t* base, size_t offset, uint64_t v) { std::memcpy(base + offset, &v, sizeof v); }

inline uint32_t align8(uint32_t n) { return (n + 7u) & ~7u; }

}  // namespace shmch
