/*
 * A peer on the message API of shmchannel_message.h, for spec 98b: what the example
 * (examples/c/channel.c) does not exercise — large messages, streams, errors with codes.
 *
 *   message-peer server /name RING MAX_MESSAGE CLIENTS
 *     Serves CLIENTS clients one after the other, printing "ready", then "hello" and "bye"
 *     per client. Answers each request: "fail:CODE:MESSAGE" with an ERROR of that code and
 *     message; "stream:N" with N responses "part I" and a COMPLETE; anything else with its
 *     bytes reversed. Prints each notification as "notify SIZE HASH".
 *   message-peer client /name SIZE
 *     Sends a request of SIZE pattern bytes and prints the reply as "reply SIZE HASH"; sends a
 *     request "fail" and prints the error as "error CODE|MESSAGE"; notifies SIZE pattern bytes;
 *     closes. Exit status 0 when all of that went through.
 *
 * HASH is FNV-1a (32 bits, hex) of the bytes; pattern byte i is (i * 31 + 7) % 251.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmchannel_message.h"

static uint32_t fnv1a(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static int die(const char* what, shmch_status s) {
  fprintf(stderr, "message-peer: %s: %s\n", what, shmch_status_string(s));
  return 1;
}

/* The next message, waiting as long as it takes; 0 and *status set when the endpoint ended. */
static int next_message(shmch_endpoint* ep, shmch_message* m, shmch_status* status) {
  for (;;) {
    *status = shmch_endpoint_receive(ep, m);
    if (*status != SHMCH_OK) return 0;
    if (m->kind != 0) return 1;
    shmch_endpoint_wait(ep, -1);
  }
}

static shmch_status answer(shmch_endpoint* ep, const shmch_message* m) {
  const char* text = (const char*)m->data;
  if (m->size >= 5 && memcmp(text, "fail:", 5) == 0) {
    char* copy = malloc(m->size + 1);
    if (copy == NULL) return SHMCH_E_RESOURCE;
    memcpy(copy, text, m->size);
    copy[m->size] = '\0';
    char* code = copy + 5;
    char* message = strchr(code, ':');
    if (message != NULL) *message++ = '\0';
    shmch_status s = shmch_endpoint_fail(ep, m->id, code, message);
    free(copy);
    return s;
  }
  if (m->size > 7 && memcmp(text, "stream:", 7) == 0) {
    int n = atoi(text + 7);
    for (int i = 0; i < n; i++) {
      char part[32];
      int len = snprintf(part, sizeof part, "part %d", i);
      shmch_status s = shmch_endpoint_respond(ep, m->id, (const uint8_t*)part, (size_t)len);
      if (s != SHMCH_OK) return s;
    }
    return shmch_endpoint_complete(ep, m->id);
  }
  uint8_t* reversed = malloc(m->size + 1);
  if (reversed == NULL) return SHMCH_E_RESOURCE;
  for (size_t i = 0; i < m->size; i++) reversed[i] = m->data[m->size - 1 - i];
  shmch_status s = shmch_endpoint_reply(ep, m->id, reversed, m->size);
  free(reversed);
  return s;
}

static int run_server(const char* name, uint32_t ring, uint32_t max_message, long clients) {
  shmch_endpoint_options options = {0};
  options.ring_capacity = ring;
  options.max_message_size = max_message;
  shmch_endpoint* ep = NULL;
  shmch_status s = shmch_endpoint_open(name, SHMCH_SERVER, &options, &ep, NULL);
  if (s != SHMCH_OK) return die("open", s);
  printf("ready\n");
  fflush(stdout);
  long served = 0;
  shmch_message m;
  while (served < clients && next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_HELLO) printf("hello\n");
    if (m.kind == SHMCH_BYE) printf("bye\n"), served++;
    if (m.kind == SHMCH_NOTIFY) printf("notify %zu %08x\n", m.size, fnv1a(m.data, m.size));
    if (m.kind == SHMCH_REQUEST && (s = answer(ep, &m)) != SHMCH_OK) break;
    fflush(stdout);
  }
  shmch_endpoint_close(ep, 5000);
  return s == SHMCH_OK ? 0 : die("serve", s);
}

static int run_client(const char* name, size_t size) {
  shmch_endpoint_options options = {0};
  options.connect_timeout_ms = 10000;
  shmch_endpoint* ep = NULL;
  shmch_status s = shmch_endpoint_open(name, SHMCH_CLIENT, &options, &ep, NULL);
  if (s != SHMCH_OK) return die("open", s);
  uint8_t* data = malloc(size + 1);
  if (data == NULL) return 1;
  for (size_t i = 0; i < size; i++) data[i] = (uint8_t)((i * 31 + 7) % 251);

  uint32_t id = 0;
  shmch_message m;
  int ok = 0;
  if ((s = shmch_endpoint_request(ep, data, size, &id)) != SHMCH_OK) return die("request", s);
  while (next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_RESPONSE && m.id == id) printf("reply %zu %08x\n", m.size, fnv1a(m.data, m.size));
    if (m.kind == SHMCH_COMPLETE && m.id == id) break;
    if (m.kind == SHMCH_ERROR || m.kind == SHMCH_BYE) return die("reply", SHMCH_E_CLOSED);
  }
  if ((s = shmch_endpoint_request(ep, (const uint8_t*)"fail", 4, &id)) != SHMCH_OK) return die("request", s);
  while (next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_ERROR && m.id == id) {
      printf("error %s|%s\n", m.error_code != NULL ? m.error_code : "(none)", m.error_message);
      ok = 1;
      break;
    }
    if (m.kind == SHMCH_BYE) break;
  }
  if (!ok) return die("error", s);
  if ((s = shmch_endpoint_notify(ep, data, size)) != SHMCH_OK) return die("notify", s);
  fflush(stdout);
  free(data);
  s = shmch_endpoint_close(ep, 5000);
  return s == SHMCH_OK ? 0 : die("close", s);
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "server") == 0) {
    return run_server(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), (uint32_t)strtoul(argv[4], NULL, 10),
                      strtol(argv[5], NULL, 10));
  }
  if (argc == 4 && strcmp(argv[1], "client") == 0) return run_client(argv[2], strtoul(argv[3], NULL, 10));
  fprintf(stderr, "usage: message-peer server /name RING MAX_MESSAGE CLIENTS | client /name SIZE\n");
  return 2;
}
