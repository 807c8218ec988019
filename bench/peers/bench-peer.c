/*
 * bench-peer: the C side of the bench's "runtimes" scenario (bench/scenarios/runtimes.ts), on
 * the message API (shmchannel_message.h). One role per process:
 *
 *   bench-peer echo   /name              server: answers every request with its own bytes
 *   bench-peer sink   /name              server: counts 64 B notifications (see below)
 *   bench-peer rt     /name WARMUP N     client: WARMUP, then N timed 64 B round trips
 *   bench-peer source /name N            client: N 64 B notifications, then the end marker
 *
 * What it prints on stdout, one line each (the bench reads them):
 *   ready                                a server is listening
 *   batch COUNT BAD LAST_NS              sink: an end marker arrived
 *   rt P50_US P99_US                     rt: done
 *   sent T0_NS                           source: everything sent (and flushed)
 *
 * A notification of 64 bytes carries its sequence number (u32, little-endian) in its first 4
 * bytes; one of any other size is the end marker of a batch. The sink checks each sequence
 * number and size, takes the CLOCK_MONOTONIC time of each arrival (the clock of Node's
 * process.hrtime.bigint() and Python's time.monotonic_ns()), and on the end marker prints how
 * many arrived, how many were out of sequence, and when the last arrived; then it starts again
 * at 0. A round trip is timed from the request to its COMPLETE, as lastValueFrom(request())
 * is on the Node side. Servers serve one client after another until SIGTERM or SIGINT.
 *
 * Built by the bench: make -C native OUT=build/bench/c, then
 *   cc -std=c99 -Wall -Wextra -Werror -Inative/core bench/peers/bench-peer.c \
 *      build/bench/c/libshmchannel.a -lstdc++ -lm -lrt -lpthread
 * Exit status 0 on success, 1 on a failure (on stderr), 2 for a usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmchannel_message.h"

#define SIZE 64
#define CONNECT_TIMEOUT_MS 10000

static shmch_endpoint* endpoint;
static volatile sig_atomic_t stopping;

/* shmch_endpoint_wake() is async-signal-safe: the server's wait returns SHMCH_EV_WOKEN. */
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
  shmch_endpoint_wake(endpoint);
}

static int fail(const char* what, shmch_status s, const shmch_error* err) {
  fprintf(stderr, "bench-peer: %s: %s", what, shmch_status_string(s));
  if (err != NULL && err->detail != NULL) fprintf(stderr, ": %s", err->detail);
  fputc('\n', stderr);
  return 1;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t get_u32le(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32le(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* echo and sink: receive until a signal; the endpoint takes the next client by itself. */
static int serve(int echo) {
  uint32_t count = 0;
  uint32_t bad = 0;
  int64_t last = 0;
  printf("ready\n");
  fflush(stdout);
  while (!stopping) {
    shmch_message m;
    shmch_status s = shmch_endpoint_receive(endpoint, &m);
    if (s != SHMCH_OK) return fail("receive", s, NULL);
    if (m.kind == 0) {
      shmch_endpoint_wait(endpoint, -1);
      continue;
    }
    if (m.kind == SHMCH_REQUEST && echo) {
      s = shmch_endpoint_reply(endpoint, m.id, m.data, m.size);
      if (s != SHMCH_OK) return fail("reply", s, NULL);
    } else if (m.kind == SHMCH_NOTIFY && !echo) {
      if (m.size == SIZE) {
        last = now_ns();
        if (get_u32le(m.data) != count) bad++;
        count++;
      } else {
        printf("batch %u %u %lld\n", count, bad, (long long)last);
        fflush(stdout);
        count = bad = 0;
      }
    } else if (m.kind == SHMCH_REQUEST) {
      s = shmch_endpoint_fail(endpoint, m.id, "ERR_NO_HANDLER", "the sink answers no requests");
      if (s != SHMCH_OK) return fail("fail", s, NULL);
    }
  }
  return 0;
}

/* One request of `payload`, waited for until its COMPLETE. */
static shmch_status round_trip(const uint8_t* payload, int* replied) {
  uint32_t id;
  shmch_status s = shmch_endpoint_request(endpoint, payload, SIZE, &id);
  if (s != SHMCH_OK) return s;
  *replied = 0;
  for (;;) {
    shmch_message m;
    s = shmch_endpoint_receive(endpoint, &m);
    if (s != SHMCH_OK) return s;
    if (m.kind == 0) {
      shmch_endpoint_wait(endpoint, -1);
      continue;
    }
    if (m.kind == SHMCH_BYE) return SHMCH_E_CLOSED;
    if (m.id != id) continue;
    if (m.kind == SHMCH_RESPONSE) *replied = m.size == SIZE && memcmp(m.data, payload, SIZE) == 0;
    if (m.kind == SHMCH_ERROR) return SHMCH_E_PROTOCOL;
    if (m.kind == SHMCH_COMPLETE) return SHMCH_OK;
  }
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* The p-th percentile of sorted[0..n), interpolating between the two nearest ranks (as
 * percentileSorted() in bench/stats.ts). */
static double percentile(const double* sorted, long n, double p) {
  if (n == 1) return sorted[0];
  double rank = p / 100.0 * (double)(n - 1);
  long lo = (long)rank;
  long hi = lo + 1 < n ? lo + 1 : n - 1;
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - (double)lo);
}

static int round_trips(long warmup, long n) {
  uint8_t payload[SIZE];
  for (int i = 0; i < SIZE; i++) payload[i] = (uint8_t)(i * 7 + 1);
  double* lat = malloc(sizeof(double) * (size_t)n);
  if (lat == NULL) return fail("round trips", SHMCH_E_RESOURCE, NULL);
  long mismatches = 0;
  int replied = 0;
  for (long i = 0; i < warmup + n; i++) {
    int64_t t0 = now_ns();
    shmch_status s = round_trip(payload, &replied);
    int64_t t1 = now_ns();
    if (s != SHMCH_OK) {
      free(lat);
      return fail("round trip", s, NULL);
    }
    if (!replied) mismatches++;
    if (i >= warmup) lat[i - warmup] = (double)(t1 - t0) / 1e3;
  }
  qsort(lat, (size_t)n, sizeof(double), by_value);
  printf("rt %.3f %.3f\n", percentile(lat, n, 50), percentile(lat, n, 99));
  free(lat);
  if (mismatches > 0) fprintf(stderr, "bench-peer: %ld replies did not echo the request\n", mismatches);
  return mismatches > 0;
}

static int notifications(long n) {
  uint8_t payload[SIZE];
  memset(payload, 0xa5, sizeof payload);
  int64_t t0 = now_ns();
  for (long i = 0; i <= n; i++) {
    /* n messages of 64 B, then the 1-byte end marker. */
    put_u32le(payload, (uint32_t)i);
    size_t size = i < n ? SIZE : 1;
    shmch_status s;
    while ((s = shmch_endpoint_notify(endpoint, payload, size)) == SHMCH_E_FULL)
      shmch_endpoint_wait(endpoint, -1); /* the queue is at its limit: wait for room */
    if (s != SHMCH_OK) return fail("notify", s, NULL);
  }
  shmch_status s = shmch_endpoint_flush(endpoint, -1);
  if (s != SHMCH_OK) return fail("flush", s, NULL);
  printf("sent %lld\n", (long long)t0);
  return 0;
}

int main(int argc, char** argv) {
  const char* role = argc > 1 ? argv[1] : "";
  int echo = strcmp(role, "echo") == 0;
  int sink = strcmp(role, "sink") == 0;
  int rt = strcmp(role, "rt") == 0;
  int source = strcmp(role, "source") == 0;
  int want = echo || sink ? 3 : rt ? 5 : 4;
  if (!(echo || sink || rt || source) || argc != want) {
    fprintf(stderr, "usage: bench-peer echo|sink /name | rt /name WARMUP N | source /name N\n");
    return 2;
  }
  long warmup = rt ? strtol(argv[3], NULL, 10) : 0;
  long n = rt ? strtol(argv[4], NULL, 10) : source ? strtol(argv[3], NULL, 10) : 0;
  if ((rt && (warmup < 0 || n < 1)) || (source && n < 1)) {
    fprintf(stderr, "bench-peer: counts must be positive\n");
    return 2;
  }

  shmch_endpoint_options options = {0};
  options.connect_timeout_ms = CONNECT_TIMEOUT_MS;
  shmch_error err = {0};
  int server = echo || sink;
  shmch_status s = shmch_endpoint_open(argv[2], server ? SHMCH_SERVER : SHMCH_CLIENT, &options, &endpoint, &err);
  if (s != SHMCH_OK) return fail(server ? "create" : "connect", s, &err);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int status = server ? serve(echo) : rt ? round_trips(warmup, n) : notifications(n);
  fflush(stdout);
  shmch_endpoint_close(endpoint, 1000);
  return status;
}
