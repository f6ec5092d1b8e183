// The two ends of the console bench's throughput stream, made as cheap as
// Linux allows so that the bench measures the proxy between them and not
// its client or server: the source sends from a memfd with sendfile (pages
// referenced, never copied) and the reader discards payload with
// recv(MSG_TRUNC) (never copied to user space), parsing only the WebSocket
// frame headers.
//
//   stream-ends source TOTAL             listen on 127.0.0.1, print the port;
//                                        send TOTAL bytes of 0x5a to each
//                                        connection, then close it
//   stream-ends read HOST PORT TOTAL [PATH]
//                                        read TOTAL payload bytes, through a
//                                        WebSocket at PATH if given; print
//                                        {"ms":..,"userMs":..,"systemMs":..}
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (64L << 20)
#define MAX_CONNS 64

static void die(const char *what) {
  fprintf(stderr, "stream-ends: %s: %s\n", what, strerror(errno));
  exit(1);
}

static long long parse_count(const char *s) {
  char *end;
  errno = 0;
  long long n = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || n <= 0) {
    fprintf(stderr, "stream-ends: not a byte count: %s\n", s);
    exit(2);
  }
  return n;
}

_Noreturn static void source(long long total) {
  int file = memfd_create("stream", 0);
  if (file < 0) die("memfd_create");
  static char block[1 << 20];
  memset(block, 0x5a, sizeof block);
  for (long off = 0; off < FILE_BYTES; off += sizeof block)
    if (write(file, block, sizeof block) != (ssize_t)sizeof block) die("write memfd");

  int lsock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lsock < 0) die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  if (bind(lsock, (struct sockaddr *)&a, sizeof a) < 0 || listen(lsock, 16) < 0) die("listen");
  if (getsockname(lsock, (struct sockaddr *)&a, &alen) < 0) die("getsockname");
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);

  struct pollfd fds[MAX_CONNS + 1] = {{.fd = lsock, .events = POLLIN}};
  long long sent[MAX_CONNS + 1] = {0};
  int n = 1;
  for (;;) {
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[0].revents & POLLIN) {
      int c = accept4(lsock, NULL, NULL, SOCK_NONBLOCK);
      if (c >= 0 && n <= MAX_CONNS) {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fds[n] = (struct pollfd){.fd = c, .events = POLLOUT};
        sent[n++] = 0;
      } else if (c >= 0) {
        close(c);
      }
    }
    for (int i = 1; i < n; i++) {
      if (!(fds[i].revents & (POLLOUT | POLLERR | POLLHUP))) continue;
      int done = (fds[i].revents & (POLLERR | POLLHUP)) != 0;
      while (!done && sent[i] < total) {
        off_t at = sent[i] % FILE_BYTES;
        long long want = total - sent[i];
        if (want > FILE_BYTES - at) want = FILE_BYTES - at;
        ssize_t k = sendfile(fds[i].fd, file, &at, (size_t)want);
        if (k > 0) sent[i] += k;
        else if (k < 0 && errno == EAGAIN) break;
        else done = 1;
      }
      if (done || sent[i] >= total) {
        close(fds[i].fd);
        fds[i] = fds[n - 1];
        sent[i] = sent[n - 1];
        n--;
        i--;
      }
    }
  }
}

/** Reads exactly `len` bytes into `buf` (blocking socket). */
static void read_exact(int s, unsigned char *buf, size_t len) {
  while (len > 0) {
    ssize_t k = recv(s, buf, len, 0);
    if (k <= 0) {
      fprintf(stderr, "stream-ends: the stream ended early\n");
      exit(1);
    }
    buf += k;
    len -= (size_t)k;
  }
}

/** Discards `len` bytes without copying them; returns how many came before the end. */
static long long discard(int s, long long len) {
  long long got = 0;
  while (got < len) {
    long long want = len - got;
    if (want > (1LL << 30)) want = 1LL << 30;
    ssize_t k = recv(s, NULL, (size_t)want, MSG_TRUNC);
    if (k <= 0) break;
    got += k;
  }
  return got;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(const struct timeval *tv) { return tv->tv_sec * 1e3 + tv->tv_usec / 1e3; }

static int reader(const char *host, const char *port, long long total, const char *path) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "stream-ends: not an IPv4 address: %s\n", host);
    return 2;
  }
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (path != NULL) {
    char req[4096];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n",
                       path, host, port);
    if (len <= 0 || len >= (int)sizeof req || send(s, req, (size_t)len, 0) != len) die("send");
    // The answer's head, a byte at a time: nothing of the first frame is read with it.
    char head[4096];
    size_t h = 0;
    while (h < 4 || memcmp(head + h - 4, "\r\n\r\n", 4) != 0) {
      if (h == sizeof head - 1) {
        fprintf(stderr, "stream-ends: upgrade answer too long\n");
        return 1;
      }
      read_exact(s, (unsigned char *)head + h++, 1);
    }
    head[h] = '\0';
    if (strncmp(head, "HTTP/1.1 101 ", 13) != 0) {
      fprintf(stderr, "stream-ends: upgrade refused: %.*s\n", (int)strcspn(head, "\r"), head);
      return 1;
    }
  }
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = now_ms();
  long long counted = 0;
  if (path == NULL) {
    counted = discard(s, total);
  } else {
    while (counted < total) {
      unsigned char hdr[14];
      read_exact(s, hdr, 2);
      unsigned len7 = hdr[1] & 0x7f;
      size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
      size_t mask = hdr[1] & 0x80 ? 4 : 0;
      read_exact(s, hdr + 2, ext + mask);
      long long payload = len7;
      if (ext > 0) {
        payload = 0;
        for (size_t i = 0; i < ext; i++) payload = payload << 8 | hdr[2 + i];
      }
      unsigned opcode = hdr[0] & 0x0f;
      if (opcode == 8) {
        fprintf(stderr, "stream-ends: closed by the server after %lld bytes\n", counted);
        return 1;
      }
      long long got = discard(s, payload);
      if (opcode == 0 || opcode == 2) counted += got;
      if (got < payload) break;
    }
  }
  double ms = now_ms() - t0;
  getrusage(RUSAGE_SELF, &r1);
  if (counted < total) {
    fprintf(stderr, "stream-ends: closed after %lld of %lld bytes\n", counted, total);
    return 1;
  }
  printf("{\"ms\":%.3f,\"userMs\":%.3f,\"systemMs\":%.3f}\n", ms,
         cpu_ms(&r1.ru_utime) - cpu_ms(&r0.ru_utime), cpu_ms(&r1.ru_stime) - cpu_ms(&r0.ru_stime));
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "source") == 0) source(parse_count(argv[2]));
  if ((argc == 5 || argc == 6) && strcmp(argv[1], "read") == 0)
    return reader(argv[2], argv[3], parse_count(argv[4]), argc == 6 ? argv[5] : NULL);
  fprintf(stderr, "usage: stream-ends source TOTAL | stream-ends read HOST PORT TOTAL [PATH]\n");
  return 2;
}
