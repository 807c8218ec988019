// Mutation fuzzer for the core: a server and a client channel on one real segment exchange
// frames while random and targeted byte mutations hit the header, the ring control blocks
// and the frames in flight. Built with AddressSanitizer + UndefinedBehaviorSanitizer, any
// out-of-bounds access or UB aborts; a call that does not return (hang) is caught by the
// alarm below. Usage: fuzz_segment [iterations] [seed-file]
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../core/layout.h"
#include "../core/segment.h"
#include "../core/shmchannel.h"

namespace {

constexpr uint32_t kCapacity = 4096;
constexpr size_t kSegmentSize = shmch::kHeaderSize + 2 * kCapacity;
unsigned long long g_mutations = 0;
unsigned long long g_continued = 0;  // continuation reads that delivered bytes: is the path reached?
unsigned long long g_truncations = 0;

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
};
const uint32_t kNasty[] = {0, 1, 7, 8, 15, 16, 17, kCapacity - 16, kCapacity - 8, kCapacity,
                           kCapacity + 8, 0x7fffffff, 0x80000000, 0xfffffff8, 0xffffffff};

void mutate(uint8_t* seg, std::mt19937_64& rng) {
  int kind = static_cast<int>(rng() % 4);
  g_mutations++;
  if (kind == 0) {  // random byte anywhere
    seg[rng() % kSegmentSize] = static_cast<uint8_t>(rng());
  } else if (kind == 1) {  // nasty 32-bit value into a control field
    size_t at = kTargets[rng() % (sizeof kTargets / sizeof kTargets[0])];
    uint32_t v = kNasty[rng() % (sizeof kNasty / sizeof kNasty[0])];
    std::memcpy(seg + at, &v, 4);
  } else if (kind == 2) {  // nasty value into a frame header field somewhere in a ring
    size_t ring = shmch::off::kData + (rng() % 2) * kCapacity;
    size_t at = ring + (rng() % (kCapacity / 8)) * 8 + (rng() % 4) * 4;
    uint32_t v = kNasty[rng() % (sizeof kNasty / sizeof kNasty[0])];
    std::memcpy(seg + at, &v, 4);
  } else {  // torn frame: move a head forward or back by a small, unaligned amount
    size_t at = (rng() % 2 ? shmch::off::kRingS2C : shmch::off::kRingC2S) + shmch::off::kHead;
    uint32_t v;
    std::memcpy(&v, seg + at, 4);
    v += static_cast<uint32_t>(static_cast<int>(rng() % 64) - 32);
    std::memcpy(seg + at, &v, 4);
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

// One end of the channel and what its reader still lacks of the message in progress.
struct Side {
  shmch_channel* ch;
  uint32_t remaining = 0;
  // The fragmented message this side is writing: continued on its next turns until sent.
  uint8_t kind = 0;
  uint32_t id = 0;
  uint32_t total = 0;
  uint32_t sent = 0;
};

// Follows the messages in what shmch_read returned, as the TypeScript assembler does.
void account_frames(Side& side, const std::vector<uint8_t>& scratch, size_t got) {
  for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
    uint32_t length, total;
    std::memcpy(&length, scratch.data() + at, 4);
    std::memcpy(&total, scratch.data() + at + 12, 4);
    // An announcement (length 0) starts a message of which nothing was read yet.
    side.remaining = side.remaining == 0 ? total - length : side.remaining - length;
    if (length == 0 && total > 0 && at + SHMCH_FRAME_HEADER_SIZE != got) {
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
  shmch_options o{kCapacity, 64 * 1024, 0600};
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
  if (attacker.open(name.c_str(), kSegmentSize, kSegmentSize, &err) != SHMCH_OK) {
    std::fprintf(stderr, "fuzz_segment: attacker cannot map the segment\n");
    shmch_close(client);
    shmch_close(server);
    return false;
  }
  uint8_t* seg = attacker.data();
  std::vector<uint8_t> scratch(kCapacity);
  Side server_side{server};
  Side client_side{client};
  int rounds = 20 + static_cast<int>(rng() % 40);
  // One run in eight, the attacker also shrinks the segment (to nothing, half the time).
  int truncate_at = rng() % 8 == 0 ? static_cast<int>(rng() % rounds) : -1;
  off_t truncate_to = rng() % 2 == 0 ? 0 : static_cast<off_t>(rng() % kSegmentSize);
  for (int r = 0; r < rounds; r++) {
    if (r == truncate_at) shrink(name, truncate_to);
    int mutations = static_cast<int>(rng() % 3);
    for (int m = 0; m < mutations; m++) mutate(seg, rng);
    exercise(server_side, rng, scratch);
    exercise(client_side, rng, scratch);
    if (rng() % 16 == 0) {
      shmch_accept_next(server);
      server_side.remaining = 0;
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
      server_side.remaining = 0;
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
  }
  alarm(0);
  shmch_unlink(name.c_str(), nullptr);
  std::printf("fuzz_segment: %zu runs (%zu from the seed corpus, random base seed 0x%llx), %llu mutations, "
              "%llu continuation reads, %llu truncations, no crash, no hang\n",
              seeds.size(), corpus_size, static_cast<unsigned long long>(base), g_mutations, g_continued,
              g_truncations);
  return 0;
}
