// Load generator for bench/echo.bench.mjs: one epoll loop in C, so the client is not the bottleneck.
//   loadgen rr   HOST PORT CONNS MSGSIZE SECONDS   echo round trips: each connection sends MSGSIZE bytes,
//                                                 waits for all of them back, repeats. Prints JSON.
//   loadgen idle HOST PORT CONNS                  opens CONNS connections, prints "connected N", holds
//                                                 them until stdin closes.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static struct sockaddr_storage addr;
static socklen_t addrlen;

static void resolve(const char *host, const char *port) {
  struct addrinfo hints = {0}, *res;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &res) != 0) die("getaddrinfo");
  memcpy(&addr, res->ai_addr, res->ai_addrlen);
  addrlen = res->ai_addrlen;
  freeaddrinfo(res);
}

static int open_conn(void) {
  int fd = socket(addr.ss_family, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0) die("connect");
  return fd;
}

typedef struct {
  int fd;
  size_t sent, got;
} conn_t;

static int rr(int conns, size_t size, double seconds) {
  char *out = malloc(size), *in = malloc(size > 65536 ? size : 65536);
  memset(out, 'x', size);
  conn_t *cs = calloc(conns, sizeof *cs);
  int ep = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    cs[i].fd = open_conn();
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0) die("epoll_ctl");
  }
  // Writes of up to 16 KiB fit the socket buffer: a blocking write here never stalls the loop.
  for (int i = 0; i < conns; i++)
    if (write(cs[i].fd, out, size) != (ssize_t)size) die("write");
  struct epoll_event evs[256];
  double warm = now() + 0.3, end = warm + seconds;
  long count = 0, total = 0;
  int measuring = 0;
  double t0 = 0;
  for (;;) {
    int n = epoll_wait(ep, evs, 256, 1000);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; k++) {
      conn_t *c = &cs[evs[k].data.u32];
      ssize_t r = read(c->fd, in, size - c->got);
      if (r <= 0) {
        fprintf(stderr, "connection closed by the server\n");
        return 1;
      }
      c->got += r;
      if (c->got == size) {
        c->got = 0;
        count++;
        total++;
        if (write(c->fd, out, size) != (ssize_t)size) die("write");
      }
    }
    double t = now();
    if (!measuring && t >= warm) {
      measuring = 1;
      count = 0;
      t0 = t;
    } else if (measuring && t >= end) {
      // total counts the warm-up too: the server's CPU time per round trip is taken over the whole run
      printf("{\"roundtrips\": %ld, \"total\": %ld, \"seconds\": %.4f, \"rate\": %.1f}\n", count, total, t - t0, count / (t - t0));
      return 0;
    }
  }
}

static int idle(int conns) {
  int *fds = malloc(sizeof(int) * conns);
  for (int i = 0; i < conns; i++) fds[i] = open_conn();
  printf("connected %d\n", conns);
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  for (int i = 0; i < conns; i++) close(fds[i]);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 6 && strcmp(argv[1], "rr") == 0) {
    resolve(argv[2], argv[3]);
    return rr(atoi(argv[4]), (size_t)atol(argv[5]), argc > 6 ? atof(argv[6]) : 2.0);
  }
  if (argc >= 5 && strcmp(argv[1], "idle") == 0) {
    resolve(argv[2], argv[3]);
    return idle(atoi(argv[4]));
  }
  fprintf(stderr, "usage: loadgen rr HOST PORT CONNS MSGSIZE [SECONDS] | loadgen idle HOST PORT CONNS\n");
  return 2;
}
