/*
 * channel: the example of the 2017 library, in C, on the message API (shmchannel_message.h).
 * It talks to its TypeScript twin, examples/channel.ts, either way round. Run the server, then
 * the client, in two terminals:
 *
 *   build/c/examples/channel server "Message from server."
 *   build/c/examples/channel client "Message from client."     (or node dist/examples/channel.js client ...)
 *
 * Each side answers the other's requests ("server got \"...\""), sends one request and one
 * notification with its message, prints everything it receives, and exits when the exchange is
 * over: the client once it has its reply and the server's notification, the server once its
 * client has left. An optional third argument names the channel (default /shmchannel-example);
 * an optional fourth, for the server, is how many clients to serve one after the other (default
 * 1; 0: until Ctrl-C).
 *
 * Built by `npm run build:c` into build/c/examples/channel. Exit status 0 when the exchange
 * went through; 1 on a failure (its status on stderr); 2 for a usage error; 130 on SIGINT or
 * SIGTERM (the channel is closed first, so no segment is left in /dev/shm).
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmchannel_message.h"

/* How long the client waits for the server to appear, and each side for its reply. */
#define CONNECT_TIMEOUT_MS 10000
#define REPLY_TIMEOUT_MS 5000

static shmch_endpoint* endpoint;
static volatile sig_atomic_t stopping;

/* shmch_endpoint_wake() is async-signal-safe: the main loop's wait returns SHMCH_EV_WOKEN. */
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
  shmch_endpoint_wake(endpoint);
}

static int fail(const char* mode, const char* what, shmch_status s, const shmch_error* err) {
  fprintf(stderr, "%s failed: %s: %s (%s)", mode, what, shmch_status_description(s), shmch_status_string(s));
  if (err != NULL && err->detail != NULL) fprintf(stderr, ": %s", err->detail);
  fputc('\n', stderr);
  return 1;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends our request and our notification, in that order on the wire; *id is the request's. */
static shmch_status exchange(const char* message, uint32_t* id) {
  shmch_status s = shmch_endpoint_request(endpoint, (const uint8_t*)message, strlen(message), id);
  if (s == SHMCH_OK) s = shmch_endpoint_notify(endpoint, (const uint8_t*)message, strlen(message));
  return s;
}

/* "server got \"text\"": the answer to every request. */
static shmch_status answer(const char* mode, const shmch_message* m) {
  size_t size = strlen(mode) + m->size + 8;
  char* reply = malloc(size);
  if (reply == NULL) return shmch_endpoint_fail(endpoint, m->id, "ENOMEM", "out of memory");
  int n = snprintf(reply, size, "%s got \"%.*s\"", mode, (int)m->size, (const char*)m->data);
  shmch_status s = shmch_endpoint_reply(endpoint, m->id, (const uint8_t*)reply, (size_t)n);
  free(reply);
  return s;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "";
  int server = strcmp(mode, "server") == 0;
  if ((!server && strcmp(mode, "client") != 0) || argc < 3 || argc > (server ? 5 : 4)) {
    fprintf(stderr, "usage: channel server|client \"message\" [/channel-name] [clients (server)]\n");
    return 2;
  }
  const char* message = argv[2];
  const char* name = argc > 3 ? argv[3] : "/shmchannel-example";
  long clients = argc > 4 ? strtol(argv[4], NULL, 10) : 1;
  const char* peer = server ? "client" : "server";

  shmch_endpoint_options options = {0};
  options.connect_timeout_ms = CONNECT_TIMEOUT_MS;
  shmch_error err = {0};
  shmch_status s = shmch_endpoint_open(name, server ? SHMCH_SERVER : SHMCH_CLIENT, &options, &endpoint, &err);
  if (s != SHMCH_OK) return fail(mode, server ? "create" : "connect", s, &err);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int status = 0;
  uint32_t our_request = 0;
  int awaiting_reply = 0;
  long long reply_deadline = 0;
  int got_reply = 0;
  int got_notification = 0;
  long served = 0;
  if (server) {
    printf("listening on %s; start the client now\n", name);
  } else {
    s = exchange(message, &our_request);
    if (s != SHMCH_OK) status = fail(mode, "send", s, NULL);
    awaiting_reply = 1;
    reply_deadline = now_ms() + REPLY_TIMEOUT_MS;
  }
  fflush(stdout);

  int done = 0;
  while (status == 0 && !stopping && !done) {
    shmch_message m;
    s = shmch_endpoint_receive(endpoint, &m);
    if (s != SHMCH_OK) {
      /* A client whose server left: the SHMCH_BYE below came first. */
      status = fail(mode, "receive", s, NULL);
      break;
    }
    if (m.kind == 0) {
      long long left = awaiting_reply ? reply_deadline - now_ms() : -1;
      if (awaiting_reply && left <= 0) {
        shmch_endpoint_cancel(endpoint, our_request);
        fprintf(stderr, "%s failed: no reply from %s within %d ms\n", mode, peer, REPLY_TIMEOUT_MS);
        status = 1;
        continue;
      }
      /* Why it woke does not matter here: receive again (stopping is looked at above). */
      shmch_endpoint_wait(endpoint, (int)left);
      continue;
    }
    switch (m.kind) {
      case SHMCH_HELLO: /* server only: a client connected */
        printf("client connected\n");
        s = exchange(message, &our_request);
        if (s != SHMCH_OK) status = fail(mode, "send", s, NULL);
        awaiting_reply = 1;
        reply_deadline = now_ms() + REPLY_TIMEOUT_MS;
        got_reply = 0;
        break;
      case SHMCH_REQUEST:
        printf("request from %s: \"%.*s\"\n", peer, (int)m.size, (const char*)m.data);
        s = answer(mode, &m);
        if (s != SHMCH_OK) status = fail(mode, "reply", s, NULL);
        break;
      case SHMCH_NOTIFY:
        printf("notification from %s: \"%.*s\"\n", peer, (int)m.size, (const char*)m.data);
        got_notification = 1;
        break;
      case SHMCH_RESPONSE:
        if (m.id == our_request) printf("reply from %s: %.*s\n", peer, (int)m.size, (const char*)m.data);
        break;
      case SHMCH_COMPLETE:
        if (m.id == our_request) awaiting_reply = 0, got_reply = 1;
        break;
      case SHMCH_ERROR:
        if (m.id != our_request) break;
        fprintf(stderr, "%s failed: %s (%s)\n", mode, m.error_message, m.error_code ? m.error_code : "no code");
        status = 1;
        break;
      case SHMCH_CANCEL: /* our replies are immediate: nothing to stop */
        break;
      case SHMCH_BYE:
        if (!server) {
          /* The server left before the exchange was over. */
          fprintf(stderr, "client failed: the server left\n");
          status = 1;
          break;
        }
        printf("client disconnected\n");
        if (awaiting_reply) {
          fprintf(stderr, "server failed: the client left without replying\n");
          status = 1;
        }
        awaiting_reply = 0;
        served++;
        break;
    }
    fflush(stdout);
    /* The client leaves once it has what it wants; the server once its clients have. */
    if (!server && got_reply && got_notification) done = 1;
    if (server && clients > 0 && served >= clients) done = 1;
  }

  /* Sends what is still queued (up to 1 s), then BYE; the server also removes the segment. */
  shmch_status closed = shmch_endpoint_close(endpoint, 1000);
  if (status == 0 && !stopping && closed != SHMCH_OK && !(server && closed == SHMCH_E_CLOSED)) {
    status = fail(mode, "close", closed, NULL);
  }
  if (stopping) {
    printf("signal: closing\n");
    return 130;
  }
  return status;
}
