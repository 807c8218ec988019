// Mutation fuzzer for the core: a server and a client channel on one real segment exchange
// frames while random and targeted byte mutations hit the header, the ring control blocks
// and the frames in flight. Every other run also fuzzes a server of many clients (PROTOCOL §7):
// clients connect, finish, cancel, talk and leave while the server waits, accepts, reads and
// disconnects, and the mutations hit the directory (its header, every slot field, forged
// claims) and the connections as they hit a channel. Most runs have loan pools (PROTOCOL §6): both sides also loan,
// send by reference, borrow and release, while the mutations forge LOANED frames with random
// descriptors, release-ring entries and the pools' counters. Built with AddressSanitizer +
// UndefinedBehaviorSanitizer, any out-of-bounds access or UB aborts; a call that does not
// return (hang) is caught by the alarm below; the loan invariants (check_* below) abort when
// broken. Usage: fuzz_segment [iterations] [seed-file]
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../core/directory.h"
#include "../core/layout.h"
#include "../core/pool.h"
#include "../core/segment.h"
#include "../core/shmchannel.h"

namespace {

constexpr uint32_t kCapacity = 4096;
constexpr uint32_t kBlock = SHMCH_POOL_BLOCK_SIZE;
// Pool of a run with loans: few blocks, so that it runs full and reclaims often; five blocks
// leave three release slots spare (eight), as a pool that is not a power of two does.
constexpr uint32_t kPool = 5 * kBlock;
constexpr uint32_t kMaxMessage = 64 * 1024;
// This run's layout (with or without pools).
shmch::SegmentLayout g_layout{};
uint32_t g_pool = 0;
size_t g_segment_size = 0;
unsigned long long g_mutations = 0;
unsigned long long g_continued = 0;  // continuation reads that delivered bytes: is the path reached?
unsigned long long g_truncations = 0;
unsigned long long g_loans = 0;          // loans handed out
unsigned long long g_loans_sent = 0;     // write_loan that reached the ring
unsigned long long g_borrowed = 0;       // LOANED frames read and checked
unsigned long long g_released = 0;       // releases that reached the release ring
unsigned long long g_loan_protocol = 0;  // loans / releases refused as a protocol error
unsigned long long g_forged = 0;         // releases a mutation forged exactly (indistinguishable)
unsigned long long g_directory_runs = 0;
unsigned long long g_accepted = 0;       // connections a server of many made
unsigned long long g_finished = 0;       // attempts that became a client channel
unsigned long long g_dir_mutations = 0;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_segment: %s\n", what);
  std::abort();
}

void on_alarm(int) {
  static const char msg[] = "fuzz_segment: a call did not return within the alarm: hang\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(3);
}

// Offsets a hostile peer would aim at first: every field the reader trusts least.
const size_t kTargets[] = {
    shmch::off::kMagic,          shmch::off::kVersion,         shmch::off::kRingCapacity,
    shmch::off::kMaxMessageSize, shmch::off::kServerPid,       shmch::off::kClientPid,
    shmch::off::kState,          shmch::off::kServerDoorbell,  shmch::off::kClientDoorbell,
    shmch::off::kServerSleeping, shmch::off::kClientSleeping,
    shmch::off::kRingS2C + shmch::off::kHead, shmch::off::kRingS2C + shmch::off::kTail,
    shmch::off::kRingS2C + shmch::off::kWriterWaiting,
    shmch::off::kRingC2S + shmch::off::kHead, shmch::off::kRingC2S + shmch::off::kTail,
    shmch::off::kRingC2S + shmch::off::kWriterWaiting,
    shmch::off::kPoolCapacity,
    shmch::off::kRingS2C + shmch::off::kReleaseHead, shmch::off::kRingS2C + shmch::off::kReleaseTail,
    shmch::off::kRingS2C + shmch::off::kPoolWaiting,
    shmch::off::kRingC2S + shmch::off::kReleaseHead, shmch::off::kRingC2S + shmch::off::kReleaseTail,
    shmch::off::kRingC2S + shmch::off::kPoolWaiting,
};
const uint32_t kNasty[] = {0,          1,          7,          8,          15,         16,
                           17,         kCapacity - 16, kCapacity - 8, kCapacity, kCapacity + 8, kPool - kBlock,
                           kPool,      kPool + kBlock, 2 * kBlock, 0x7fffffff, 0x80000000, 0xfffff000,
                           0xfffffff8, 0xffffffff};

uint32_t nasty(std::mt19937_64& rng) { return kNasty[rng() % (sizeof kNasty / sizeof kNasty[0])]; }

// A descriptor field: often a plausible block count, else nasty, else anything.
uint32_t descriptor_field(std::mt19937_64& rng, bool blocks) {
  switch (rng() % 4) {
    case 0: return blocks ? static_cast<uint32_t>(rng() % 8) * kBlock : static_cast<uint32_t>(rng() % (2 * kBlock));
    case 1: return static_cast<uint32_t>(rng() % 8) * kBlock + static_cast<uint32_t>(rng() % 3) * 8;
    case 2: return nasty(rng);
    default: return static_cast<uint32_t>(rng());
  }
}

// A LOANED frame (or one with another flags byte) with a random descriptor, at the ring's head
// (published, as a hostile writer would) or over the frame at its tail (the next one read).
void forge_loaned_frame(uint8_t* seg, std::mt19937_64& rng) {
  bool s2c = rng() % 2 == 0;
  size_t control = s2c ? shmch::off::kRingS2C : shmch::off::kRingC2S;
  uint8_t* ring = seg + (s2c ? g_layout.ring_s2c : g_layout.ring_c2s);
  uint32_t* head = shmch::word32(seg, control + shmch::off::kHead);
  uint32_t at = rng() % 2 == 0 ? *head : *shmch::word32(seg, control + shmch::off::kTail);
  static const uint8_t kinds[] = {SHMCH_NOTIFY, SHMCH_REQUEST, SHMCH_RESPONSE, SHMCH_NOTIFY, SHMCH_COMPLETE};
  uint8_t frame[32] = {0};
  uint32_t length = rng() % 8 == 0 ? nasty(rng) : 16;
  uint32_t total = rng() % 2 == 0 ? static_cast<uint32_t>(rng() % (2 * kBlock)) : descriptor_field(rng, false);
  uint32_t id = static_cast<uint32_t>(rng());
  std::memcpy(frame, &length, 4);
  frame[4] = kinds[rng() % sizeof kinds];
  frame[5] = rng() % 8 == 0 ? static_cast<uint8_t>(rng()) : SHMCH_FLAG_LOANED;
  std::memcpy(frame + 8, &id, 4);
  std::memcpy(frame + 12, &total, 4);
  shmch_descriptor d{descriptor_field(rng, true), descriptor_field(rng, true), static_cast<uint32_t>(rng() % 4),
                     descriptor_field(rng, false)};
  if (rng() % 4 == 0) d.extent = d.start + total;  // sometimes exactly valid but for alignment
  std::memcpy(frame + 16, &d, sizeof d);
  for (uint32_t i = 0; i < sizeof frame; i++) ring[(at + i) & (kCapacity - 1)] = frame[i];
  if (at == *head && rng() % 4 != 0) *head += sizeof frame;
}

// A release entry in a random slot of a release ring, and sometimes a release_head moved over it.
void forge_release(uint8_t* seg, std::mt19937_64& rng) {
  bool s2c = rng() % 2 == 0;
  uint32_t slots = shmch::pool_release_slots(g_pool);
  uint8_t* releases = seg + (s2c ? g_layout.releases_s2c : g_layout.releases_c2s);
  uint32_t* head = shmch::word32(seg, (s2c ? shmch::off::kRingS2C : shmch::off::kRingC2S) + shmch::off::kReleaseHead);
  uint32_t slot = rng() % 2 == 0 ? *head : static_cast<uint32_t>(rng());
  uint32_t entry[2] = {descriptor_field(rng, true), rng() % 2 == 0 ? static_cast<uint32_t>(rng() % 8) : nasty(rng)};
  std::memcpy(releases + size_t(slot & (slots - 1)) * 8, entry, sizeof entry);
  if (rng() % 2 == 0) *head += rng() % 4 == 0 ? static_cast<uint32_t>(rng() % 3) - 1 : 1;
}

void mutate(uint8_t* seg, std::mt19937_64& rng) {
  int kind = static_cast<int>(rng() % (g_pool == 0 ? 4 : 6));
  g_mutations++;
  if (kind == 0) {  // random byte anywhere: most of the time before the pools, which are mostly payload
    size_t end = rng() % 4 == 0 ? g_segment_size : g_layout.pool_s2c;
    seg[rng() % end] = static_cast<uint8_t>(rng());
  } else if (kind == 1) {  // nasty 32-bit value into a control field
    size_t at = kTargets[rng() % (sizeof kTargets / sizeof kTargets[0])];
    uint32_t v = kNasty[rng() % (sizeof kNasty / sizeof kNasty[0])];
    std::memcpy(seg + at, &v, 4);
  } else if (kind == 2) {  // nasty value into a frame header field somewhere in a ring
    size_t ring = g_layout.ring_s2c + (rng() % 2) * kCapacity;
    size_t at = ring + (rng() % (kCapacity / 8)) * 8 + (rng() % 4) * 4;
    uint32_t v = kNasty[rng() % (sizeof kNasty / sizeof kNasty[0])];
    std::memcpy(seg + at, &v, 4);
  } else if (kind == 3) {  // torn frame: move a head forward or back by a small, unaligned amount
    size_t at = (rng() % 2 ? shmch::off::kRingS2C : shmch::off::kRingC2S) + shmch::off::kHead;
    uint32_t v;
    std::memcpy(&v, seg + at, 4);
    v += static_cast<uint32_t>(static_cast<int>(rng() % 64) - 32);
    std::memcpy(seg + at, &v, 4);
  } else if (kind == 4) {
    forge_loaned_frame(seg, rng);
  } else {
    forge_release(seg, rng);
  }
}

// A batch of whole one-frame messages for shmch_write_frames, sometimes with one byte of it
// spoiled: the call must take a whole-frame prefix or refuse the batch, never more.
void write_batch(shmch_channel* ch, std::mt19937_64& rng, const uint8_t* payload, size_t payload_size) {
  std::vector<uint8_t> batch;
  int frames = 1 + static_cast<int>(rng() % 12);
  for (int i = 0; i < frames; i++) {
    uint32_t len = static_cast<uint32_t>(rng() % (payload_size / 2));
    uint32_t header[4] = {len, static_cast<uint32_t>(1 + rng() % 8), static_cast<uint32_t>(rng()), len};
    size_t at = batch.size();
    batch.resize(at + SHMCH_FRAME_HEADER_SIZE + ((len + 7) & ~7u), 0);
    std::memcpy(batch.data() + at, header, sizeof header);
    std::memcpy(batch.data() + at + SHMCH_FRAME_HEADER_SIZE, payload, len);
  }
  bool spoiled = rng() % 4 == 0;
  if (spoiled) batch[rng() % batch.size()] = static_cast<uint8_t>(rng());
  size_t length = rng() % 8 == 0 ? rng() % (batch.size() + 1) : batch.size();  // maybe cut short
  size_t consumed = 0;
  shmch_status s = shmch_write_frames(ch, batch.data(), length, &consumed);
  if (consumed > length || (s != SHMCH_OK && consumed != 0)) {
    std::fprintf(stderr, "fuzz_segment: write_frames took %zu of %zu bytes (status %d)\n", consumed, length, s);
    std::abort();
  }
  if (s == SHMCH_E_INVALID_ARG && !spoiled && length == batch.size()) {
    std::fprintf(stderr, "fuzz_segment: write_frames refused a valid batch\n");
    std::abort();
  }
}

// A loan of a side's own pool that it handed out and has not seen come back: not sent yet, or
// sent and not released by the peer (the generation is the one its descriptor carried).
struct Loan {
  uint32_t extent;
  uint32_t generation;  // 0 while unsent
};

// One end of the channel and what its reader still lacks of the message in progress.
struct Side {
  shmch_channel* ch = nullptr;
  bool server = false;
  uint32_t remaining = 0;
  // The fragmented message this side is writing: continued on its next turns until sent.
  uint8_t kind = 0;
  uint32_t id = 0;
  uint32_t total = 0;
  uint32_t sent = 0;
  // Its pool: what it lent and may not be lent again yet. Of the peer's: what it holds.
  std::map<uint32_t, Loan> outstanding;
  std::map<uint32_t, Loan> held;  // of the peer's pool: offset -> extent and generation
  Side* peer = nullptr;
};

// The attacker's mapping of the segment, and whether pages of it are gone (then a byte written
// through it no longer shows through the channels' mappings).
uint8_t* g_seg = nullptr;
bool g_shrunk = false;
bool g_run_forged = false;
volatile uint32_t g_sink = 0;  // what the borrowed bytes summed to, so that they are read  // this run's mutations forged a release the owner took

uint8_t* own_pool(const Side& side) { return g_seg + (side.server ? g_layout.pool_s2c : g_layout.pool_c2s); }
uint8_t* peer_pool(const Side& side) { return g_seg + (side.server ? g_layout.pool_c2s : g_layout.pool_s2c); }

// `p` (a channel's mapping) is `at` (the attacker's, at another address) if a byte written
// through the one shows through the other: a pointer into the wrong pool, or out of the
// segment, fails this (or faults).
void check_same_place(const volatile uint8_t* p, uint8_t* at, const char* what) {
  if (g_shrunk) return;
  uint8_t old = *at;
  for (uint8_t v : {uint8_t(0x5a), uint8_t(0xa5)}) {
    __atomic_store_n(at, v, __ATOMIC_SEQ_CST);
    if (*p != v) violated(what);
  }
  *at = old;
}

// A failed channel stays failed: every later read, loan and release says so (or that the
// segment shrank, which takes precedence).
void check_sticky(Side& side) {
  size_t ignored = 0;
  uint8_t buf[64];
  shmch_status r = shmch_read(side.ch, buf, sizeof buf, &ignored);
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  shmch_status l = g_pool == 0 ? SHMCH_E_PROTOCOL : shmch_loan(side.ch, 1, &data, &offset, &extent);
  shmch_status w = shmch_write(side.ch, SHMCH_NOTIFY, 0, 0, nullptr, 0);
  for (shmch_status s : {r, l, w}) {
    if (s != SHMCH_E_PROTOCOL && s != SHMCH_E_TRUNCATED) violated("protocol failure was not sticky");
  }
}

// The owner's side of a release ring holds (offset, generation) in some slot: a mutation may have
// written exactly what the honest reader would, which no check can tell from a real release.
bool release_ring_names(const Side& owner, uint32_t offset, uint32_t generation) {
  const uint8_t* releases = g_seg + (owner.server ? g_layout.releases_s2c : g_layout.releases_c2s);
  for (uint32_t i = 0; i < shmch::pool_release_slots(g_pool); i++) {
    uint32_t entry[2];
    std::memcpy(entry, releases + size_t(i) * 8, sizeof entry);
    if (entry[0] == offset && entry[1] == generation) return true;
  }
  return false;
}

// A loan just handed out: in the pool, where the pointer says, over nothing still lent.
void check_new_loan(Side& side, uint32_t size, const uint8_t* data, uint32_t offset, uint32_t extent) {
  if (offset % kBlock != 0 || extent == 0 || extent % kBlock != 0 || extent < size || offset > g_pool ||
      extent > g_pool - offset) {
    violated("a loan outside the pool or not in whole blocks");
  }
  check_same_place(data, own_pool(side) + offset, "a loan's first byte is not where its offset says");
  check_same_place(data + extent - 1, own_pool(side) + offset + extent - 1, "a loan's last byte is not in place");
  for (auto it = side.outstanding.begin(); it != side.outstanding.end();) {
    bool overlaps = it->first < offset + extent && offset < it->first + it->second.extent;
    if (!overlaps) {
      ++it;
      continue;
    }
    // A loan sent and released by a forged entry is free to the owner: it cannot know.
    if (it->second.generation != 0 && release_ring_names(side, it->first, it->second.generation)) {
      g_forged++;
      g_run_forged = true;
      side.peer->held.erase(it->first);
      it = side.outstanding.erase(it);
      continue;
    }
    violated("shmch_loan handed out a range still lent");
  }
  side.outstanding.emplace(offset, Loan{extent, 0});
}

// The descriptor this side's write_loan just put in its ring (the frame before the head).
shmch_descriptor last_descriptor(const Side& side) {
  size_t control = side.server ? shmch::off::kRingS2C : shmch::off::kRingC2S;
  const uint8_t* ring = g_seg + (side.server ? g_layout.ring_s2c : g_layout.ring_c2s);
  uint32_t head = __atomic_load_n(shmch::word32(g_seg, control + shmch::off::kHead), __ATOMIC_ACQUIRE);
  uint8_t bytes[sizeof(shmch_descriptor)];
  for (uint32_t i = 0; i < sizeof bytes; i++) bytes[i] = ring[(head - sizeof bytes + i) & (kCapacity - 1)];
  shmch_descriptor d;
  std::memcpy(&d, bytes, sizeof d);
  return d;
}

// Loans, fills, sends, unloans; and the refusals write_loan owes a bad range or kind.
void exercise_loans(Side& side, std::mt19937_64& rng) {
  if (g_pool == 0) return;
  for (int i = static_cast<int>(rng() % 3); i > 0; i--) {
    uint32_t size = rng() % 16 == 0 ? g_pool + 1 + static_cast<uint32_t>(rng() % kBlock)
                                    : static_cast<uint32_t>(rng() % (rng() % 4 == 0 ? g_pool : kBlock + 1));
    uint8_t* data = nullptr;
    uint32_t offset = 0, extent = 0;
    shmch_status s = shmch_loan(side.ch, size, &data, &offset, &extent);
    if (s == SHMCH_OK) {
      g_loans++;
      check_new_loan(side, size, data, offset, extent);
      std::memset(data, static_cast<int>(offset / kBlock), extent);  // writes all of it: ASan / a fault
    } else if ((data != nullptr || offset != 0 || extent != 0)) {
      violated("a refused loan left its out-values set");
    } else if (s == SHMCH_E_INVALID_SIZE && size <= g_pool) {
      violated("a loan that fits the pool was refused as never possible");
    } else if (s == SHMCH_E_PROTOCOL) {
      g_loan_protocol++;
      check_sticky(side);
      return;
    }
  }
  std::vector<uint32_t> unsent;
  for (const auto& l : side.outstanding) {
    if (l.second.generation == 0) unsent.push_back(l.first);
  }
  if (unsent.empty()) return;
  uint32_t offset = unsent[rng() % unsent.size()];
  uint32_t extent = side.outstanding[offset].extent;
  if (rng() % 5 == 0) {
    if (shmch_unloan(side.ch, offset) != SHMCH_OK) violated("unloan refused a loan held unsent");
    side.outstanding.erase(offset);
    if (shmch_unloan(side.ch, offset) != SHMCH_E_INVALID_ARG) violated("unloan took a loan twice");
    return;
  }
  // Out of range or of a kind never lent: refused, nothing sent, the loan still ours.
  uint32_t bad_start = rng() % 2 == 0 ? extent + 1 + static_cast<uint32_t>(rng() % 64) : static_cast<uint32_t>(rng() % extent);
  uint32_t bad_length = extent - bad_start + 1 + static_cast<uint32_t>(rng() % 64);
  if (bad_start > extent) bad_length = static_cast<uint32_t>(rng() % 8);
  shmch_status bad = shmch_write_loan(side.ch, SHMCH_NOTIFY, 0, offset, bad_start, bad_length);
  shmch_status bad_kind = shmch_write_loan(side.ch, rng() % 2 ? SHMCH_HELLO : SHMCH_COMPLETE, 0, offset, 0, 1);
  shmch_status bad_offset = shmch_write_loan(side.ch, SHMCH_NOTIFY, 0, offset + 8, 0, 1);
  for (shmch_status s : {bad, bad_kind, bad_offset}) {
    if (s == SHMCH_OK) violated("write_loan sent a range outside its loan, or a kind never lent");
  }
  // A loan in the middle of this side's own fragmented message is a protocol error for the
  // reader: only sometimes.
  if (side.sent < side.total && rng() % 4 != 0) return;
  static const uint8_t kinds[] = {SHMCH_NOTIFY, SHMCH_REQUEST, SHMCH_RESPONSE};
  uint32_t start = rng() % 2 == 0 ? 0 : static_cast<uint32_t>(rng() % (extent + 1));
  uint32_t length = std::min<uint32_t>(static_cast<uint32_t>(rng() % (extent - start + 1)), kMaxMessage);
  shmch_status s = shmch_write_loan(side.ch, kinds[rng() % 3], static_cast<uint32_t>(rng()), offset, start, length);
  if (s == SHMCH_OK) {
    shmch_descriptor d = last_descriptor(side);
    if (!g_shrunk && (d.offset != offset || d.extent != extent || d.start != start || d.generation == 0)) {
      violated("write_loan sent another descriptor than its loan's");
    }
    side.outstanding[offset].generation = d.generation;
    g_loans_sent++;
  }
}

// Every LOANED frame a read returned: valid by the rules of PROTOCOL §6.2 checked here once
// more, over nothing this side holds, and shmch_borrowed's pointer and extent in the peer's pool.
void accept_borrowed(Side& side, const uint8_t* frame) {
  uint32_t length, total;
  std::memcpy(&length, frame, 4);
  std::memcpy(&total, frame + 12, 4);
  uint8_t kind = frame[4];
  shmch_descriptor d;
  std::memcpy(&d, frame + SHMCH_FRAME_HEADER_SIZE, sizeof d);
  if (g_pool == 0 || length != sizeof d || (kind != SHMCH_NOTIFY && kind != SHMCH_REQUEST && kind != SHMCH_RESPONSE) ||
      d.offset % kBlock != 0 || d.extent == 0 || d.extent % kBlock != 0 || d.offset > g_pool ||
      d.extent > g_pool - d.offset || d.start > d.extent || total > d.extent - d.start || total > kMaxMessage) {
    violated("a read returned a LOANED frame that breaks PROTOCOL 6.2");
  }
  auto next = side.held.lower_bound(d.offset);
  if ((next != side.held.end() && next->first < d.offset + d.extent) ||
      (next != side.held.begin() && std::prev(next)->first + std::prev(next)->second.extent > d.offset)) {
    violated("a read returned a LOANED frame over a loan still held");
  }
  side.held.emplace(d.offset, Loan{d.extent, d.generation});
  const uint8_t* data = nullptr;
  uint32_t extent = 0;
  if (shmch_borrowed(side.ch, d.offset, &data, &extent) != SHMCH_OK || extent != d.extent) {
    violated("shmch_borrowed does not give a loan the read accepted");
  }
  check_same_place(data, peer_pool(side) + d.offset, "a borrowed loan's first byte is not in the peer's pool");
  check_same_place(data + extent - 1, peer_pool(side) + d.offset + extent - 1,
                   "a borrowed loan's last byte is not in the peer's pool");
  // Read the message, as a borrower would: a pointer past the mapping faults here.
  uint32_t sum = 0;
  for (uint32_t i = 0; i < total; i++) sum += data[d.start + i];
  g_sink = sum;
  g_borrowed++;
}

// Gives back some of what this side holds; releases of what it does not hold are refused.
void release_some(Side& side, std::mt19937_64& rng) {
  if (g_pool == 0) return;
  uint32_t stranger = descriptor_field(rng, true);
  if (side.held.count(stranger) == 0 && !g_run_forged) {
    shmch_status s = shmch_release(side.ch, stranger);
    if (s != SHMCH_E_INVALID_ARG && s != SHMCH_E_PROTOCOL && s != SHMCH_E_TRUNCATED) {
      violated("a release of a loan not held was taken");
    }
  }
  for (auto it = side.held.begin(); it != side.held.end();) {
    if (rng() % 3 == 0) {
      ++it;
      continue;
    }
    uint32_t offset = it->first;
    uint32_t generation = it->second.generation;
    const uint8_t* data = nullptr;
    uint32_t extent = 0;
    shmch_status s = shmch_release(side.ch, offset);
    if (s == SHMCH_OK) {
      g_released++;
      it = side.held.erase(it);
      // The owner may lend it again from now on.
      auto lent = side.peer->outstanding.find(offset);
      if (lent != side.peer->outstanding.end() && lent->second.generation == generation) {
        side.peer->outstanding.erase(lent);
      }
      if (shmch_borrowed(side.ch, offset, &data, &extent) != SHMCH_E_INVALID_ARG || data != nullptr) {
        violated("a released loan is still borrowed");
      }
      if (shmch_release(side.ch, offset) == SHMCH_OK) violated("a loan was released twice");
    } else if (s == SHMCH_E_PROTOCOL || s == SHMCH_E_TRUNCATED) {
      if (s == SHMCH_E_PROTOCOL) g_loan_protocol++;
      check_sticky(side);
      return;
    } else {
      violated("a release of a held loan was refused");
    }
  }
}

// Follows the messages in what shmch_read returned, as the TypeScript assembler does.
void account_frames(Side& side, const std::vector<uint8_t>& scratch, size_t got) {
  for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
    uint32_t length, total;
    std::memcpy(&length, scratch.data() + at, 4);
    std::memcpy(&total, scratch.data() + at + 12, 4);
    uint8_t flags = scratch[at + 5];
    if (flags == SHMCH_FLAG_LOANED) {
      if (side.remaining != 0) violated("a read returned a LOANED frame inside a message");
      accept_borrowed(side, scratch.data() + at);
    } else if (flags != 0) {
      violated("a read returned a frame with unknown flags");
    } else {
      // An announcement (length 0) starts a message of which nothing was read yet.
      side.remaining = side.remaining == 0 ? total - length : side.remaining - length;
    }
    if (length == 0 && total > 0 && flags == 0 && at + SHMCH_FRAME_HEADER_SIZE != got) {
      std::fprintf(stderr, "fuzz_segment: an announcement was not the last record of its read\n");
      std::abort();
    }
    at += SHMCH_FRAME_HEADER_SIZE + ((static_cast<size_t>(length) + 7) & ~size_t{7});
  }
}

// The rest of a message straight into its buffer: exactly what it lacks, or (sometimes) a wrong
// size, which must be refused without touching the buffer.
void read_continuation(Side& side, std::mt19937_64& rng) {
  bool wrong = side.remaining == 0 || rng() % 4 == 0;
  size_t capacity = wrong ? rng() % 2048 : side.remaining;
  std::vector<uint8_t> message(capacity + 1);
  size_t got = 0;
  shmch_status s = shmch_read_continuation(side.ch, message.data(), capacity, &got);
  if (s == SHMCH_OK && (capacity != side.remaining || got > capacity)) {
    std::fprintf(stderr, "fuzz_segment: read_continuation took a wrong size (%zu of %zu, lacking %u)\n", got,
                 capacity, side.remaining);
    std::abort();
  }
  if (s == SHMCH_OK) side.remaining -= static_cast<uint32_t>(got);
  if (got > 0) g_continued++;
}

// A message in fragments, as the writer sends one larger than a frame: started, or continued
// where the ring was full last time.
void write_fragments(Side& side, std::mt19937_64& rng, const uint8_t* payload, uint32_t payload_size) {
  if (side.sent == side.total) {
    side.total = 1 + static_cast<uint32_t>(rng() % 3000);
    side.kind = static_cast<uint8_t>(1 + rng() % 8);
    side.id = static_cast<uint32_t>(rng());
    side.sent = 0;
  }
  while (side.sent < side.total) {
    uint32_t len = std::min<uint32_t>(side.total - side.sent, 1 + static_cast<uint32_t>(rng() % payload_size));
    if (shmch_write(side.ch, side.kind, side.id, side.total, payload, len) != SHMCH_OK) return;
    side.sent += len;
  }
}

// One side's turn: write a few messages, read what is there, poll the doorbell.
void exercise(Side& side, std::mt19937_64& rng, std::vector<uint8_t>& scratch) {
  shmch_channel* ch = side.ch;
  uint8_t payload[600];
  for (size_t i = 0; i < sizeof payload; i++) payload[i] = static_cast<uint8_t>(rng());
  // Other messages in the middle of a fragmented one are a protocol error: only sometimes.
  bool writing_fragments = side.sent < side.total;
  int writes = writing_fragments && rng() % 8 != 0 ? 0 : static_cast<int>(rng() % 4);
  for (int i = 0; i < writes; i++) {
    uint32_t len = static_cast<uint32_t>(rng() % sizeof payload);
    if (len > 1008) len = 1008;
    shmch_write(ch, static_cast<uint8_t>(1 + rng() % 8), static_cast<uint32_t>(rng()), len, payload, len);
  }
  // An empty frame of a nonempty message is what readers refuse: the writer must refuse it too.
  if (shmch_write(ch, SHMCH_NOTIFY, 0, 1 + static_cast<uint32_t>(rng() % 100), payload, 0) == SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: write took an empty frame of a nonempty message\n");
    std::abort();
  }
  exercise_loans(side, rng);
  if (!writing_fragments && rng() % 2 == 0) write_batch(ch, rng, payload, sizeof payload);
  if (writing_fragments || rng() % 3 == 0) write_fragments(side, rng, payload, sizeof payload);
  if (rng() % 2 == 0) read_continuation(side, rng);
  size_t got = 0;
  // Sometimes announce messages from a random size on, as the binding does from 64 KiB.
  uint32_t large_from = rng() % 2 == 0 ? UINT32_MAX : static_cast<uint32_t>(rng() % 2048);
  shmch_status s = shmch_read_announcing(ch, scratch.data(), scratch.size(), large_from, &got);
  if (s == SHMCH_E_PROTOCOL) {
    // Sticky: a corrupt ring is never read again.
    size_t again = 0;
    if (shmch_read(ch, scratch.data(), scratch.size(), &again) != SHMCH_E_PROTOCOL) {
      std::fprintf(stderr, "fuzz_segment: protocol failure was not sticky\n");
      std::abort();
    }
  } else if (s == SHMCH_OK && got > scratch.size()) {
    std::fprintf(stderr, "fuzz_segment: read reported more than the buffer\n");
    std::abort();
  } else if (s == SHMCH_OK) {
    account_frames(side, scratch, got);
  }
  release_some(side, rng);
  shmch_wait(ch, 0);
  shmch_peer_state(ch);
  shmch_info info;
  shmch_get_info(ch, &info);
}

// What a peer may do that no check of the bytes can stop: cut pages off the shared object.
void shrink(const std::string& name, off_t size) {
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0 || ftruncate(fd, size) != 0) {
    std::fprintf(stderr, "fuzz_segment: cannot shrink the segment\n");
    std::abort();
  }
  close(fd);
  g_truncations++;
}

bool run_one(uint64_t seed, const std::string& name) {
  std::mt19937_64 rng(seed);
  // Three runs in four with loan pools; the others keep the layout of a channel without.
  g_pool = rng() % 4 == 0 ? 0 : kPool;
  g_layout = shmch::segment_layout(kCapacity, g_pool);
  g_segment_size = g_layout.size;
  g_shrunk = false;
  g_run_forged = false;
  shmch_options o{kCapacity, kMaxMessage, 0600, g_pool};
  shmch_channel* server = nullptr;
  shmch_channel* client = nullptr;
  shmch_error err{};
  if (shmch_create(name.c_str(), &o, &server, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: create failed (%s)\n", err.detail ? err.detail : "errno");
    return false;
  }
  if (shmch_attach(name.c_str(), &client, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: attach failed\n");
    shmch_close(server);
    return false;
  }
  // The attacker maps the segment on its own, as a hostile process would.
  shmch::Segment attacker;
  if (attacker.open(name.c_str(), g_segment_size, g_segment_size, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: attacker cannot map the segment\n");
    shmch_close(client);
    shmch_close(server);
    return false;
  }
  uint8_t* seg = attacker.data();
  g_seg = seg;
  std::vector<uint8_t> scratch(kCapacity);
  Side server_side;
  server_side.ch = server;
  server_side.server = true;
  Side client_side;
  client_side.ch = client;
  client_side.server = false;
  server_side.peer = &client_side;
  client_side.peer = &server_side;
  // accept_next: what the client held of the server's pool is the server's again, and what the
  // server held of the client's is forgotten.
  auto after_accept = [&server_side]() {
    server_side.remaining = 0;
    server_side.held.clear();
    for (auto it = server_side.outstanding.begin(); it != server_side.outstanding.end();) {
      it = it->second.generation != 0 ? server_side.outstanding.erase(it) : std::next(it);
    }
  };
  int rounds = 20 + static_cast<int>(rng() % 40);
  // One run in eight, the attacker also shrinks the segment (to nothing, half the time).
  int truncate_at = rng() % 8 == 0 ? static_cast<int>(rng() % rounds) : -1;
  off_t truncate_to = rng() % 2 == 0 ? 0 : static_cast<off_t>(rng() % g_segment_size);
  for (int r = 0; r < rounds; r++) {
    if (r == truncate_at) {
      shrink(name, truncate_to);
      g_shrunk = true;
    }
    int mutations = static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; m++) mutate(seg, rng);
    exercise(server_side, rng, scratch);
    exercise(client_side, rng, scratch);
    if (rng() % 16 == 0) {
      shmch_accept_next(server);
      after_accept();
    } else if (rng() % 32 == 0) {
      // As after a protocol error: the server drops its client, which must see it at once,
      // reads nothing more, and takes the next client.
      bool shrunk = truncate_at >= 0 && r >= truncate_at;  // then the flag may reach no one
      // With the slot free (after accept_next, or a mutation), there is no client to tell.
      uint32_t state_before = __atomic_load_n(reinterpret_cast<uint32_t*>(seg + shmch::off::kState), __ATOMIC_ACQUIRE);
      bool attached = !shrunk && (state_before & SHMCH_STATE_CLIENT_ATTACHED) != 0;
      shmch_status dropped = shmch_drop_client(server);
      size_t ignored = 0;
      shmch_status s = shmch_read(server, scratch.data(), scratch.size(), &ignored);
      if ((!shrunk && dropped != SHMCH_OK) || (attached && shmch_peer_state(client) != SHMCH_PEER_GONE) ||
          (s != SHMCH_E_PROTOCOL && s != SHMCH_E_TRUNCATED)) {
        std::fprintf(stderr, "fuzz_segment: a dropped client was still served or not told\n");
        std::abort();
      }
      shmch_accept_next(server);
      after_accept();
    }
  }
  if (truncate_at >= 0 && truncate_to == 0) {
    // Every page is gone, so a write faults wherever it starts; the guard turns that into
    // SHMCH_E_TRUNCATED, and the channel stays failed.
    for (shmch_channel* ch : {server, client}) {
      for (int i = 0; i < 2; i++) {
        if (shmch_write(ch, SHMCH_NOTIFY, 0, 8, scratch.data(), 8) != SHMCH_E_TRUNCATED) {
          std::fprintf(stderr, "fuzz_segment: a channel on a segment shrunk to nothing did not report it\n");
          std::abort();
        }
      }
    }
  }
  shmch_close(client);
  shmch_close(server);
  // The server unlinks its segment even when its header is gone with the pages.
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd >= 0) {
    std::fprintf(stderr, "fuzz_segment: the server's close left its segment behind\n");
    std::abort();
  }
  return true;
}

// ---- A server of many clients ----

// What a scribbler writes into a directory: random bytes anywhere, nasty values into the
// header's fields and into every slot field, forged claims of a live process (ours) or of a
// dead one, and rings.
void mutate_directory(uint8_t* d, size_t size, uint32_t max_clients, std::mt19937_64& rng) {
  g_dir_mutations++;
  uint32_t slot = static_cast<uint32_t>(rng() % (max_clients + 1));  // sometimes past the last
  uint8_t* at = d + shmch::dir::kSlots + size_t(shmch::kSlotSize) * slot;
  bool in_range = slot < max_clients;
  switch (rng() % 6) {
    case 0:
      d[rng() % size] = static_cast<uint8_t>(rng());
      break;
    case 1: {
      static const size_t header[] = {shmch::dir::kMagic,        shmch::dir::kVersion,       shmch::dir::kHeaderSize,
                                      shmch::dir::kSegmentSize,  shmch::dir::kRingCapacity,  shmch::dir::kMaxMessageSize,
                                      shmch::dir::kServerPid,    shmch::dir::kMaxClients,    shmch::dir::kClaims,
                                      shmch::dir::kState,        shmch::dir::kDoorbell,      shmch::dir::kPoolCapacity,
                                      shmch::dir::kKind};
      uint32_t v = rng() % 2 ? nasty(rng) : static_cast<uint32_t>(rng() % 300);
      __atomic_store_n(shmch::word32(d, header[rng() % (sizeof header / sizeof header[0])]), v, __ATOMIC_RELEASE);
      break;
    }
    case 2:
      if (in_range) {
        size_t field = (rng() % 16) * 4;
        uint32_t v = rng() % 2 ? nasty(rng) : static_cast<uint32_t>(rng() % 6);
        __atomic_store_n(shmch::word32(at, field), v, __ATOMIC_RELEASE);
      }
      break;
    case 3:
      if (in_range) {  // a claim as a live client makes it, or by a pid that is no process
        uint32_t pid = rng() % 2 ? static_cast<uint32_t>(getpid()) : 4194000u + static_cast<uint32_t>(rng() % 100);
        __atomic_store_n(shmch::word32(at, shmch::dir::kOwnerPid), pid, __ATOMIC_RELEASE);
        shmch::write_u64(at, shmch::dir::kOwnerStartTime, rng() % 2 ? 0 : rng());
        __atomic_store_n(shmch::word32(at, shmch::dir::kPhase), static_cast<uint32_t>(rng() % 6), __ATOMIC_RELEASE);
      }
      break;
    case 4:
      __atomic_fetch_add(shmch::word32(d, shmch::dir::kClaims), 1, __ATOMIC_RELEASE);
      __atomic_fetch_add(shmch::word32(d, shmch::dir::kDoorbell), 1, __ATOMIC_RELEASE);
      break;
    default:
      if (in_range) __atomic_fetch_add(shmch::word32(at, shmch::dir::kOpenBell), 1, __ATOMIC_RELEASE);
      break;
  }
}

struct ServerConnection {
  shmch_channel* ch;
  uint32_t id;
};

bool run_directory(uint64_t seed, const std::string& name) {
  std::mt19937_64 rng(seed);
  g_directory_runs++;
  // The connections have a channel's layout: mutate() hits them as it hits a channel.
  g_pool = rng() % 2 == 0 ? 0 : kPool;
  g_layout = shmch::segment_layout(kCapacity, g_pool);
  g_segment_size = g_layout.size;
  uint32_t max_clients = 1 + static_cast<uint32_t>(rng() % 4);
  shmch_options o{kCapacity, kMaxMessage, 0600, g_pool};
  shmch_server* srv = nullptr;
  shmch_error err{};
  if (shmch_server_create(name.c_str(), &o, max_clients, &srv, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: server create failed (%s)\n", err.detail ? err.detail : "errno");
    return false;
  }
  size_t dir_size = shmch::directory_size(max_clients);
  shmch::Segment attacker;
  if (attacker.open(name.c_str(), dir_size, dir_size, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: attacker cannot map the directory\n");
    shmch_server_close(srv);
    return false;
  }
  std::vector<shmch_connect_attempt*> attempts;
  std::vector<shmch_channel*> clients;
  std::vector<ServerConnection> conns;
  std::map<uint32_t, bool> ids_seen;
  std::vector<uint8_t> scratch(kCapacity);
  uint8_t payload[64] = {1, 2, 3};
  bool shrunk = false;
  auto drop_conn = [&](size_t i) {
    shmch_server_disconnect(srv, conns[i].ch);
    conns.erase(conns.begin() + static_cast<long>(i));
  };
  int rounds = 20 + static_cast<int>(rng() % 40);
  int shrink_at = rng() % 16 == 0 ? static_cast<int>(rng() % rounds) : -1;
  for (int r = 0; r < rounds; r++) {
    if (r == shrink_at) {
      shrink(name, rng() % 2 ? 0 : static_cast<off_t>(rng() % dir_size));
      shrunk = true;
    }
    // Rarely enough that clients get through between mutations.
    int mutations = rng() % 3 == 0 ? 1 + static_cast<int>(rng() % 2) : 0;
    for (int m = mutations; m > 0 && !shrunk; m--) mutate_directory(attacker.data(), dir_size, max_clients, rng);
    // A connection gets what a channel gets.
    if (!conns.empty() && rng() % 3 == 0) {
      shmch_info info;
      shmch_get_info(conns[rng() % conns.size()].ch, &info);
      char cname[256];
      shmch::Segment c;
      for (uint32_t slot = 0; slot < max_clients; slot++) {
        if (!shmch::connection_name(name.c_str(), slot, cname, sizeof cname)) break;
        if (rng() % 2 && c.open(cname, g_segment_size, g_segment_size, nullptr) == SHMCH_OK) {
          for (int m = 1 + static_cast<int>(rng() % 3); m > 0; m--) mutate(c.data(), rng);
          break;
        }
      }
    }
    // Clients: connect, finish, cancel, talk, leave.
    switch (rng() % 6) {
      case 0:
      case 5: {
        shmch_connect_attempt* a = nullptr;
        if (shmch_connect(name.c_str(), &a, nullptr) == SHMCH_OK) attempts.push_back(a);
        break;
      }
      case 1:
        if (!attempts.empty()) {
          size_t i = rng() % attempts.size();
          shmch_channel* ch = nullptr;
          shmch_status s = shmch_connect_finish(attempts[i], 0, &ch, nullptr);
          if (s == SHMCH_OK) {
            if (ch == nullptr) violated("connect_finish said OK without a channel");
            clients.push_back(ch);
            g_finished++;
            shmch_write(ch, SHMCH_HELLO, 0, 0, nullptr, 0);
          } else if (ch != nullptr) {
            violated("connect_finish failed with a channel");
          }
          if (s != SHMCH_E_NOT_READY) {
            shmch_connect_cancel(attempts[i]);
            attempts.erase(attempts.begin() + static_cast<long>(i));
          }
        }
        break;
      case 2:
        if (!attempts.empty()) {
          size_t i = rng() % attempts.size();
          shmch_connect_cancel(attempts[i]);
          attempts.erase(attempts.begin() + static_cast<long>(i));
        }
        break;
      case 3:
        for (shmch_channel* ch : clients) {
          uint32_t len = static_cast<uint32_t>(rng() % sizeof payload);
          shmch_write(ch, SHMCH_NOTIFY, 0, len, payload, len);
          size_t got = 0;
          shmch_read(ch, scratch.data(), scratch.size(), &got);
          shmch_wait(ch, 0);
          shmch_peer_state(ch);
        }
        break;
      case 4:
        if (!clients.empty()) {
          size_t i = rng() % clients.size();
          shmch_close(clients[i]);
          clients.erase(clients.begin() + static_cast<long>(i));
        }
        break;
    }
    // The server: one look, then what it asks for.
    shmch_server_wait(srv, 0);
    for (int k = 0; k < 4; k++) {
      shmch_channel* ch = nullptr;
      uint32_t id = 0, pid = 0;
      shmch_status s = shmch_server_accept(srv, &ch, &id, &pid, nullptr);
      if (s == SHMCH_E_NOT_FOUND) break;
      if (s != SHMCH_OK) continue;
      if (ch == nullptr || id == 0 || ids_seen.count(id) != 0) violated("accept gave no channel or a used id");
      ids_seen[id] = true;
      conns.push_back(ServerConnection{ch, id});
      g_accepted++;
    }
    if (shmch_server_connections(srv) != conns.size()) violated("server_connections is not what accept handed out");
    for (size_t i = 0; i < conns.size();) {
      size_t got = 0;
      shmch_status s = shmch_read(conns[i].ch, scratch.data(), scratch.size(), &got);
      if (s == SHMCH_OK && rng() % 2) shmch_write(conns[i].ch, SHMCH_NOTIFY, 0, 3, payload, 3);
      shmch_peer_state(conns[i].ch);
      if (s == SHMCH_E_PROTOCOL || s == SHMCH_E_TRUNCATED || rng() % 16 == 0) {
        if (s == SHMCH_E_PROTOCOL) shmch_drop_client(conns[i].ch);
        drop_conn(i);
        continue;
      }
      i++;
    }
    uint32_t left[SHMCH_MAX_CLIENTS];
    size_t n = shmch_server_left(srv, left, rng() % 2 ? 1 : SHMCH_MAX_CLIENTS);
    for (size_t k = 0; k < n; k++) {
      for (size_t i = 0; i < conns.size(); i++) {
        if (conns[i].id == left[k]) {
          drop_conn(i);
          break;
        }
      }
    }
  }
  for (shmch_connect_attempt* a : attempts) shmch_connect_cancel(a);
  for (shmch_channel* ch : clients) shmch_close(ch);
  attacker.unmap();
  shmch_server_close(srv);
  // Whatever was scribbled, the server leaves nothing behind: not its directory, no connection.
  char cname[256];
  for (uint32_t slot = 0; slot <= max_clients; slot++) {
    shmch::connection_name(name.c_str(), slot, cname, sizeof cname);
    int fd = shm_open(cname, O_RDONLY, 0);
    if (fd >= 0) {
      std::fprintf(stderr, "fuzz_segment: the server's close left connection %s behind\n", cname);
      std::abort();
    }
  }
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd >= 0 && !shrunk) {
    std::fprintf(stderr, "fuzz_segment: the server's close left its directory behind\n");
    std::abort();
  }
  if (fd >= 0) close(fd);
  shmch_unlink(name.c_str(), nullptr);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long iterations = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 2000;
  std::vector<uint64_t> seeds;
  if (argc > 2) {
    std::ifstream corpus(argv[2]);
    std::string line;
    while (std::getline(corpus, line)) {
      if (!line.empty() && line[0] != '#') seeds.push_back(std::strtoull(line.c_str(), nullptr, 0));
    }
  }
  size_t corpus_size = seeds.size();
  // FUZZ_BASE_SEED replays a random series: run i used seed base + i.
  std::random_device rd;
  const char* fixed = std::getenv("FUZZ_BASE_SEED");
  uint64_t base = fixed ? std::strtoull(fixed, nullptr, 0) : (static_cast<uint64_t>(rd()) << 32) ^ rd();
  std::printf("fuzz_segment: base seed 0x%llx (FUZZ_BASE_SEED replays it)\n", static_cast<unsigned long long>(base));
  std::fflush(stdout);
  for (unsigned long i = seeds.size(); i < iterations; i++) seeds.push_back(base + i);
  std::string name = "/shmch-fuzz-" + std::to_string(getpid());
  signal(SIGALRM, on_alarm);
  if (shmch_guard_truncation() != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: cannot install the truncation guard\n");
    return 2;
  }
  for (size_t i = 0; i < seeds.size(); i++) {
    alarm(10);
    if (!run_one(seeds[i], name)) {
      shmch_unlink(name.c_str(), nullptr);
      return 2;
    }
    // The same seed, turned: a server of many clients every other run.
    if (i % 2 == 0) {
      alarm(10);
      if (!run_directory(seeds[i] ^ 0x9e3779b97f4a7c15ull, name)) {
        shmch_unlink(name.c_str(), nullptr);
        return 2;
      }
    }
  }
  alarm(0);
  shmch_unlink(name.c_str(), nullptr);
  std::printf("fuzz_segment: %zu runs (%zu from the seed corpus, random base seed 0x%llx), %llu mutations, "
              "%llu continuation reads, %llu truncations; loans: %llu lent, %llu sent, %llu borrowed, %llu released, "
              "%llu refused as a protocol error, %llu releases forged exactly; servers of many: %llu runs, %llu directory "
              "mutations, %llu connections made, %llu attempts finished; no crash, no hang, no invariant broken\n",
              seeds.size(), corpus_size, static_cast<unsigned long long>(base), g_mutations, g_continued,
              g_truncations, g_loans, g_loans_sent, g_borrowed, g_released, g_loan_protocol, g_forged, g_directory_runs,
              g_dir_mutations, g_accepted, g_finished);
  return 0;
}
