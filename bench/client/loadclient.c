/*
 * SSE load client for the sse-server benchmark (issue 7).
 *
 * One single-threaded epoll process that holds every subscriber socket and the
 * publisher connections, driven by line commands on stdin (one JSON reply line
 * per command on stdout). It is compiled by bench/run.js with gcc -O2 and pinned
 * to its own core, so that it is never the bottleneck (its CPU use is reported
 * with every reply: cpu_us is getrusage user+sys of this process).
 *
 * Parsing is minimal but correct: HTTP/1.1 response head, chunked transfer
 * decoding, then SSE frames: a frame counts as one delivered event when it has
 * at least one `data:` line (comments such as the `:` heartbeat and `retry:`
 * lines are not events). When the first data line starts with digits (after an
 * optional space or quote) they are read as a CLOCK_MONOTONIC timestamp in
 * microseconds and, while latency recording is on, now - timestamp is recorded.
 *
 * Commands (arguments separated by single spaces):
 *   paths FILE                 request paths for subscribers, one per line (round robin)
 *   connect KIND N CONC TMO_MS open N subscribers (KIND: sub = reading, stall = stops
 *                              reading after the response head), at most CONC in flight
 *   stallrcvbuf BYTES          SO_RCVBUF for stalled subscribers opened afterwards (0 = default)
 *   reset                      zero the per-subscriber frame counters
 *   lat on|off                 latency recording
 *   latreport                  percentiles of the recorded latencies (then cleared)
 *   pub K DUR_MS INTERVAL_US FILE
 *                              K keep-alive publisher connections send the raw HTTP
 *                              request in FILE again and again for DUR_MS; INTERVAL_US 0
 *                              = as fast as answered, else one request per interval per
 *                              connection (skipped while the previous one is unanswered)
 *   sched FILE                 one keep-alive publisher connection sends prepared requests at
 *                              given CLOCK_MONOTONIC times (µs); FILE holds records
 *                              "<time_us> <length>\n<length bytes of raw HTTP request>"
 *                              (used for latency: the timestamp inside each event is its
 *                              send time; the client spins in the last 2 ms to be on time)
 *   drain EXPECTED TMO_MS IDLE_MS
 *                              wait until every open reading subscriber has EXPECTED frames
 *                              since reset (or no frame for IDLE_MS, or TMO_MS)
 *   count                      counters now
 *   close KIND                 close all subscribers of KIND (sub, stall, all)
 *   quit
 *
 * Storm mode (bench/storm.js; see the struct storm below):
 *   storm on T                 subscribers opened afterwards outlive their connections; T topics:
 *                              subscriber of path i follows topic i % T, event seq goes to topic seq % T
 *   srcaddrs N                 subscribers connect from 127.0.0.2 .. 127.0.0.(N+1), round robin
 *   sshm FILE N CREATOR        map the publisher's per-event answers (shared by client processes)
 *   sreconnect MODE DEF FAIL MAX
 *                              MODE honour: reconnect after the last retry: (DEF ms before any), also
 *                              after a failed attempt (like EventSource); now: at once, FAIL ms after a
 *                              failed attempt; off: a closed subscriber is gone. MAX: connects in flight (0: any)
 *   spub FILE INTERVAL_US      publish prepared requests (records "<length>\n<request>", request i carries
 *                              event seq i) one at a time on a keep-alive connection, one per interval
 *   spstop                     stop publishing (reply once no request is in flight)
 *   smark T0_US | scut T0_US   start measuring at T0 (CLOCK_MONOTONIC µs); scut also closes every connection
 *   sstat                      storm counters; sdump FILE: per subscriber head and caught-up times
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { K_SUB = 1, K_STALL = 2, K_PUB = 3, K_SPUB = 4 };
enum { S_CONNECTING = 1, S_HEAD, S_BODY };
enum { C_SIZE = 0, C_EXT, C_DATA, C_DCRLF, C_TRAILER, C_END };

#define HBUF 4096

typedef struct conn {
  int fd;
  uint8_t kind, st, chunked, cst;
  uint8_t lpos;      /* SSE line state: 0 line start, 1..4 matching "data", 5 data line (ts parse), 6 data line, 7 other line */
  uint8_t inframe;   /* current frame has a data line */
  uint8_t tsdigits;
  uint8_t trailer_ls;
  uint64_t crem;     /* bytes left in the current chunk / content-length body */
  uint64_t ts;
  uint64_t frames;
  char *hbuf;
  int hlen;
  size_t woff;       /* publisher: bytes of the request written so far */
  int inflight;      /* publisher: request outstanding */
  uint64_t next_us;  /* publisher: next scheduled send */
  uint64_t connect_start_us;
  struct storm *sm;  /* storm mode: the subscriber's state across reconnects (NULL otherwise) */
  /* storm mode SSE field parser (per connection) */
  uint8_t sm_rc;     /* storm: a reconnection (not part of a `connect` command's counts) */
  uint8_t fail;      /* storm: why an attempt failed before its head (FAIL_*), for the counters */
  uint8_t fst, fnlen, dfirst, evpos, evreset, skipsp, rvalid, idlen;
  char fname[8];
  uint32_t racc;
  char idtmp[64];
} conn;

/*
 * Storm mode (bench/storm.js): a subscriber outlives its connections. It keeps
 * its token (path), the last event id and the reconnection time the server told
 * it (`retry:`), reconnects like a browser's EventSource (or at once), and checks
 * the sequence numbers the storm publisher puts in each event's data.
 */
typedef struct storm {
  conn *c;            /* current connection, NULL while waiting to reconnect or gone */
  int pidx;           /* its request path (token) */
  int hidx;           /* index in the reconnect heap, -1 if not in it */
  int64_t lastseq;    /* last sequence number received, -1 before the first */
  int64_t target;     /* the last event of its topic acknowledged when the current connection's head arrived */
  int topic;
  uint64_t rc_at;     /* when to reconnect */
  uint64_t head_us;   /* time of the last 200 response head */
  uint64_t caught_us; /* time this connection first got an event published after its head (0: not yet) */
  uint32_t retry_ms;  /* reconnection time: last retry: received, else the default */
  uint32_t lost, dups, reorders, resets, conns;
  uint8_t after_reset; /* an sse:reset arrived: the next gap is covered by it */
  uint8_t reset_conn;  /* an sse:reset arrived on the current connection: events up to target are excused */
  uint8_t idlen;
  char lastid[64];
} storm;

/* storm mode state */
static int storm_on;                /* new subscribers get a storm state */
static storm **subs;                /* every storm subscriber */
static int nsubs, capsubs;
static int rc_mode;                 /* 0: a closed subscriber is gone; 1: reconnect after retry:; 2: at once */
static uint32_t rc_default_ms = 3000, rc_fail_ms = 100;
static int rc_maxinflight;          /* 0: no limit (browsers have none) */
static uint64_t rc_head_timeout_us; /* a connection without a response head after this long is closed (0: never) */
static uint64_t st_head_timeouts, rc_next_scan_us;
/* why attempts failed before a response head */
enum { FAIL_CLOSED = 0, FAIL_REFUSED, FAIL_CONNERR, FAIL_STATUS, FAIL_TIMEOUT, FAIL_LOCAL, FAIL_RESET, FAIL_N };
static uint64_t st_fail[FAIL_N];
static int st_last_bad_status, st_last_connerr, st_last_local_err;
static storm **heap;                /* reconnects waiting, min-heap on rc_at */
static int nheap;
static uint64_t st_t0;              /* smark / scut */
static int st_inflight, st_peak_inflight, st_caught;
static uint64_t st_attempts, st_failed, st_ended, st_shed, st_cut;
static uint64_t st_lost, st_dups, st_reorders, st_resets, st_reset_covered, st_maybe_missing;
/* storm publisher: prepared requests (one per sequence number), one at a time on a new connection */
static int sp_active, sp_stopping, sp_busy, sp_n, sp_next, sp_cur;
static char *sp_buf;
static char **sp_req;
static size_t *sp_len;
static int ntopics = 1;             /* event seq goes to topic seq % ntopics; subscriber i follows topic (path i) % ntopics */
static int64_t *sp_topic_ack;       /* per topic: the last acknowledged seq (-1: none yet) */
static uint8_t *sp_state;           /* 0 not sent, 1 acknowledged (2xx), 2 unknown (no or other answer) */
static uint64_t sp_interval, sp_next_at, sp_t0;
static uint64_t sp_acked, sp_maybe, sp_refused, sp_nonok, sp_skipped;
static int64_t sp_lastack = -1;
static void spub_result(struct conn *c, int status);
static char *read_file(const char *fn, size_t *len);
static void storm_head(struct conn *c);
static void storm_attach(struct conn *c, storm *sm);
static storm *storm_new(void);

/* fd -> connection; sized from RLIMIT_NOFILE at start, loops stop at hifd (highest fd used + 1) */
static conn **conns;
static int maxfd, hifd;
static int ep;
static int port;
static char **paths;
static int npaths;
static size_t path_rr;
static uint64_t now_us_cache;
static int stall_rcvbuf;

/* counters */
static uint64_t total_frames;
static uint64_t sub_reads; /* reads that returned data on reading subscribers */
static uint64_t last_frame_us;
static int open_sub, open_stall, open_pub;
static uint64_t sub_closed_by_peer, stall_closed_by_peer;

/* connect phase */
static int cp_active;
static int cp_kind, cp_target, cp_started, cp_ok, cp_failed, cp_inflight, cp_conc;
static uint64_t cp_t0, cp_deadline, cp_last_ok_us;
static char cp_err[160];

/* latency */
static int lat_on;
static uint32_t *lat;
static size_t nlat, caplat;

/* publish phase */
static int pp_active;
static char *pp_req;
static size_t pp_len;
static uint64_t pp_t0, pp_end, pp_interval, pp_hard_deadline;
static uint64_t pp_sent, pp_ok, pp_bad, pp_skipped, pp_reconnects;
static int pp_firstbad_status;

/* scheduled publishing (latency phase) */
static int sc_active;
static char *sc_buf;
static uint64_t *sc_time;
static char **sc_req;
static size_t *sc_len;
static int sc_n, sc_next, sc_answered;
static uint64_t sc_late_max, sc_late_sum, sc_deadline;

/* drain phase */
static int dr_active;
static uint64_t dr_expected, dr_deadline, dr_idle;
static uint64_t dr_reached;

static char linebuf[1 << 16];
static size_t linelen;
static char rbuf[1 << 18];

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)ru.ru_utime.tv_sec * 1000000u + ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_sec * 1000000u +
         ru.ru_stime.tv_usec;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void reply(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("{");
  vprintf(fmt, ap);
  printf(",\"cpu_us\":%llu,\"now_us\":%llu}\n", (unsigned long long)cpu_us(), (unsigned long long)now_us());
  fflush(stdout);
  va_end(ap);
}

static void ep_set(conn *c, uint32_t ev, int op) {
  struct epoll_event e;
  e.events = ev;
  e.data.fd = c->fd;
  if (epoll_ctl(ep, op, c->fd, &e) < 0 && op != EPOLL_CTL_DEL) perror("epoll_ctl");
}

static void storm_detach(conn *c, int by_peer);
static void conn_free(conn *c, int by_peer) {
  if (c->sm) storm_detach(c, by_peer);
  if (c->kind == K_SUB) {
    open_sub--;
    if (by_peer) sub_closed_by_peer++;
    if (dr_active && c->frames >= dr_expected && dr_reached > 0) dr_reached--;
  } else if (c->kind == K_STALL) {
    open_stall--;
    if (by_peer) stall_closed_by_peer++;
  } else if (c->kind == K_PUB) {
    open_pub--;
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c->hbuf);
  free(c);
}

static void lat_push(uint32_t v) {
  if (nlat == caplat) {
    caplat = caplat ? caplat * 2 : (1 << 20);
    lat = realloc(lat, caplat * sizeof(uint32_t));
    if (!lat) { fprintf(stderr, "oom\n"); exit(1); }
  }
  lat[nlat++] = v;
}

/* ---------------- SSE parsing ---------------- */

static inline void frame_end(conn *c) {
  c->frames++;
  total_frames++;
  last_frame_us = now_us_cache;
  if (lat_on && c->tsdigits) {
    uint64_t d = now_us_cache > c->ts ? now_us_cache - c->ts : 0;
    lat_push(d > 0xffffffffu ? 0xffffffffu : (uint32_t)d);
  }
  if (dr_active && c->frames == dr_expected) dr_reached++;
}

static void storm_feed(conn *c, const char *p, size_t n);
static void sse_feed(conn *c, const char *p, size_t n) {
  if (c->sm) { storm_feed(c, p, n); return; }
  const char *end = p + n;
  while (p < end) {
    if (c->lpos >= 6) { /* skip the rest of a line we do not care about */
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl) return;
      p = nl + 1;
      c->lpos = 0;
      continue;
    }
    char ch = *p++;
    if (ch == '\r') continue;
    if (ch == '\n') {
      if (c->lpos == 0) { /* blank line: dispatch */
        if (c->inframe) frame_end(c);
        c->inframe = 0;
        c->tsdigits = 0;
        c->ts = 0;
      }
      c->lpos = 0;
      continue;
    }
    switch (c->lpos) {
      case 0: c->lpos = (ch == 'd') ? 1 : 7; break;
      case 1: c->lpos = (ch == 'a') ? 2 : 7; break;
      case 2: c->lpos = (ch == 't') ? 3 : 7; break;
      case 3: c->lpos = (ch == 'a') ? 4 : 7; break;
      case 4:
        if (ch != ':') { c->lpos = 7; break; }
        if (c->inframe) { c->lpos = 6; break; }
        c->inframe = 1;
        c->ts = 0;
        c->tsdigits = 0;
        c->lpos = 5;
        break;
      case 5:
        if (ch >= '0' && ch <= '9') {
          c->ts = c->ts * 10 + (uint64_t)(ch - '0');
          if (c->tsdigits < 255) c->tsdigits++;
        } else if ((ch == ' ' || ch == '"') && c->tsdigits == 0) {
          /* skip */
        } else {
          c->lpos = 6;
        }
        break;
    }
  }
}

/* body bytes (after the response head) of a subscriber */
static void body_feed(conn *c, const char *p, size_t n) {
  if (!c->chunked) { sse_feed(c, p, n); return; }
  const char *end = p + n;
  while (p < end) {
    switch (c->cst) {
      case C_SIZE: {
        char ch = *p++;
        if (isxdigit((unsigned char)ch)) {
          c->crem = c->crem * 16 + (uint64_t)(isdigit((unsigned char)ch) ? ch - '0' : (tolower((unsigned char)ch) - 'a' + 10));
        } else if (ch == ';') {
          c->cst = C_EXT;
        } else if (ch == '\n') {
          c->cst = c->crem ? C_DATA : C_TRAILER;
        }
        break;
      }
      case C_EXT:
        if (*p++ == '\n') c->cst = c->crem ? C_DATA : C_TRAILER;
        break;
      case C_DATA: {
        size_t k = (size_t)(end - p);
        if (k > c->crem) k = (size_t)c->crem;
        sse_feed(c, p, k);
        p += k;
        c->crem -= k;
        if (!c->crem) c->cst = C_DCRLF;
        break;
      }
      case C_DCRLF:
        if (*p++ == '\n') { c->cst = C_SIZE; c->crem = 0; }
        break;
      default:
        return; /* end of stream */
    }
  }
}

/* ---------------- connections ---------------- */

static int set_sock(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
}

/* storm mode: subscribers connect from 127.0.0.2, .3, ... (nsrc addresses, round robin) so that
   100,000 connections to one port do not run out of one address's ephemeral ports. The port is
   picked at connect() time for the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT), not at bind(). */
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
static int nsrc;
static unsigned src_rr;
static void bind_source(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7f000002u + (src_rr++ % (unsigned)nsrc));
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) perror("bind source address");
}

static conn *new_conn(int kind) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(cp_err, sizeof cp_err, "socket: %s", strerror(errno));
    return NULL;
  }
  if (fd >= maxfd) { close(fd); snprintf(cp_err, sizeof cp_err, "fd too large"); return NULL; }
  if (fd >= hifd) hifd = fd + 1;
  set_sock(fd);
  if (kind == K_STALL && stall_rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &stall_rcvbuf, sizeof stall_rcvbuf);
  conn *c = calloc(1, sizeof(conn));
  c->fd = fd;
  c->kind = (uint8_t)kind;
  c->st = S_CONNECTING;
  c->connect_start_us = now_us();
  c->next_us = c->connect_start_us;
  conns[fd] = c;
  if (kind == K_SUB) open_sub++;
  else if (kind == K_STALL) open_stall++;
  else if (kind == K_PUB) open_pub++;
  if (kind == K_SUB && nsrc > 0) bind_source(fd);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  if (r < 0 && errno != EINPROGRESS) {
    snprintf(cp_err, sizeof cp_err, "connect: %s", strerror(errno));
    conn_free(c, 0);
    return NULL;
  }
  ep_set(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
  return c;
}

static void cp_fail(conn *c, const char *why) {
  if (!cp_err[0]) snprintf(cp_err, sizeof cp_err, "%s", why);
  cp_failed++;
  cp_inflight--;
  conn_free(c, 0);
}

static void cp_launch(void) {
  while (cp_active && cp_started < cp_target && cp_inflight < cp_conc) {
    cp_started++;
    conn *c = new_conn(cp_kind);
    if (!c) { cp_failed++; continue; }
    cp_inflight++;
    if (storm_on && cp_kind == K_SUB) storm_attach(c, storm_new());
  }
}

static void cp_check_done(void) {
  if (!cp_active) return;
  if (cp_ok + cp_failed >= cp_target || now_us_cache >= cp_deadline) {
    cp_active = 0;
    double el = (double)((cp_last_ok_us > cp_t0 ? cp_last_ok_us : now_us_cache) - cp_t0) / 1e6;
    reply("\"cmd\":\"connect\",\"ok\":%d,\"failed\":%d,\"timedout\":%d,\"elapsed_s\":%.4f,\"err\":\"%s\",\"open_sub\":%d,\"open_stall\":%d",
          cp_ok, cp_failed, cp_target - cp_ok - cp_failed, el, cp_err, open_sub, open_stall);
  }
}

static void pub_send(conn *c);

static int write_request(conn *c) {
  const char *req;
  size_t len;
  char tmp[8192];
  if (c->kind == K_PUB) {
    req = pp_req;
    len = pp_len;
  } else if (c->kind == K_SPUB) {
    req = sp_req[sp_cur];
    len = sp_len[sp_cur];
  } else if (c->sm) {
    /* a browser resuming: its own token, and Last-Event-ID once it has seen an id */
    storm *sm = c->sm;
    int n = snprintf(tmp, sizeof tmp, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n", paths[sm->pidx]);
    if (sm->idlen) n += snprintf(tmp + n, sizeof tmp - (size_t)n, "Last-Event-ID: %.*s\r\n", sm->idlen, sm->lastid);
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, "\r\n");
    req = tmp;
    len = (size_t)n;
  } else {
    const char *path = paths[path_rr++ % (size_t)npaths];
    int n = snprintf(tmp, sizeof tmp, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", path);
    req = tmp;
    len = (size_t)n;
  }
  while (c->woff < len) {
    ssize_t w = write(c->fd, req + c->woff, len - c->woff);
    if (w < 0) {
      if (errno == EAGAIN) return 1; /* wait for EPOLLOUT */
      return -1;
    }
    c->woff += (size_t)w;
  }
  c->woff = 0;
  return 0;
}

static void pub_response_done(conn *c, int status) {
  c->inflight = 0;
  if (c->kind == K_SPUB) { spub_result(c, status); return; }
  if (sc_active) {
    sc_answered++;
    if (status >= 200 && status < 300) pp_ok++;
    else { pp_bad++; if (!pp_firstbad_status) pp_firstbad_status = status; }
    c->st = S_HEAD;
    c->hlen = 0;
    return;
  }
  if (status >= 200 && status < 300) pp_ok++;
  else {
    pp_bad++;
    if (!pp_firstbad_status) pp_firstbad_status = status;
  }
  c->st = S_HEAD;
  c->hlen = 0;
  if (pp_active && now_us_cache < pp_end) {
    if (!pp_interval) pub_send(c);
  }
}

static void pub_send(conn *c) {
  if (c->st == S_CONNECTING) return;
  c->inflight = 1;
  c->st = S_HEAD;
  c->hlen = 0;
  pp_sent++;
  int r = write_request(c);
  if (r < 0) { c->inflight = 0; pp_bad++; }
  else if (r > 0) ep_set(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP, EPOLL_CTL_MOD);
}

/* find end of response head; returns offset after \r\n\r\n or -1 */
static int head_end(const char *b, int n) {
  for (int i = 3; i < n; i++)
    if (b[i] == '\n' && b[i - 1] == '\r' && b[i - 2] == '\n' && b[i - 3] == '\r') return i + 1;
  return -1;
}

static void head_parse(conn *c, int hl, int *status, int *chunked, long *clen) {
  char h[HBUF + 1];
  memcpy(h, c->hbuf, (size_t)hl);
  h[hl] = 0;
  for (int i = 0; i < hl; i++) h[i] = (char)tolower((unsigned char)h[i]);
  *status = (hl > 12) ? atoi(h + 9) : 0;
  const char *te = strstr(h, "\ntransfer-encoding:");
  *chunked = 0;
  if (te) {
    const char *eol = strchr(te + 1, '\n');
    const char *ch = strstr(te, "chunked");
    if (ch && (!eol || ch < eol)) *chunked = 1;
  }
  const char *cl = strstr(h, "\ncontent-length:");
  *clen = cl ? atol(cl + 16) : -1;
}

/* publisher body handling: returns 1 when the response is complete */
static int pub_body(conn *c, const char *p, size_t n, size_t *used) {
  size_t i = 0;
  if (!c->chunked) {
    size_t k = n < c->crem ? n : (size_t)c->crem;
    c->crem -= k;
    *used = k;
    return c->crem == 0;
  }
  while (i < n) {
    char ch = p[i++];
    switch (c->cst) {
      case C_SIZE:
        if (isxdigit((unsigned char)ch))
          c->crem = c->crem * 16 + (uint64_t)(isdigit((unsigned char)ch) ? ch - '0' : (tolower((unsigned char)ch) - 'a' + 10));
        else if (ch == ';') c->cst = C_EXT;
        else if (ch == '\n') { c->cst = c->crem ? C_DATA : C_TRAILER; c->trailer_ls = 1; }
        break;
      case C_EXT:
        if (ch == '\n') { c->cst = c->crem ? C_DATA : C_TRAILER; c->trailer_ls = 1; }
        break;
      case C_DATA:
        c->crem--;
        if (!c->crem) c->cst = C_DCRLF;
        break;
      case C_DCRLF:
        if (ch == '\n') { c->cst = C_SIZE; c->crem = 0; }
        break;
      case C_TRAILER:
        if (ch == '\r') break;
        if (ch == '\n') {
          if (c->trailer_ls) { *used = i; return 1; }
          c->trailer_ls = 1;
        } else c->trailer_ls = 0;
        break;
    }
  }
  *used = i;
  return 0;
}

static void on_readable(conn *c) {
  for (;;) {
    ssize_t r = read(c->fd, rbuf, sizeof rbuf);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
      if (c->kind == K_SPUB) { spub_result(c, -1); return; }
      if (c->kind == K_PUB) {
        int inflight = c->inflight;
        conn_free(c, 1);
        if (inflight) pp_bad++;
        if (pp_active && now_us_cache < pp_end) {
          pp_reconnects++;
          conn *n = new_conn(K_PUB);
          (void)n;
        }
        return;
      }
      if (c->st != S_BODY) c->fail = r == 0 ? FAIL_CLOSED : FAIL_RESET; /* FIN or RST before the head */
      if (c->st != S_BODY && cp_active && !c->sm_rc) { cp_fail(c, r == 0 ? "closed before response head" : strerror(errno)); return; }
      conn_free(c, 1);
      return;
    }
    if (r < 0) return;
    now_us_cache = now_us();
    if (c->kind == K_SUB) sub_reads++;
    const char *p = rbuf;
    size_t n = (size_t)r;
    while (n > 0) {
      if (c->st == S_HEAD) {
        if (!c->hbuf) c->hbuf = malloc(HBUF);
        size_t take = n;
        if ((size_t)c->hlen + take > HBUF) take = HBUF - (size_t)c->hlen;
        memcpy(c->hbuf + c->hlen, p, take);
        int before = c->hlen;
        c->hlen += (int)take;
        int he = head_end(c->hbuf, c->hlen);
        if (he < 0) {
          if (c->hlen >= HBUF) {
            if (c->kind == K_SPUB) { spub_result(c, -1); return; }
            if (c->kind == K_PUB || c->sm_rc) { conn_free(c, 0); return; }
            cp_fail(c, "response head too large");
            return;
          }
          p += take;
          n -= take;
          continue;
        }
        size_t consumed = (size_t)(he - before);
        p += consumed;
        n -= consumed;
        int status, chunked;
        long clen;
        head_parse(c, he, &status, &chunked, &clen);
        c->chunked = (uint8_t)chunked;
        c->cst = C_SIZE;
        c->crem = 0;
        if (c->kind == K_PUB || c->kind == K_SPUB) {
          if (!chunked) c->crem = clen > 0 ? (uint64_t)clen : 0;
          c->st = S_BODY;
          c->hbuf[0] = (char)(status & 0xff); /* keep status across body reads */
          c->hlen = status;
          if (!chunked && c->crem == 0) { pub_response_done(c, status); }
          continue;
        }
        free(c->hbuf);
        c->hbuf = NULL;
        c->hlen = 0;
        if (status != 200) {
          char why[64];
          snprintf(why, sizeof why, "HTTP status %d", status);
          c->fail = FAIL_STATUS;
          st_last_bad_status = status;
          if (c->sm_rc) { conn_free(c, 0); return; }
          cp_fail(c, why);
          return;
        }
        c->st = S_BODY;
        if (c->sm) storm_head(c);
        if (cp_active && !c->sm_rc) {
          cp_ok++;
          cp_inflight--;
          cp_last_ok_us = now_us_cache;
          cp_launch();
          cp_check_done();
        }
        if (c->kind == K_STALL) {
          /* stop reading: only watch for the server closing the connection */
          ep_set(c, EPOLLRDHUP, EPOLL_CTL_MOD);
          return;
        }
        continue;
      }
      if (c->kind == K_PUB || c->kind == K_SPUB) {
        size_t used = 0;
        if (pub_body(c, p, n, &used)) {
          p += used;
          n -= used;
          pub_response_done(c, c->hlen);
        } else {
          p += used;
          n -= used;
        }
        continue;
      }
      body_feed(c, p, n);
      n = 0;
    }
    if ((size_t)r < sizeof rbuf) return;
  }
}

static void on_writable(conn *c) {
  if (c->st == S_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
      if (c->kind == K_PUB) { fprintf(stderr, "publisher connect: %s\n", strerror(err)); conn_free(c, 0); return; }
      if (c->kind == K_SPUB) { spub_result(c, -2); return; }
      c->fail = err == ECONNREFUSED ? FAIL_REFUSED : FAIL_CONNERR;
      if (err != ECONNREFUSED) st_last_connerr = err;
      if (c->sm_rc) { conn_free(c, 0); return; }
      cp_fail(c, strerror(err));
      return;
    }
    c->st = S_HEAD;
    if (c->kind == K_PUB) {
      ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
      if (pp_active && now_us_cache < pp_end && !pp_interval) pub_send(c);
      return;
    }
  }
  int r = write_request(c);
  if (r < 0) {
    if (c->kind == K_PUB) { conn_free(c, 0); return; }
    if (c->kind == K_SPUB) { spub_result(c, -1); return; }
    if (c->sm_rc) { conn_free(c, 0); return; }
    cp_fail(c, "write failed");
    return;
  }
  if (r == 0) ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}


/* ---------------- storm mode ---------------- */

static void heap_swap(int i, int j) {
  storm *t = heap[i];
  heap[i] = heap[j];
  heap[j] = t;
  heap[i]->hidx = i;
  heap[j]->hidx = j;
}
static void heap_push(storm *sm) {
  int i = nheap++;
  heap[i] = sm;
  sm->hidx = i;
  while (i > 0 && heap[(i - 1) / 2]->rc_at > heap[i]->rc_at) { heap_swap(i, (i - 1) / 2); i = (i - 1) / 2; }
}
static storm *heap_pop(void) {
  storm *top = heap[0];
  nheap--;
  if (nheap > 0) {
    heap[0] = heap[nheap];
    heap[0]->hidx = 0;
    int i = 0;
    for (;;) {
      int l = 2 * i + 1, r = l + 1, m = i;
      if (l < nheap && heap[l]->rc_at < heap[m]->rc_at) m = l;
      if (r < nheap && heap[r]->rc_at < heap[m]->rc_at) m = r;
      if (m == i) break;
      heap_swap(i, m);
      i = m;
    }
  }
  top->hidx = -1;
  return top;
}

static void storm_attach(conn *c, storm *sm) {
  c->sm = sm;
  sm->c = c;
  sm->conns++;
  st_attempts++;
  if (++st_inflight > st_peak_inflight) st_peak_inflight = st_inflight;
}

static storm *storm_new(void) {
  if (nsubs == capsubs) {
    capsubs = capsubs ? capsubs * 2 : 4096;
    subs = realloc(subs, (size_t)capsubs * sizeof *subs);
    heap = realloc(heap, (size_t)capsubs * sizeof *heap);
  }
  storm *sm = calloc(1, sizeof *sm);
  sm->pidx = nsubs % npaths;
  sm->topic = sm->pidx % ntopics;
  sm->hidx = -1;
  sm->lastseq = -1;
  sm->retry_ms = rc_default_ms;
  subs[nsubs++] = sm;
  return sm;
}

/* the connection of a storm subscriber closes (by the peer, a failure, or scut) */
static void storm_detach(conn *c, int by_peer) {
  storm *sm = c->sm;
  c->sm = NULL;
  sm->c = NULL;
  int had_head = c->st == S_BODY;
  if (!had_head) { st_inflight--; st_failed++; st_fail[c->fail]++; }
  else if (by_peer) {
    st_ended++;
    if (!c->frames) st_shed++; /* 200, then the end before any event: shed (admission control) */
  }
  if (sm->caught_us) { st_caught--; sm->caught_us = 0; }
  if (!rc_mode) return;
  /* EventSource: after an end or a failed attempt, wait the reconnection time, then try again */
  uint64_t delay_ms = rc_mode == 1 ? sm->retry_ms : had_head ? 0 : rc_fail_ms;
  sm->rc_at = now_us() + delay_ms * 1000u;
  heap_push(sm);
}

static void storm_launch(storm *sm) {
  conn *c = new_conn(K_SUB);
  if (!c) {
    st_attempts++;
    st_failed++;
    st_fail[FAIL_LOCAL]++;
    st_last_local_err = errno;
    sm->rc_at = now_us_cache + (uint64_t)(rc_mode == 1 ? sm->retry_ms : rc_fail_ms) * 1000u;
    heap_push(sm);
    return;
  }
  c->sm_rc = 1;
  storm_attach(c, sm);
}

static void head_timeout_scan(void) {
  if (!rc_head_timeout_us || now_us_cache < rc_next_scan_us) return;
  rc_next_scan_us = now_us_cache + 1000000u;
  for (int i = 0; i < nsubs; i++) {
    conn *c = subs[i]->c;
    if (c && c->st != S_BODY && now_us_cache - c->connect_start_us > rc_head_timeout_us) {
      st_head_timeouts++;
      c->fail = FAIL_TIMEOUT;
      if (cp_active && !c->sm_rc) cp_fail(c, "no response head in time");
      else conn_free(c, 0);
    }
  }
}

static void rc_tick(void) {
  head_timeout_scan();
  while (nheap > 0 && heap[0]->rc_at <= now_us_cache && (!rc_maxinflight || st_inflight < rc_maxinflight))
    storm_launch(heap_pop());
}

static void storm_head(conn *c) {
  storm *sm = c->sm;
  sm->head_us = now_us_cache;
  sm->reset_conn = 0;
  st_inflight--;
  /* caught up = has every event of its topic acknowledged before this head (maybe already) */
  sm->target = sp_topic_ack ? sp_topic_ack[sm->topic] : -1;
  if (sm->head_us > st_t0 && sm->lastseq >= sm->target && !sm->caught_us) {
    sm->caught_us = now_us_cache;
    st_caught++;
  }
}

/* a complete event (or sse:reset) on a storm subscriber */
static void storm_frame(conn *c) {
  storm *sm = c->sm;
  c->frames++;
  total_frames++;
  last_frame_us = now_us_cache;
  if (c->evreset) {
    sm->resets++;
    st_resets++;
    sm->after_reset = 1;
    sm->reset_conn = 1;
    /* told to rebuild its state: from here on everything is live, as caught up as it can be */
    if (!sm->caught_us && sm->head_us > st_t0) {
      sm->caught_us = now_us_cache;
      st_caught++;
    }
    return;
  }
  if (!c->tsdigits) return;
  int64_t seq = (int64_t)c->ts;
  if (sm->lastseq >= 0 && seq <= sm->lastseq) {
    if (seq == sm->lastseq) { sm->dups++; st_dups++; }  /* (a gap of ntopics, not 1, between events of one topic) */
    else { sm->reorders++; st_reorders++; }
    return;
  }
  for (int64_t q = sm->lastseq >= 0 ? sm->lastseq + ntopics : sm->topic; q < seq; q += ntopics) {
    if (q < sp_n && sp_state[q] != 1) st_maybe_missing++;   /* never acknowledged: may be missing */
    else if (sm->after_reset) st_reset_covered++;         /* missed, but the server said so */
    else { sm->lost++; st_lost++; }                       /* silently lost */
  }
  sm->after_reset = 0;
  sm->lastseq = seq;
  /* caught up: an event published after this connection's head arrived, with nothing missing before it */
  if (!sm->caught_us && sm->head_us > st_t0 && seq >= sm->target) {
    sm->caught_us = now_us_cache;
    st_caught++;
  }
}

/* SSE field parser for storm subscribers (the fast path in sse_feed only looks at data lines) */
enum { F_NAME = 0, F_DATA, F_ID, F_EVENT, F_RETRY, F_SKIP };
static const char RESET_EVENT[] = "sse:reset";

static void storm_line_end(conn *c) {
  storm *sm = c->sm;
  switch (c->fst) {
    case F_NAME:
      if (c->fnlen == 0) { /* blank line: dispatch */
        if (c->inframe) storm_frame(c);
        c->inframe = 0;
        c->tsdigits = 0;
        c->ts = 0;
        c->evreset = 0;
      } else if (c->fnlen == 4 && !memcmp(c->fname, "data", 4)) {
        if (!c->inframe) { c->inframe = 1; c->tsdigits = 0; c->ts = 0; }
      } else if (c->fnlen == 5 && !memcmp(c->fname, "event", 5)) {
        c->evreset = 0;
      } else if (c->fnlen == 2 && !memcmp(c->fname, "id", 2)) {
        sm->idlen = 0;
      }
      break;
    case F_ID:
      memcpy(sm->lastid, c->idtmp, c->idlen);
      sm->idlen = c->idlen;
      break;
    case F_EVENT:
      c->evreset = c->evpos == sizeof RESET_EVENT - 1;
      break;
    case F_RETRY:
      if (c->rvalid) sm->retry_ms = c->racc;
      break;
  }
  c->fst = F_NAME;
  c->fnlen = 0;
}

static void storm_feed(conn *c, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char ch = p[i];
    if (ch == '\r') continue;
    if (ch == '\n') { storm_line_end(c); continue; }
    switch (c->fst) {
      case F_NAME:
        if (ch != ':') {
          if (c->fnlen < sizeof c->fname) c->fname[c->fnlen] = ch;
          if (c->fnlen < 255) c->fnlen++;
          break;
        }
        if (c->fnlen == 0) { c->fst = F_SKIP; break; } /* a comment */
        c->skipsp = 1;
        if (c->fnlen == 4 && !memcmp(c->fname, "data", 4)) {
          c->fst = F_DATA;
          c->dfirst = !c->inframe;
          if (!c->inframe) { c->inframe = 1; c->tsdigits = 0; c->ts = 0; }
        } else if (c->fnlen == 2 && !memcmp(c->fname, "id", 2)) {
          c->fst = F_ID;
          c->idlen = 0;
        } else if (c->fnlen == 5 && !memcmp(c->fname, "event", 5)) {
          c->fst = F_EVENT;
          c->evpos = 0;
        } else if (c->fnlen == 5 && !memcmp(c->fname, "retry", 5)) {
          c->fst = F_RETRY;
          c->racc = 0;
          c->rvalid = 1;
        } else c->fst = F_SKIP;
        break;
      case F_SKIP:
        break;
      default:
        if (c->skipsp) { c->skipsp = 0; if (ch == ' ') break; }
        if (c->fst == F_DATA) {
          if (!c->dfirst) break;
          if (ch >= '0' && ch <= '9') { c->ts = c->ts * 10 + (uint64_t)(ch - '0'); if (c->tsdigits < 255) c->tsdigits++; }
          else { c->dfirst = 0; c->tsdigits = 0; } /* not a sequence number */
        } else if (c->fst == F_ID) {
          if (c->idlen < sizeof c->idtmp) c->idtmp[c->idlen++] = ch;
        } else if (c->fst == F_EVENT) {
          if (c->evpos < sizeof RESET_EVENT - 1 && ch == RESET_EVENT[c->evpos]) c->evpos++;
          else c->evpos = 255;
        } else if (c->fst == F_RETRY) {
          if (ch >= '0' && ch <= '9' && c->racc < 100000000u) c->racc = c->racc * 10 + (uint32_t)(ch - '0');
          else c->rvalid = 0;
        }
    }
  }
}

/*
 * Storm publisher: one keep-alive connection, one request at a time (so the server sees the
 * events in sequence order), opened again when it closes. status > 0: answered (the connection
 * stays); -1: the connection closed (the request in flight, if any, may or may not have been
 * published); -2: connecting failed (nothing reached the server: the same event is sent again).
 */
static conn *sp_conn;
static void spub_result(conn *c, int status) {
  int seq = sp_cur;
  if (status > 0) {
    c->st = S_HEAD;
    c->hlen = 0;
  } else {
    conn_free(c, 0);
    sp_conn = NULL;
  }
  if (!sp_busy) return; /* an idle keep-alive connection closed */
  sp_busy = 0;
  if (status == -2) { sp_refused++; return; }
  if (status >= 200 && status < 300) {
    sp_state[seq] = 1;
    sp_acked++;
    sp_lastack = seq;
    sp_topic_ack[seq % ntopics] = seq;
  } else {
    /* no answer or an error answer: it may or may not have been published */
    sp_state[seq] = 2;
    sp_maybe++;
    if (status > 0) sp_nonok++;
  }
  sp_next++;
}

static void spub_tick(void) {
  if (!sp_active || sp_stopping || now_us_cache < sp_next_at) return;
  sp_next_at += sp_interval;
  while (sp_next_at <= now_us_cache) { sp_next_at += sp_interval; sp_skipped++; }
  if (sp_busy) { sp_skipped++; return; }
  if (sp_next >= sp_n) return;
  sp_cur = sp_next;
  if (!sp_conn) {
    sp_conn = new_conn(K_SPUB); /* the request goes out once connected (on_writable) */
    if (!sp_conn) { sp_refused++; return; }
    sp_busy = 1;
    return;
  }
  sp_busy = 1;
  sp_conn->hlen = 0;
  int r = write_request(sp_conn);
  if (r < 0) { spub_result(sp_conn, -1); return; }
  if (r > 0) ep_set(sp_conn, EPOLLIN | EPOLLOUT | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void spub_check(void) {
  if (!sp_active || !sp_stopping || sp_busy) return;
  sp_active = 0;
  reply("\"cmd\":\"spstop\",\"next\":%d,\"acked\":%llu,\"maybe\":%llu,\"refused\":%llu,\"nonok\":%llu,\"skipped\":%llu,"
        "\"last_acked\":%lld,\"elapsed_s\":%.3f",
        sp_next, (unsigned long long)sp_acked, (unsigned long long)sp_maybe, (unsigned long long)sp_refused,
        (unsigned long long)sp_nonok, (unsigned long long)sp_skipped, (long long)sp_lastack, (double)(now_us_cache - sp_t0) / 1e6);
}

/* every subscriber's last head and caught-up times (CLOCK_MONOTONIC µs, 0: none), one line each, for percentiles */
static int storm_dump(const char *fn) {
  FILE *f = fopen(fn, "w");
  if (!f) return -1;
  for (int i = 0; i < nsubs; i++) {
    storm *sm = subs[i];
    int open = sm->c && sm->c->st == S_BODY;
    fprintf(f, "%llu %llu\n", (unsigned long long)(open && sm->head_us > st_t0 ? sm->head_us : 0), (unsigned long long)(open ? sm->caught_us : 0));
  }
  fclose(f);
  return nsubs;
}

static void storm_stat(void) {
  int open = 0, connecting = 0, waiting = 0, gone = 0, back = 0, caught = 0, with_loss = 0, with_dup = 0, with_reset = 0, behind = 0;
  int64_t minseq = INT64_MAX, maxseq = -1;
  uint32_t maxlost = 0, maxconns = 0;
  for (int i = 0; i < nsubs; i++) {
    storm *sm = subs[i];
    if (sm->c && sm->c->st == S_BODY) {
      open++;
      if (sm->head_us > st_t0) back++;
      if (sm->caught_us) caught++;
    } else if (sm->c) connecting++;
    else if (sm->hidx >= 0) waiting++;
    else gone++;
    if (sm->lastseq < minseq) minseq = sm->lastseq;
    /* lacks an acknowledged event, one that no sse:reset excused (acknowledged before the reset's connection) */
    if (sp_topic_ack && sm->lastseq < sp_topic_ack[sm->topic] && !(sm->reset_conn && sp_topic_ack[sm->topic] <= sm->target)) behind++;
    if (sm->lastseq > maxseq) maxseq = sm->lastseq;
    if (sm->lost) with_loss++;
    if (sm->dups || sm->reorders) with_dup++;
    if (sm->resets) with_reset++;
    if (sm->lost > maxlost) maxlost = sm->lost;
    if (sm->conns > maxconns) maxconns = sm->conns;
  }
  if (minseq == INT64_MAX) minseq = -1;
  reply("\"cmd\":\"sstat\",\"subs\":%d,\"open\":%d,\"connecting\":%d,\"waiting\":%d,\"gone\":%d,\"back\":%d,\"caught\":%d,"
        "\"inflight\":%d,\"peak_inflight\":%d,\"attempts\":%llu,\"failed\":%llu,\"ended\":%llu,\"shed\":%llu,\"cut\":%llu,"
        "\"lost\":%llu,\"dups\":%llu,\"reorders\":%llu,\"resets\":%llu,\"reset_covered\":%llu,\"maybe_missing\":%llu,"
        "\"subs_with_loss\":%d,\"max_lost\":%u,\"subs_with_dup_or_reorder\":%d,\"subs_with_reset\":%d,\"max_conns\":%u,\"behind\":%d,\"head_timeouts\":%llu,\"fail_closed\":%llu,\"fail_reset\":%llu,\"fail_refused\":%llu,\"fail_connerr\":%llu,\"fail_status\":%llu,\"fail_local\":%llu,\"last_bad_status\":%d,\"last_connerr\":\"%s\",\"last_local_err\":\"%s\","
        "\"min_seq\":%lld,\"max_seq\":%lld,\"since_mark_ms\":%.1f",
        nsubs, open, connecting, waiting, gone, back, caught, st_inflight, st_peak_inflight, (unsigned long long)st_attempts,
        (unsigned long long)st_failed, (unsigned long long)st_ended, (unsigned long long)st_shed, (unsigned long long)st_cut, (unsigned long long)st_lost,
        (unsigned long long)st_dups, (unsigned long long)st_reorders, (unsigned long long)st_resets,
        (unsigned long long)st_reset_covered, (unsigned long long)st_maybe_missing, with_loss, maxlost, with_dup, with_reset,
        maxconns, behind, (unsigned long long)st_head_timeouts, (unsigned long long)st_fail[FAIL_CLOSED], (unsigned long long)st_fail[FAIL_RESET], (unsigned long long)st_fail[FAIL_REFUSED],
        (unsigned long long)st_fail[FAIL_CONNERR], (unsigned long long)st_fail[FAIL_STATUS], (unsigned long long)st_fail[FAIL_LOCAL], st_last_bad_status,
        st_last_connerr ? strerror(st_last_connerr) : "", st_last_local_err ? strerror(st_last_local_err) : "", (long long)minseq, (long long)maxseq, st_t0 ? (double)(now_us_cache - st_t0) / 1000.0 : 0.0);
}

static void storm_mark(uint64_t t0) {
  st_t0 = t0 ? t0 : now_us_cache;
  for (int i = 0; i < nsubs; i++) subs[i]->caught_us = 0;
  st_caught = 0;
  st_peak_inflight = st_inflight;
  st_attempts = st_failed = st_ended = st_shed = st_cut = 0;
  memset(st_fail, 0, sizeof st_fail);
}

/*
 * The publisher's per-event send times and answers, in a file every client process maps
 * (MAP_SHARED): with 100,000 subscribers there are several client processes (the open-file
 * limit), one of them publishing, and each needs the send times to judge "caught up".
 */
static int sp_mapped;
static int storm_shm(const char *fn, int n, int creator) {
  int fd = open(fn, O_RDWR);
  if (fd < 0 || n <= 0) return -1;
  size_t bytes = (size_t)ntopics * 8 + (size_t)n;
  if (ftruncate(fd, (off_t)bytes) < 0) { close(fd); return -1; }
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return -1;
  sp_topic_ack = (int64_t *)m;
  sp_state = (uint8_t *)m + (size_t)ntopics * 8;
  if (creator) for (int t = 0; t < ntopics; t++) sp_topic_ack[t] = -1; /* before any other process maps it */
  sp_n = n;
  sp_mapped = 1;
  return n;
}

/* the storm publisher's file: records "<length>\n<length bytes of raw HTTP request>", request i carries event i */
static int spub_load(const char *fn) {
  size_t len;
  free(sp_buf);
  sp_buf = read_file(fn, &len);
  if (!sp_buf) return -1;
  int cap = 1024, limit = sp_mapped ? sp_n : INT32_MAX;
  sp_n = 0;
  sp_req = realloc(NULL, (size_t)cap * sizeof *sp_req);
  sp_len = realloc(NULL, (size_t)cap * sizeof *sp_len);
  size_t off = 0;
  while (off < len && sp_n < limit) {
    char *endp;
    unsigned long l = strtoul(sp_buf + off, &endp, 10);
    if (*endp != '\n') break;
    if (sp_n == cap) {
      cap *= 2;
      sp_req = realloc(sp_req, (size_t)cap * sizeof *sp_req);
      sp_len = realloc(sp_len, (size_t)cap * sizeof *sp_len);
    }
    sp_req[sp_n] = endp + 1;
    sp_len[sp_n] = l;
    sp_n++;
    off = (size_t)(endp + 1 - sp_buf) + l;
  }
  if (sp_mapped) return sp_n; /* storm_shm's arrays (only the first sp_n requests are sent) */
  sp_topic_ack = calloc((size_t)ntopics, sizeof *sp_topic_ack);
  for (int t = 0; t < ntopics; t++) sp_topic_ack[t] = -1;
  sp_state = calloc((size_t)sp_n + 1, 1);
  return sp_n;
}

/* ---------------- commands ---------------- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void counters_reply(const char *cmd, const char *extra) {
  uint64_t mn = UINT64_MAX, mx = 0;
  for (int fd = 0; fd < hifd; fd++) {
    conn *c = conns[fd];
    if (!c || c->kind != K_SUB || c->st != S_BODY) continue;
    if (c->frames < mn) mn = c->frames;
    if (c->frames > mx) mx = c->frames;
  }
  if (mn == UINT64_MAX) mn = 0;
  reply("\"cmd\":\"%s\"%s,\"total_frames\":%llu,\"min_frames\":%llu,\"max_frames\":%llu,\"open_sub\":%d,\"open_stall\":%d,"
        "\"sub_closed_by_peer\":%llu,\"stall_closed_by_peer\":%llu,\"last_frame_us\":%llu,\"reads\":%llu",
        cmd, extra, (unsigned long long)total_frames, (unsigned long long)mn, (unsigned long long)mx, open_sub, open_stall,
        (unsigned long long)sub_closed_by_peer, (unsigned long long)stall_closed_by_peer,
        (unsigned long long)last_frame_us, (unsigned long long)sub_reads);
}

static void dr_check(void) {
  if (!dr_active) return;
  int done = 0;
  const char *why = "";
  if (dr_reached >= (uint64_t)open_sub) { done = 1; why = "complete"; }
  else if (now_us_cache >= dr_deadline) { done = 1; why = "timeout"; }
  else if (last_frame_us && now_us_cache - last_frame_us >= dr_idle) { done = 1; why = "idle"; }
  if (done) {
    dr_active = 0;
    char extra[64];
    snprintf(extra, sizeof extra, ",\"why\":\"%s\"", why);
    counters_reply("drain", extra);
  }
}

static void pp_check(void) {
  if (!pp_active) return;
  if (now_us_cache < pp_end) return;
  int inflight = 0;
  for (int fd = 0; fd < hifd; fd++)
    if (conns[fd] && conns[fd]->kind == K_PUB && conns[fd]->inflight) inflight++;
  if (inflight && now_us_cache < pp_hard_deadline) return;
  pp_active = 0;
  for (int fd = 0; fd < hifd; fd++)
    if (conns[fd] && conns[fd]->kind == K_PUB) conn_free(conns[fd], 0);
  reply("\"cmd\":\"pub\",\"sent\":%llu,\"ok\":%llu,\"bad\":%llu,\"first_bad_status\":%d,\"skipped\":%llu,\"reconnects\":%llu,"
        "\"unanswered\":%d,\"t0_us\":%llu,\"elapsed_s\":%.4f",
        (unsigned long long)pp_sent, (unsigned long long)pp_ok, (unsigned long long)pp_bad, pp_firstbad_status,
        (unsigned long long)pp_skipped, (unsigned long long)pp_reconnects, inflight, (unsigned long long)pp_t0,
        (double)(now_us_cache - pp_t0) / 1e6);
}

static void sc_tick(void) {
  if (!sc_active) return;
  conn *pc = NULL;
  for (int fd = 0; fd < hifd && !pc; fd++)
    if (conns[fd] && conns[fd]->kind == K_PUB) pc = conns[fd];
  if (sc_next < sc_n && pc && pc->st != S_CONNECTING && !pc->inflight) {
    uint64_t t = now_us();
    if (t >= sc_time[sc_next]) {
      uint64_t late = t - sc_time[sc_next];
      if (late > sc_late_max) sc_late_max = late;
      sc_late_sum += late;
      pp_req = sc_req[sc_next];
      pp_len = sc_len[sc_next];
      sc_next++;
      pub_send(pc);
    }
  }
  if ((sc_next >= sc_n && sc_answered >= sc_n) || now_us_cache > sc_deadline || !pc) {
    sc_active = 0;
    if (pc) conn_free(pc, 0);
    pp_req = NULL;
    reply("\"cmd\":\"sched\",\"sent\":%d,\"ok\":%llu,\"bad\":%llu,\"first_bad_status\":%d,\"late_max_us\":%llu,\"late_avg_us\":%.1f",
          sc_next, (unsigned long long)pp_ok, (unsigned long long)pp_bad, pp_firstbad_status,
          (unsigned long long)sc_late_max, sc_next ? (double)sc_late_sum / sc_next : 0.0);
    free(sc_buf); free(sc_time); free(sc_req); free(sc_len);
    sc_buf = NULL;
  }
}

static void pp_tick(void) {
  if (!pp_active || !pp_interval || now_us_cache >= pp_end) return;
  for (int fd = 0; fd < hifd; fd++) {
    conn *c = conns[fd];
    if (!c || c->kind != K_PUB || c->st == S_CONNECTING) continue;
    while (now_us_cache >= c->next_us) {
      c->next_us += pp_interval;
      if (c->inflight) { pp_skipped++; continue; }
      pub_send(c);
    }
  }
}

static char *read_file(const char *fn, size_t *len) {
  FILE *f = fopen(fn, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (fread(b, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(b); return NULL; }
  b[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void command(char *line) {
  char a[64] = "", b[64] = "", c3[64] = "", d[64] = "", e[4096] = "";
  int na = sscanf(line, "%63s %63s %63s %63s %4095s", a, b, c3, d, e);
  if (na <= 0) return;
  now_us_cache = now_us();
  if (!strcmp(a, "paths")) {
    size_t len;
    char *buf = read_file(b, &len);
    if (!buf) { reply("\"cmd\":\"paths\",\"error\":\"cannot read %s\"", b); return; }
    npaths = 0;
    for (size_t i = 0; i < len; i++) if (buf[i] == '\n') npaths++;
    paths = calloc((size_t)npaths + 1, sizeof(char *));
    int k = 0;
    char *s = buf;
    for (size_t i = 0; i < len; i++)
      if (buf[i] == '\n') { buf[i] = 0; if (*s) paths[k++] = s; s = buf + i + 1; }
    npaths = k;
    reply("\"cmd\":\"paths\",\"count\":%d", npaths);
  } else if (!strcmp(a, "connect")) {
    if (!npaths) { reply("\"cmd\":\"connect\",\"error\":\"no paths\""); return; }
    cp_kind = !strcmp(b, "stall") ? K_STALL : K_SUB;
    cp_target = atoi(c3);
    cp_conc = atoi(d);
    if (cp_conc < 1) cp_conc = 1;
    cp_started = cp_ok = cp_failed = cp_inflight = 0;
    cp_err[0] = 0;
    cp_t0 = now_us();
    cp_last_ok_us = 0;
    cp_deadline = cp_t0 + (uint64_t)atol(e) * 1000u;
    cp_active = 1;
    cp_launch();
    cp_check_done();
  } else if (!strcmp(a, "stallrcvbuf")) {
    stall_rcvbuf = atoi(b);
    reply("\"cmd\":\"stallrcvbuf\",\"bytes\":%d", stall_rcvbuf);
  } else if (!strcmp(a, "reset")) {
    for (int fd = 0; fd < hifd; fd++) if (conns[fd]) conns[fd]->frames = 0;
    total_frames = 0;
    sub_reads = 0;
    last_frame_us = 0;
    sub_closed_by_peer = stall_closed_by_peer = 0;
    reply("\"cmd\":\"reset\"");
  } else if (!strcmp(a, "lat")) {
    lat_on = !strcmp(b, "on");
    if (lat_on) nlat = 0;
    reply("\"cmd\":\"lat\",\"on\":%d", lat_on);
  } else if (!strcmp(a, "latreport")) {
    if (!nlat) { reply("\"cmd\":\"latreport\",\"count\":0"); return; }
    qsort(lat, nlat, sizeof(uint32_t), cmp_u32);
#define PCT(q) lat[(size_t)((double)(nlat - 1) * (q))]
    reply("\"cmd\":\"latreport\",\"count\":%zu,\"min_us\":%u,\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"max_us\":%u",
          nlat, lat[0], PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), lat[nlat - 1]);
    nlat = 0;
  } else if (!strcmp(a, "pub")) {
    int k = atoi(b);
    free(pp_req);
    pp_req = read_file(e, &pp_len);
    if (!pp_req) { reply("\"cmd\":\"pub\",\"error\":\"cannot read %s\"", e); return; }
    pp_t0 = now_us();
    pp_end = pp_t0 + (uint64_t)atol(c3) * 1000u;
    pp_hard_deadline = pp_end + 10000000u;
    pp_interval = (uint64_t)atol(d);
    pp_sent = pp_ok = pp_bad = pp_skipped = pp_reconnects = 0;
    pp_firstbad_status = 0;
    pp_active = 1;
    for (int i = 0; i < k; i++) {
      conn *pc = new_conn(K_PUB);
      if (pc) pc->next_us = pp_t0 + (pp_interval ? (pp_interval * (uint64_t)i) / (uint64_t)k : 0);
    }
  } else if (!strcmp(a, "sched")) {
    size_t len;
    free(pp_req);
    pp_req = NULL;
    sc_buf = read_file(b, &len);
    if (!sc_buf) { reply("\"cmd\":\"sched\",\"error\":\"cannot read %s\"", b); return; }
    int cap = 1024;
    sc_time = calloc((size_t)cap, sizeof *sc_time);
    sc_req = calloc((size_t)cap, sizeof *sc_req);
    sc_len = calloc((size_t)cap, sizeof *sc_len);
    sc_n = 0;
    size_t off = 0;
    while (off < len && sc_n < cap) {
      char *endp;
      unsigned long long t = strtoull(sc_buf + off, &endp, 10);
      unsigned long l = strtoul(endp, &endp, 10);
      if (*endp != '\n') break;
      sc_time[sc_n] = t;
      sc_req[sc_n] = endp + 1;
      sc_len[sc_n] = l;
      sc_n++;
      off = (size_t)(endp + 1 - sc_buf) + l;
    }
    sc_next = sc_answered = 0;
    sc_late_max = sc_late_sum = 0;
    pp_ok = pp_bad = pp_sent = 0;
    pp_firstbad_status = 0;
    sc_deadline = (sc_n ? sc_time[sc_n - 1] : now_us_cache) + 15000000u;
    sc_active = 1;
    if (!new_conn(K_PUB)) { sc_active = 0; reply("\"cmd\":\"sched\",\"error\":\"connect failed\""); }
  } else if (!strcmp(a, "drain")) {
    dr_expected = (uint64_t)atoll(b);
    dr_deadline = now_us_cache + (uint64_t)atol(c3) * 1000u;
    dr_idle = (uint64_t)atol(d) * 1000u;
    dr_reached = 0;
    for (int fd = 0; fd < hifd; fd++)
      if (conns[fd] && conns[fd]->kind == K_SUB && conns[fd]->frames >= dr_expected) dr_reached++;
    if (!last_frame_us) last_frame_us = now_us_cache;
    dr_active = 1;
    dr_check();
  } else if (!strcmp(a, "count")) {
    counters_reply("count", "");
  } else if (!strcmp(a, "close")) {
    int kind = !strcmp(b, "stall") ? K_STALL : !strcmp(b, "sub") ? K_SUB : 0;
    int n = 0;
    for (int fd = 0; fd < hifd; fd++)
      if (conns[fd] && conns[fd]->kind != K_PUB && (!kind || conns[fd]->kind == kind)) { conn_free(conns[fd], 0); n++; }
    reply("\"cmd\":\"close\",\"closed\":%d", n);
  } else if (!strcmp(a, "storm")) {
    storm_on = !strcmp(b, "on");
    if (atoi(c3) > 0) ntopics = atoi(c3);
    reply("\"cmd\":\"storm\",\"on\":%d,\"topics\":%d", storm_on, ntopics);
  } else if (!strcmp(a, "srcaddrs")) {
    nsrc = atoi(b);
    reply("\"cmd\":\"srcaddrs\",\"n\":%d", nsrc);
  } else if (!strcmp(a, "sreconnect")) {
    rc_mode = !strcmp(b, "honour") ? 1 : !strcmp(b, "now") ? 2 : 0;
    if (atoi(c3) > 0) rc_default_ms = (uint32_t)atoi(c3);
    if (atoi(d) > 0) rc_fail_ms = (uint32_t)atoi(d);
    rc_maxinflight = atoi(e);
    rc_head_timeout_us = 60000000u; /* a minute: longer than any SYN backoff we wait out in a storm */
    for (int i = 0; i < nsubs; i++) if (subs[i]->retry_ms == 0) subs[i]->retry_ms = rc_default_ms;
    reply("\"cmd\":\"sreconnect\",\"mode\":%d,\"default_ms\":%u,\"fail_ms\":%u,\"max_inflight\":%d", rc_mode, rc_default_ms,
          rc_fail_ms, rc_maxinflight);
  } else if (!strcmp(a, "smark")) {
    storm_mark((uint64_t)atoll(b));
    reply("\"cmd\":\"smark\",\"t0_us\":%llu", (unsigned long long)st_t0);
  } else if (!strcmp(a, "scut")) {
    /* every connection closed at once by the client (a network blip); they come back per sreconnect */
    storm_mark((uint64_t)atoll(b));
    int n = 0;
    for (int i = 0; i < nsubs; i++)
      if (subs[i]->c) { conn_free(subs[i]->c, 0); n++; }
    st_cut = (uint64_t)n;
    reply("\"cmd\":\"scut\",\"closed\":%d,\"t0_us\":%llu", n, (unsigned long long)st_t0);
  } else if (!strcmp(a, "sstat")) {
    storm_stat();
  } else if (!strcmp(a, "sdump")) {
    int n = storm_dump(b);
    if (n < 0) reply("\"cmd\":\"sdump\",\"error\":\"cannot write %s\"", b);
    else reply("\"cmd\":\"sdump\",\"subs\":%d", n);
  } else if (!strcmp(a, "sshm")) {
    if (storm_shm(b, atoi(c3), atoi(d)) < 0) reply("\"cmd\":\"sshm\",\"error\":\"cannot map %s\"", b);
    else reply("\"cmd\":\"sshm\",\"events\":%d", sp_n);
  } else if (!strcmp(a, "spub")) {
    if (spub_load(b) < 0) { reply("\"cmd\":\"spub\",\"error\":\"cannot read %s\"", b); return; }
    sp_interval = (uint64_t)atol(c3);
    if (sp_interval < 1) sp_interval = 1;
    sp_t0 = sp_next_at = now_us_cache;
    sp_next = 0;
    sp_busy = sp_stopping = 0;
    sp_acked = sp_maybe = sp_refused = sp_nonok = sp_skipped = 0;
    sp_lastack = -1;
    sp_active = 1;
    reply("\"cmd\":\"spub\",\"events\":%d,\"t0_us\":%llu", sp_n, (unsigned long long)sp_t0);
  } else if (!strcmp(a, "spstop")) {
    sp_stopping = 1;
    spub_check();
  } else if (!strcmp(a, "quit")) {
    reply("\"cmd\":\"quit\"");
    exit(0);
  } else {
    reply("\"cmd\":\"%s\",\"error\":\"unknown command\"", a);
  }
}

static void on_stdin(void) {
  for (;;) {
    ssize_t r = read(0, linebuf + linelen, sizeof linebuf - linelen - 1);
    if (r == 0) exit(0); /* parent went away */
    if (r < 0) return;
    linelen += (size_t)r;
    char *s = linebuf;
    char *nl;
    while ((nl = memchr(s, '\n', linelen - (size_t)(s - linebuf)))) {
      *nl = 0;
      command(s);
      s = nl + 1;
    }
    linelen -= (size_t)(s - linebuf);
    memmove(linebuf, s, linelen);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: loadclient PORT\n"); return 2; }
  port = atoi(argv[1]);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  maxfd = rl.rlim_cur > (1u << 21) ? (1 << 21) : (int)rl.rlim_cur;
  conns = calloc((size_t)maxfd, sizeof *conns);
  ep = epoll_create1(EPOLL_CLOEXEC);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN, .data.fd = 0};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
  static struct epoll_event evs[4096];
  reply("\"cmd\":\"ready\",\"nofile\":%llu", (unsigned long long)rl.rlim_cur);
  for (;;) {
    int timeout = -1;
    if (cp_active || dr_active || pp_active || sc_active || sp_active) timeout = 10;
    if (nheap > 0 || sp_active) {
      uint64_t t = now_us();
      uint64_t next = nheap > 0 ? heap[0]->rc_at : UINT64_MAX;
      if (sp_active && !sp_stopping && sp_next_at < next) next = sp_next_at;
      if (next != UINT64_MAX) {
        int ms = next > t ? (int)((next - t + 999) / 1000) : 0;
        if (timeout < 0 || ms < timeout) timeout = ms;
      }
    }
    if (sc_active && sc_next < sc_n) {
      uint64_t t = now_us();
      if (sc_time[sc_next] <= t + 2000) timeout = 0; /* spin to send on time */
      else if ((sc_time[sc_next] - t - 2000) / 1000 < (uint64_t)timeout) timeout = (int)((sc_time[sc_next] - t - 2000) / 1000);
    }
    if (pp_active && pp_interval) {
      uint64_t t = now_us();
      uint64_t next = UINT64_MAX;
      for (int fd = 0; fd < hifd; fd++)
        if (conns[fd] && conns[fd]->kind == K_PUB && conns[fd]->next_us < next) next = conns[fd]->next_us;
      if (next != UINT64_MAX) {
        int ms = next > t ? (int)((next - t + 999) / 1000) : 0;
        if (ms < timeout) timeout = ms;
      }
    }
    int n = epoll_wait(ep, evs, 4096, timeout);
    now_us_cache = now_us();
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      uint32_t ev = evs[i].events;
      if (fd == 0) { on_stdin(); continue; }
      conn *c = conns[fd];
      if (!c) continue;
      if (c->kind == K_STALL && c->st == S_BODY) {
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_free(c, 1);
        continue;
      }
      if (ev & (EPOLLOUT)) { on_writable(c); c = conns[fd]; if (!c) continue; }
      if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
    now_us_cache = now_us();
    if (cp_active) { cp_launch(); cp_check_done(); }
    pp_tick();
    pp_check();
    sc_tick();
    dr_check();
    rc_tick();
    spub_tick();
    spub_check();
  }
}
