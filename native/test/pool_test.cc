// The loan pools of PROTOCOL.md §6 through the C API: the owner's allocator (loan until FULL,
// reclaim in any release order, coalescing, unloan), the checks on both sides (a release the
// owner never lent, twice, or of another generation; a descriptor out of the pool or over a
// loan held), shmch_write_loan's refusals, and the header (pool capacity, version, kind).
// A server and a client channel in this process share one real segment; where a hostile peer
// is needed, the test writes into the segment itself, as one would. Usage: pool_test
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../core/layout.h"
#include "../core/pool.h"
#include "../core/segment.h"
#include "../core/shmchannel.h"

namespace {

constexpr uint32_t kRing = 4096;
constexpr uint32_t kBlock = SHMCH_POOL_BLOCK_SIZE;
constexpr uint32_t kPoolBlocks = 8;
constexpr uint32_t kPool = kPoolBlocks * kBlock;
constexpr unsigned kCaseLimitS = 20;

int g_case = 0;
std::string g_name;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("     %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
      return false;                                                          \
    }                                                                        \
  } while (0)

#define CHECK_STATUS(expr, expected)                                                             \
  do {                                                                                           \
    shmch_status got_ = (expr);                                                                  \
    if (got_ != (expected)) {                                                                    \
      std::printf("     %s:%d: %s is %s, not %s\n", __FILE__, __LINE__, #expr,                   \
                  shmch_status_string(got_), shmch_status_string(expected));                     \
      return false;                                                                              \
    }                                                                                            \
  } while (0)

std::string next_name() {
  return "/shmch-pool-test-" + std::to_string(getpid()) + "-" + std::to_string(++g_case);
}

// A server with a pool, its client, and the segment as a third process would map it. Closing
// the server unlinks the segment, so every case leaves /dev/shm clean, a failed one too.
struct Pair {
  shmch_channel* server = nullptr;
  shmch_channel* client = nullptr;
  shmch::Segment raw;
  shmch::SegmentLayout layout{};

  bool open(uint32_t pool = kPool, uint32_t max_message = 64 * 1024) {
    g_name = next_name();
    shmch_options o{kRing, max_message, 0600, pool};
    shmch_error err{};
    if (shmch_create(g_name.c_str(), &o, &server, &err) != SHMCH_OK) return false;
    if (shmch_attach(g_name.c_str(), &client, &err) != SHMCH_OK) return false;
    layout = shmch::segment_layout(kRing, pool);
    // No HELLO: the core does not look at frame kinds, and the server's inbound ring stays
    // empty, so that its waits report loans alone.
    return raw.open(g_name.c_str(), layout.size, layout.size, &err) == SHMCH_OK;
  }
  ~Pair() {
    shmch_close(client);
    shmch_close(server);
  }
  uint8_t* seg() { return raw.data(); }
  uint8_t* pool_s2c() { return seg() + layout.pool_s2c; }
  uint32_t* word(size_t at) { return reinterpret_cast<uint32_t*>(seg() + at); }
};

// The LOANED frames that one read brings, in order (other frames skipped).
struct Received {
  uint8_t kind;
  uint32_t id;
  uint32_t total;
  shmch_descriptor d;
};

shmch_status read_loans(shmch_channel* ch, std::vector<Received>* out) {
  std::vector<uint8_t> buf(kRing);
  size_t got = 0;
  shmch_status s = shmch_read(ch, buf.data(), buf.size(), &got);
  if (s != SHMCH_OK) return s;
  for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
    uint32_t length, id, total;
    std::memcpy(&length, &buf[at], 4);
    std::memcpy(&id, &buf[at + 8], 4);
    std::memcpy(&total, &buf[at + 12], 4);
    if (buf[at + 5] == SHMCH_FLAG_LOANED) {
      Received r{buf[at + 4], id, total, {}};
      std::memcpy(&r.d, &buf[at + SHMCH_FRAME_HEADER_SIZE], sizeof r.d);
      out->push_back(r);
    }
    at += SHMCH_FRAME_HEADER_SIZE + ((length + 7) & ~7u);
  }
  return SHMCH_OK;
}

// Loans `size`, fills it with `fill`, sends it as a NOTIFY; returns the loan's offset.
bool loan_and_send(Pair& p, uint32_t size, uint8_t fill, uint32_t* offset) {
  uint8_t* data = nullptr;
  uint32_t extent = 0;
  if (shmch_loan(p.server, size, &data, offset, &extent) != SHMCH_OK) return false;
  std::memset(data, fill, size);
  return shmch_write_loan(p.server, SHMCH_NOTIFY, 0, *offset, 0, size) == SHMCH_OK;
}

// A frame written straight into the server-to-client ring at its head, as a hostile server would.
void inject_s2c(Pair& p, uint8_t kind, uint8_t flags, uint32_t total, const void* payload, uint32_t length) {
  uint32_t* head = p.word(shmch::off::kRingS2C + shmch::off::kHead);
  uint32_t h = __atomic_load_n(head, __ATOMIC_ACQUIRE);
  uint8_t header[SHMCH_FRAME_HEADER_SIZE] = {0};
  std::memcpy(header, &length, 4);
  header[4] = kind;
  header[5] = flags;
  std::memcpy(header + 12, &total, 4);
  uint8_t* ring = p.seg() + p.layout.ring_s2c;
  uint32_t at = h & (kRing - 1);  // the cases below never wrap
  std::memcpy(ring + at, header, sizeof header);
  std::memcpy(ring + at + SHMCH_FRAME_HEADER_SIZE, payload, length);
  __atomic_store_n(head, h + SHMCH_FRAME_HEADER_SIZE + ((length + 7) & ~7u), __ATOMIC_RELEASE);
}

// A release entry written straight into the client-side release ring of the s2c pool.
void inject_release(Pair& p, uint32_t offset, uint32_t generation) {
  uint32_t* head = p.word(shmch::off::kRingS2C + shmch::off::kReleaseHead);
  uint32_t h = __atomic_load_n(head, __ATOMIC_ACQUIRE);
  uint32_t slots = shmch::pool_release_slots(kPool);
  uint32_t entry[2] = {offset, generation};
  std::memcpy(p.seg() + p.layout.releases_s2c + (h & (slots - 1)) * 8, entry, sizeof entry);
  __atomic_store_n(head, h + 1, __ATOMIC_RELEASE);
}

// Two mappings of one segment sit at different addresses: `data` (a channel's) is at `at` (ours)
// if a byte written through ours shows through it.
bool same_place(const uint8_t* data, uint8_t* at) {
  uint8_t old = *at;
  bool same = true;
  for (uint8_t v : {uint8_t(0x5a), uint8_t(0xa5)}) {
    __atomic_store_n(at, v, __ATOMIC_SEQ_CST);
    same = same && __atomic_load_n(data, __ATOMIC_SEQ_CST) == v;
  }
  *at = old;
  return same;
}

bool ranges_overlap(uint32_t a, uint32_t a_extent, uint32_t b, uint32_t b_extent) {
  return a < b + b_extent && b < a + a_extent;
}

// ---- cases ----

bool loans_until_full_never_overlap() {
  Pair p;
  CHECK(p.open());
  std::vector<std::pair<uint32_t, uint32_t>> held;
  const uint32_t sizes[] = {1, kBlock, kBlock + 1, 0, 2 * kBlock};  // 1 + 1 + 2 + 1 + 2 = 7 blocks
  for (uint32_t size : sizes) {
    uint8_t* data = nullptr;
    uint32_t offset = 0, extent = 0;
    CHECK_STATUS(shmch_loan(p.server, size, &data, &offset, &extent), SHMCH_OK);
    CHECK(extent % kBlock == 0 && extent >= size && extent > 0 && offset % kBlock == 0);
    CHECK(offset + extent <= kPool && same_place(data, p.pool_s2c() + offset));
    for (auto& h : held) CHECK(!ranges_overlap(offset, extent, h.first, h.second));
    held.emplace_back(offset, extent);
  }
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, 2 * kBlock, &data, &offset, &extent), SHMCH_E_FULL);
  CHECK(data == nullptr && offset == 0 && extent == 0);
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &offset, &extent), SHMCH_OK);  // the last block
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &offset, &extent), SHMCH_E_FULL);
  // Never possible: more than the pool, or than a message may be.
  CHECK_STATUS(shmch_loan(p.server, kPool + 1, &data, &offset, &extent), SHMCH_E_INVALID_SIZE);
  CHECK_STATUS(shmch_loan(p.server, 64 * 1024 + 1, &data, &offset, &extent), SHMCH_E_INVALID_SIZE);
  return true;
}

bool no_pool_no_loans() {
  Pair p;
  CHECK(p.open(0));
  shmch_info info;
  shmch_get_info(p.server, &info);
  CHECK(info.pool_capacity == 0);
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &offset, &extent), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_loan(p.client, 1, &data, &offset, &extent), SHMCH_E_INVALID_ARG);
  // And a LOANED frame to a reader without a pool is a protocol error.
  shmch_descriptor d{0, kBlock, 1, 0};
  inject_s2c(p, SHMCH_NOTIFY, SHMCH_FLAG_LOANED, 1, &d, sizeof d);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_E_PROTOCOL);
  return true;
}

bool released_in_any_order_and_coalesced() {
  Pair p;
  CHECK(p.open());
  uint32_t offsets[kPoolBlocks];
  for (uint32_t i = 0; i < kPoolBlocks; i++) CHECK(loan_and_send(p, kBlock, uint8_t(i + 1), &offsets[i]));
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == kPoolBlocks);
  for (uint32_t i = 0; i < kPoolBlocks; i++) {
    CHECK(got[i].d.offset == offsets[i] && got[i].d.extent == kBlock && got[i].d.start == 0);
    CHECK(got[i].total == kBlock && got[i].kind == SHMCH_NOTIFY);
    const uint8_t* data = nullptr;
    uint32_t extent = 0;
    CHECK_STATUS(shmch_borrowed(p.client, got[i].d.offset, &data, &extent), SHMCH_OK);
    // The client's view of the server's pool is the same bytes, at the same place in the segment.
    CHECK(extent == kBlock && data[0] == i + 1 && data[kBlock - 1] == i + 1);
  }
  // Released out of order: middle, ends, then the rest. Every block is lent, so each loan
  // below must first take back what was released (reclaim).
  const uint32_t order[] = {3, 4, 0, 7, 1, 6, 2, 5};
  for (uint32_t i : order) CHECK_STATUS(shmch_release(p.client, offsets[i]), SHMCH_OK);
  // Nothing the client released stays usable to it.
  const uint8_t* data = nullptr;
  uint32_t extent = 0;
  CHECK_STATUS(shmch_borrowed(p.client, offsets[0], &data, &extent), SHMCH_E_INVALID_ARG);
  CHECK(data == nullptr && extent == 0);
  // Coalesced: the whole pool is one loan again.
  uint8_t* whole = nullptr;
  uint32_t offset = 0;
  CHECK_STATUS(shmch_loan(p.server, kPool, &whole, &offset, &extent), SHMCH_OK);
  CHECK(offset == 0 && extent == kPool && same_place(whole, p.pool_s2c()));
  return true;
}

bool a_loan_after_the_peers_release_reclaims_it() {
  Pair p;
  CHECK(p.open());
  uint32_t whole = 0;
  CHECK(loan_and_send(p, kPool, 0xab, &whole));
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &offset, &extent), SHMCH_E_FULL);
  // FULL marked the owner waiting: the release clears the flag and rings, so the owner's wait
  // reports the space.
  CHECK(__atomic_load_n(p.word(shmch::off::kRingS2C + shmch::off::kPoolWaiting), __ATOMIC_ACQUIRE) == 1);
  CHECK(shmch_wait(p.server, 0) == SHMCH_WAIT_TIMEOUT);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 1 && got[0].d.extent == kPool);
  CHECK_STATUS(shmch_release(p.client, got[0].d.offset), SHMCH_OK);
  CHECK(__atomic_load_n(p.word(shmch::off::kRingS2C + shmch::off::kPoolWaiting), __ATOMIC_ACQUIRE) == 0);
  CHECK(shmch_wait(p.server, 1000) == SHMCH_WAIT_WOKEN);
  // The release is still only in the ring: the loan takes it back first.
  CHECK(__atomic_load_n(p.word(shmch::off::kRingS2C + shmch::off::kReleaseTail), __ATOMIC_ACQUIRE) == 0);
  CHECK_STATUS(shmch_loan(p.server, kPool, &data, &offset, &extent), SHMCH_OK);
  CHECK(offset == 0 && extent == kPool);
  CHECK(__atomic_load_n(p.word(shmch::off::kRingS2C + shmch::off::kReleaseTail), __ATOMIC_ACQUIRE) == 1);
  return true;
}

bool unloan_gives_back_only_unsent_loans() {
  Pair p;
  CHECK(p.open());
  uint8_t* data = nullptr;
  uint32_t a = 0, b = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, kPool / 2, &data, &a, &extent), SHMCH_OK);
  CHECK_STATUS(shmch_loan(p.server, kPool / 2, &data, &b, &extent), SHMCH_OK);
  CHECK_STATUS(shmch_unloan(p.server, a), SHMCH_OK);
  CHECK_STATUS(shmch_unloan(p.server, a), SHMCH_E_INVALID_ARG);          // twice
  CHECK_STATUS(shmch_unloan(p.server, b + 1), SHMCH_E_INVALID_ARG);      // not a loan's start
  CHECK_STATUS(shmch_unloan(p.server, b + kBlock), SHMCH_E_INVALID_ARG); // inside a loan
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, b, 0, 8), SHMCH_OK);
  CHECK_STATUS(shmch_unloan(p.server, b), SHMCH_E_INVALID_ARG);          // sent: the peer's now
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, b, 0, 8), SHMCH_E_INVALID_ARG);  // twice
  uint32_t again = 0;
  CHECK_STATUS(shmch_loan(p.server, kPool / 2, &data, &again, &extent), SHMCH_OK);
  CHECK(again == a);
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &again, &extent), SHMCH_E_FULL);
  return true;
}

bool write_loan_refuses_what_is_not_a_loanable_message() {
  Pair p;
  CHECK(p.open(kPool, 3 * kBlock));
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, 2 * kBlock, &data, &offset, &extent), SHMCH_OK);
  CHECK(extent == 2 * kBlock);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset, 0, extent + 1), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset, 1, extent), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset, extent + 1, 0), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset, 0xfffff000u, 0x2000), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset + kBlock, 0, 1), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset + 1, 0, 1), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, kPool, 0, 1), SHMCH_E_INVALID_ARG);
  const uint8_t not_loanable[] = {0, SHMCH_HELLO, SHMCH_BYE, SHMCH_COMPLETE, SHMCH_ERROR, SHMCH_CANCEL, 9, 255};
  for (uint8_t kind : not_loanable) CHECK_STATUS(shmch_write_loan(p.server, kind, 0, offset, 0, 1), SHMCH_E_INVALID_ARG);
  // Over max_message_size even though inside the loan.
  shmch_unloan(p.server, offset);
  CHECK_STATUS(shmch_loan(p.server, 3 * kBlock + 1, &data, &offset, &extent), SHMCH_E_INVALID_SIZE);
  CHECK_STATUS(shmch_loan(p.server, 3 * kBlock, &data, &offset, &extent), SHMCH_OK);
  // Nothing reached the ring; the loan is still ours and goes out whole, at an inner start too.
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_REQUEST, 7, offset, 100, extent - 100), SHMCH_OK);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 1 && got[0].kind == SHMCH_REQUEST && got[0].id == 7 && got[0].total == extent - 100);
  CHECK(got[0].d.start == 100 && got[0].d.extent == extent && got[0].d.offset == offset && got[0].d.generation != 0);
  return true;
}

// A release the owner did not send with that generation: SHMCH_E_PROTOCOL, and it stays failed.
bool owner_refuses(Pair& p, uint32_t first_loan) {
  uint8_t* data = nullptr;
  uint32_t offset = 0, extent = 0;
  // Every block is lent, so this loan must read the release ring.
  CHECK_STATUS(shmch_loan(p.server, kBlock, &data, &offset, &extent), SHMCH_E_PROTOCOL);
  CHECK(data == nullptr);
  CHECK_STATUS(shmch_loan(p.server, kBlock, &data, &offset, &extent), SHMCH_E_PROTOCOL);
  CHECK_STATUS(shmch_write(p.server, SHMCH_NOTIFY, 0, 0, nullptr, 0), SHMCH_E_PROTOCOL);
  size_t got = 0;
  uint8_t buf[64];
  CHECK_STATUS(shmch_read(p.server, buf, sizeof buf, &got), SHMCH_E_PROTOCOL);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, first_loan, 0, 1), SHMCH_E_PROTOCOL);
  return true;
}

bool a_release_of_another_generation_is_a_protocol_error() {
  Pair p;
  CHECK(p.open());
  uint32_t whole = 0;
  CHECK(loan_and_send(p, kPool, 1, &whole));
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 1);
  inject_release(p, got[0].d.offset, got[0].d.generation + 1);
  return owner_refuses(p, whole);
}

bool a_double_release_is_a_protocol_error() {
  Pair p;
  CHECK(p.open());
  uint32_t a = 0, b = 0;
  CHECK(loan_and_send(p, kPool / 2, 1, &a));
  CHECK(loan_and_send(p, kPool / 2, 2, &b));
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 2);
  CHECK_STATUS(shmch_release(p.client, a), SHMCH_OK);
  // The borrower's own API cannot release twice: it no longer holds it.
  CHECK_STATUS(shmch_release(p.client, a), SHMCH_E_INVALID_ARG);
  CHECK_STATUS(shmch_release(p.client, a + kBlock), SHMCH_E_INVALID_ARG);
  // A hostile client writes the same entry again; and a release of a block never sent.
  inject_release(p, got[0].d.offset, got[0].d.generation);
  // The owner takes back the good entry and then refuses the replay in the same reclaim.
  return owner_refuses(p, b);
}

bool a_release_of_what_was_never_lent_is_a_protocol_error() {
  const uint32_t bad[][2] = {{kBlock, 0}, {1, 1}, {kPool, 1}, {0xfffff000u, 1}};
  for (const auto& entry : bad) {
    Pair p;
    CHECK(p.open());
    uint32_t whole = 0;
    CHECK(loan_and_send(p, kPool, 1, &whole));
    std::vector<Received> got;
    CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
    inject_release(p, entry[0], entry[1] == 0 ? got[0].d.generation : entry[1]);
    if (!owner_refuses(p, whole)) return false;
  }
  // More releases pending than the ring has slots: a count no honest reader reaches.
  Pair p;
  CHECK(p.open());
  uint32_t whole = 0;
  CHECK(loan_and_send(p, kPool, 1, &whole));
  __atomic_store_n(p.word(shmch::off::kRingS2C + shmch::off::kReleaseHead),
                   shmch::pool_release_slots(kPool) + 1, __ATOMIC_RELEASE);
  return owner_refuses(p, whole);
}

bool a_borrower_refuses_impossible_release_counters() {
  Pair p;
  CHECK(p.open());
  uint32_t a = 0;
  CHECK(loan_and_send(p, kBlock, 1, &a));
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  // The owner claims to have taken back releases that were never written.
  __atomic_store_n(p.word(shmch::off::kRingS2C + shmch::off::kReleaseTail), 5, __ATOMIC_RELEASE);
  CHECK_STATUS(shmch_release(p.client, a), SHMCH_E_PROTOCOL);
  CHECK_STATUS(shmch_release(p.client, a), SHMCH_E_PROTOCOL);
  size_t n = 0;
  uint8_t buf[64];
  CHECK_STATUS(shmch_read(p.client, buf, sizeof buf, &n), SHMCH_E_PROTOCOL);
  return true;
}

// Each descriptor on its own channel: every one is a protocol error, and the channel stays failed.
bool a_bad_descriptor_is_a_protocol_error() {
  struct Bad {
    const char* what;
    uint8_t kind;
    uint32_t total;
    shmch_descriptor d;
    uint32_t length;
  };
  const Bad bad[] = {
      {"offset not a block", SHMCH_NOTIFY, 1, {1, kBlock, 1, 0}, 16},
      {"extent zero", SHMCH_NOTIFY, 0, {0, 0, 1, 0}, 16},
      {"extent not blocks", SHMCH_NOTIFY, 1, {0, kBlock + 8, 1, 0}, 16},
      {"past the pool", SHMCH_NOTIFY, 1, {kPool - kBlock, 2 * kBlock, 1, 0}, 16},
      {"offset past the pool", SHMCH_NOTIFY, 1, {kPool, kBlock, 1, 0}, 16},
      {"wrapping", SHMCH_NOTIFY, 1, {0xfffff000u, 2 * kBlock, 1, 0}, 16},
      {"start past the extent", SHMCH_NOTIFY, 0, {0, kBlock, 1, kBlock + 1}, 16},
      {"total past the extent", SHMCH_NOTIFY, kBlock + 1, {0, kBlock, 1, 0}, 16},
      {"total past extent - start", SHMCH_NOTIFY, 2, {0, kBlock, 1, kBlock - 1}, 16},
      {"total past max_message_size", SHMCH_NOTIFY, 64 * 1024 + 1, {0, kPool, 1, 0}, 16},
      {"a kind that cannot be lent", SHMCH_COMPLETE, 1, {0, kBlock, 1, 0}, 16},
      {"a payload not of 16 bytes", SHMCH_NOTIFY, 1, {0, kBlock, 1, 0}, 8},
  };
  for (const Bad& b : bad) {
    Pair p;
    CHECK(p.open());
    inject_s2c(p, b.kind, SHMCH_FLAG_LOANED, b.total, &b.d, b.length);
    std::vector<Received> got;
    shmch_status s = read_loans(p.client, &got);
    if (s != SHMCH_E_PROTOCOL) {
      std::printf("     %s: %s\n", b.what, shmch_status_string(s));
      return false;
    }
    CHECK_STATUS(read_loans(p.client, &got), SHMCH_E_PROTOCOL);
    CHECK_STATUS(shmch_release(p.client, b.d.offset), SHMCH_E_PROTOCOL);
  }
  // The same descriptors at their limits are fine.
  Pair p;
  CHECK(p.open());
  shmch_descriptor ok1{kPool - kBlock, kBlock, 1, kBlock};  // empty message at the very end
  shmch_descriptor ok2{0, kBlock, 0, kBlock - 1};          // generation 0 is the owner's business
  inject_s2c(p, SHMCH_RESPONSE, SHMCH_FLAG_LOANED, 0, &ok1, sizeof ok1);
  inject_s2c(p, SHMCH_REQUEST, SHMCH_FLAG_LOANED, 1, &ok2, sizeof ok2);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 2);
  const uint8_t* data = nullptr;
  uint32_t extent = 0;
  CHECK_STATUS(shmch_borrowed(p.client, kPool - kBlock, &data, &extent), SHMCH_OK);
  CHECK(same_place(data, p.pool_s2c() + kPool - kBlock) && extent == kBlock);
  return true;
}

bool a_descriptor_over_a_held_loan_is_a_protocol_error() {
  const shmch_descriptor overlapping[] = {
      {kBlock, kBlock, 9, 0},      // the same loan again
      {0, 2 * kBlock, 9, 0},       // covering it from before
      {2 * kBlock, kBlock, 9, 0},  // its second block
      {0, kPool, 9, 0},            // the whole pool
  };
  for (const shmch_descriptor& d : overlapping) {
    Pair p;
    CHECK(p.open());
    shmch_descriptor held{kBlock, 2 * kBlock, 1, 0};
    inject_s2c(p, SHMCH_NOTIFY, SHMCH_FLAG_LOANED, 1, &held, sizeof held);
    std::vector<Received> got;
    CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
    inject_s2c(p, SHMCH_NOTIFY, SHMCH_FLAG_LOANED, 1, &d, sizeof d);
    CHECK_STATUS(read_loans(p.client, &got), SHMCH_E_PROTOCOL);
  }
  // Once released, the same blocks may come again.
  Pair p;
  CHECK(p.open());
  shmch_descriptor d{kBlock, 2 * kBlock, 1, 0};
  inject_s2c(p, SHMCH_NOTIFY, SHMCH_FLAG_LOANED, 1, &d, sizeof d);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK_STATUS(shmch_release(p.client, kBlock), SHMCH_OK);
  inject_s2c(p, SHMCH_NOTIFY, SHMCH_FLAG_LOANED, 1, &d, sizeof d);
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  return true;
}

bool a_loaned_frame_inside_a_fragmented_message_is_a_protocol_error() {
  Pair p;
  CHECK(p.open());
  uint8_t part[8] = {0};
  CHECK_STATUS(shmch_write(p.server, SHMCH_NOTIFY, 0, 16, part, 8), SHMCH_OK);  // 8 of 16 bytes
  uint32_t offset = 0;
  uint8_t* data = nullptr;
  uint32_t extent = 0;
  CHECK_STATUS(shmch_loan(p.server, 8, &data, &offset, &extent), SHMCH_OK);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, offset, 0, 16), SHMCH_OK);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_E_PROTOCOL);
  return true;
}

bool create_validates_the_pool_capacity() {
  const uint32_t bad[] = {1, kBlock - 1, kBlock + 1, kBlock * 3 + 2048, SHMCH_MAX_POOL_CAPACITY + kBlock,
                          0xfffff000u};
  for (uint32_t pool : bad) {
    g_name = next_name();
    shmch_options o{kRing, 4096, 0600, pool};
    shmch_channel* ch = reinterpret_cast<shmch_channel*>(&o);  // must be reset to NULL
    shmch_error err{};
    CHECK_STATUS(shmch_create(g_name.c_str(), &o, &ch, &err), SHMCH_E_INVALID_SIZE);
    CHECK(ch == nullptr && err.detail != nullptr);
    CHECK(shmch_attach(g_name.c_str(), &ch, nullptr) == SHMCH_E_NOT_FOUND);
  }
  // A valid one is stated in the header, and the segment has the size for it.
  Pair p;
  CHECK(p.open(3 * kBlock));
  shmch_info info;
  shmch_get_info(p.client, &info);
  CHECK(info.pool_capacity == 3 * kBlock);
  shmch_segment_info seg;
  CHECK_STATUS(shmch_inspect(g_name.c_str(), &seg, nullptr), SHMCH_OK);
  CHECK(seg.version == 3 && seg.pool_capacity == 3 * kBlock);
  CHECK(p.raw.size() == 512 + 2 * kRing + 2 * 3 * kBlock + 2 * 8 * 4);  // 3 blocks: 4 release slots
  return true;
}

// Attach and inspect refuse a segment whose header was changed after creation.
bool header_refused(Pair& p, size_t at, uint32_t value) {
  uint32_t old;
  std::memcpy(&old, p.seg() + at, 4);
  std::memcpy(p.seg() + at, &value, 4);
  shmch_channel* second = nullptr;
  shmch_error err{};
  // The slot is taken: free it so that only the header can refuse the attach.
  shmch_close(p.client);
  p.client = nullptr;
  CHECK_STATUS(shmch_accept_next(p.server), SHMCH_OK);
  CHECK_STATUS(shmch_attach(g_name.c_str(), &second, &err), SHMCH_E_INCOMPATIBLE);
  CHECK(second == nullptr);
  shmch_segment_info seg;
  CHECK_STATUS(shmch_inspect(g_name.c_str(), &seg, nullptr), SHMCH_E_INCOMPATIBLE);
  std::memcpy(p.seg() + at, &old, 4);
  CHECK_STATUS(shmch_attach(g_name.c_str(), &p.client, &err), SHMCH_OK);
  return true;
}

bool attach_refuses_a_v1_or_inconsistent_v2_header() {
  Pair p;
  CHECK(p.open());
  if (!header_refused(p, shmch::off::kVersion, 1)) return false;
  if (!header_refused(p, shmch::off::kVersion, 2)) return false;
  if (!header_refused(p, shmch::off::kVersion, 4)) return false;
  if (!header_refused(p, shmch::off::kKind, SHMCH_SEGMENT_DIRECTORY)) return false;  // not a channel
  if (!header_refused(p, shmch::off::kKind, 77)) return false;
  if (!header_refused(p, shmch::off::kPoolCapacity, kPool + 1)) return false;      // not blocks
  if (!header_refused(p, shmch::off::kPoolCapacity, kPool + kBlock)) return false; // not this size
  if (!header_refused(p, shmch::off::kPoolCapacity, 0)) return false;              // a v1 size
  if (!header_refused(p, shmch::off::kPoolCapacity, 0xfffff000u)) return false;
  // A v1 segment as a v1 server made it: version 1, no pool, the v1 size.
  g_name = next_name();
  shmch::Segment v1;
  shmch_error err{};
  size_t size = shmch::segment_layout(kRing, 0).size;
  CHECK_STATUS(v1.create(g_name.c_str(), size, 0600, false, &err), SHMCH_OK);
  uint8_t* b = v1.data();
  shmch::write_u64(b, shmch::off::kMagic, shmch::kMagic);
  shmch::write_u32(b, shmch::off::kVersion, 1);
  shmch::write_u32(b, shmch::off::kHeaderSize, shmch::kHeaderSize);
  shmch::write_u64(b, shmch::off::kSegmentSize, size);
  shmch::write_u32(b, shmch::off::kRingCapacity, kRing);
  shmch::write_u32(b, shmch::off::kMaxMessageSize, 4096);
  shmch::write_u32(b, shmch::off::kServerPid, static_cast<uint32_t>(getpid()));
  shmch::store_release(shmch::word32(b, shmch::off::kState), SHMCH_STATE_SERVER_READY);
  shmch_channel* ch = nullptr;
  shmch_status s = shmch_attach(g_name.c_str(), &ch, &err);
  shmch_segment_info seg;
  shmch_status inspected = shmch_inspect(g_name.c_str(), &seg, nullptr);
  shmch_unlink(g_name.c_str(), nullptr);
  CHECK_STATUS(s, SHMCH_E_INCOMPATIBLE);
  CHECK(ch == nullptr && err.detail != nullptr && std::strstr(err.detail, "version") != nullptr);
  CHECK_STATUS(inspected, SHMCH_E_INCOMPATIBLE);
  return true;
}

bool accept_next_gives_back_what_the_client_held() {
  Pair p;
  CHECK(p.open());
  uint32_t sent = 0;
  CHECK(loan_and_send(p, kPool / 2, 1, &sent));
  uint8_t* data = nullptr;
  uint32_t unsent = 0, extent = 0;
  CHECK_STATUS(shmch_loan(p.server, kPool / 2, &data, &unsent, &extent), SHMCH_OK);
  std::vector<Received> got;
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  // The client goes without releasing what it holds.
  shmch_close(p.client);
  p.client = nullptr;
  CHECK_STATUS(shmch_accept_next(p.server), SHMCH_OK);
  uint32_t offset = 0;
  CHECK_STATUS(shmch_loan(p.server, kPool / 2, &data, &offset, &extent), SHMCH_OK);
  CHECK(offset == sent);
  CHECK_STATUS(shmch_loan(p.server, 1, &data, &offset, &extent), SHMCH_E_FULL);  // unsent stays loaned
  // A new client starts with the rings where they are, and works.
  shmch_error err{};
  CHECK_STATUS(shmch_attach(g_name.c_str(), &p.client, &err), SHMCH_OK);
  CHECK_STATUS(shmch_write_loan(p.server, SHMCH_NOTIFY, 0, unsent, 0, 1), SHMCH_OK);
  got.clear();
  CHECK_STATUS(read_loans(p.client, &got), SHMCH_OK);
  CHECK(got.size() == 1 && got[0].d.offset == unsent);
  CHECK_STATUS(shmch_release(p.client, unsent), SHMCH_OK);
  CHECK_STATUS(shmch_unloan(p.server, offset), SHMCH_OK);
  CHECK_STATUS(shmch_loan(p.server, kPool, &data, &offset, &extent), SHMCH_OK);
  // And the client's own pool, the other direction.
  uint32_t c = 0;
  CHECK_STATUS(shmch_loan(p.client, 5, &data, &c, &extent), SHMCH_OK);
  std::memcpy(data, "hello", 5);
  CHECK_STATUS(shmch_write_loan(p.client, SHMCH_REQUEST, 3, c, 0, 5), SHMCH_OK);
  std::vector<uint8_t> buf(kRing);
  size_t n = 0;
  CHECK_STATUS(shmch_read(p.server, buf.data(), buf.size(), &n), SHMCH_OK);
  const uint8_t* borrowed = nullptr;
  CHECK_STATUS(shmch_borrowed(p.server, c, &borrowed, &extent), SHMCH_OK);
  CHECK(std::memcmp(borrowed, "hello", 5) == 0 && same_place(borrowed, p.seg() + p.layout.pool_c2s + c));
  CHECK_STATUS(shmch_release(p.server, c), SHMCH_OK);
  return true;
}

struct Case {
  const char* what;
  bool (*run)();
};

const Case kCases[] = {
    {"loans until FULL, never overlapping, in bounds", loans_until_full_never_overlap},
    {"a channel without a pool lends nothing and accepts no loan", no_pool_no_loans},
    {"releases in any order are reclaimed and coalesced into one whole-pool loan",
     released_in_any_order_and_coalesced},
    {"a loan after the peer's release reclaims it (and the FULL owner is woken)",
     a_loan_after_the_peers_release_reclaims_it},
    {"unloan gives back only a loan held unsent", unloan_gives_back_only_unsent_loans},
    {"write_loan refuses a range outside the loan, a non-loan, a kind not lent",
     write_loan_refuses_what_is_not_a_loanable_message},
    {"a release of another generation is PROTOCOL, and sticky", a_release_of_another_generation_is_a_protocol_error},
    {"a double release is PROTOCOL, and sticky", a_double_release_is_a_protocol_error},
    {"a release of what was never lent, or too many, is PROTOCOL",
     a_release_of_what_was_never_lent_is_a_protocol_error},
    {"a borrower refuses impossible release counters", a_borrower_refuses_impossible_release_counters},
    {"a bad descriptor is PROTOCOL, and sticky; limits accepted", a_bad_descriptor_is_a_protocol_error},
    {"a descriptor over a held loan is PROTOCOL", a_descriptor_over_a_held_loan_is_a_protocol_error},
    {"a LOANED frame inside a fragmented message is PROTOCOL",
     a_loaned_frame_inside_a_fragmented_message_is_a_protocol_error},
    {"shmch_create validates pool_capacity", create_validates_the_pool_capacity},
    {"attach and inspect refuse a v1 or inconsistent v2 header", attach_refuses_a_v1_or_inconsistent_v2_header},
    {"accept_next: what the client held is free, unsent loans stay, the next client works",
     accept_next_gives_back_what_the_client_held},
};

const char* g_running = "";

void on_case_hung(int) {
  const char prefix[] = "FAIL (hung) ";
  (void)!write(1, prefix, sizeof prefix - 1);
  (void)!write(1, g_running, std::strlen(g_running));
  (void)!write(1, "\n", 1);
  shm_unlink(g_name.c_str());
  _exit(1);
}

}  // namespace

int main() {
  int failures = 0;
  signal(SIGALRM, on_case_hung);
  for (const Case& c : kCases) {
    g_running = c.what;
    std::fflush(stdout);
    alarm(kCaseLimitS);
    bool ok = c.run();
    alarm(0);
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.what);
    if (!ok) failures++;
  }
  std::printf("pool_test: %d of %zu cases failed\n", failures, sizeof kCases / sizeof kCases[0]);
  return failures == 0 ? 0 : 1;
}
