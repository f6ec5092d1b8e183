// zynclone-console-splice: moves one console's VNC -> browser bytes with
// splice(2), so they never enter user space: VNC socket -> pipe -> browser
// socket, each read sent as one binary WebSocket frame (RFC 6455, unmasked
// server frame) whose header is written just before its spliced payload.
//
// fd 3: the VNC socket, fd 4: the browser socket (both shared with the
// console monitor, which keeps the browser -> VNC direction; non-blocking).
// stdin: control frames from the monitor (complete WebSocket frames, e.g. a
// pong), sent between data frames; its end, or SIGTERM, stops the helper at
// the next frame boundary. stdout: JSON lines, see README.md.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

enum { VNC_FD = 3, BROWSER_FD = 4, CONTROL_FD = 0 };
enum { PIPE_SIZE = 1 << 20, CONTROL_MAX = 4096 };

static volatile sig_atomic_t stop_signalled;
static sigset_t wait_mask;  // the mask while waiting: SIGTERM gets through only then
static uint64_t bytes_sent, frames_sent;
static int pipe_in, pipe_out;

static void on_stop(int sig) {
  (void)sig;
  stop_signalled = 1;
}

/** The last word: why it ended, what it moved; exits. */
static void end(const char *reason, int err, bool at_boundary) {
  printf("{\"event\":\"end\",\"reason\":\"%s\",\"bytes\":%" PRIu64 ",\"frames\":%" PRIu64
         ",\"atFrameBoundary\":%s",
         reason, bytes_sent, frames_sent, at_boundary ? "true" : "false");
  if (err) printf(",\"error\":\"%s\"", strerrorname_np(err) ? strerrorname_np(err) : "?");
  puts("}");
  fflush(stdout);
  exit(0);
}

/** Waits for `events` on `fd`; a stop request does not interrupt it (the frame is finished first). */
static void wait_for(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  ppoll(&p, 1, NULL, &wait_mask);
}

/** Sends all of `buf` to the browser; false when the browser is gone. */
static bool send_all(const unsigned char *buf, size_t len, int flags) {
  while (len > 0) {
    ssize_t n = send(BROWSER_FD, buf, len, flags | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      wait_for(BROWSER_FD, POLLOUT);
      continue;
    }
    buf += n;
    len -= (size_t)n;
  }
  return true;
}

/** One binary frame: its header, then `len` bytes from the pipe. */
static void send_frame(size_t len) {
  unsigned char h[10];
  size_t hl;
  h[0] = 0x82;  // FIN, binary
  if (len < 126) {
    h[1] = (unsigned char)len;
    hl = 2;
  } else if (len < 0x10000) {
    h[1] = 126;
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    hl = 10;
  }
  // MSG_MORE: the header leaves in the payload's first segment, not alone.
  if (!send_all(h, hl, MSG_MORE)) end("browser-gone", errno, true);
  size_t left = len;
  while (left > 0) {
    ssize_t n = splice(pipe_out, NULL, BROWSER_FD, NULL, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) end("browser-gone", errno, false);
      wait_for(BROWSER_FD, POLLOUT);
      continue;
    }
    left -= (size_t)n;
    bytes_sent += (uint64_t)n;
  }
  frames_sent++;
}

static unsigned char control[CONTROL_MAX];
static size_t control_len;

/** Sends the complete control frames read so far; false if one cannot be a frame of ours. */
static bool send_control_frames(void) {
  size_t at = 0;
  while (control_len - at >= 2) {
    const unsigned char *f = control + at;
    size_t len7 = f[1] & 0x7f, head = 2, len = len7;
    // Control frames carry at most 125 bytes, unmasked (the monitor makes them).
    if ((f[1] & 0x80) || len7 > 125) return false;
    if (control_len - at < head + len) break;
    if (!send_all(f, head + len, 0)) end("browser-gone", errno, true);
    at += head + len;
  }
  memmove(control, control + at, control_len - at);
  control_len -= at;
  return true;
}

int main(int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    fputs("usage: zynclone-console-splice (fd 3: VNC socket, fd 4: browser socket, stdin: control)\n",
          stderr);
    return 2;
  }
  struct stat st;
  if (fstat(VNC_FD, &st) != 0 || !S_ISSOCK(st.st_mode) || fstat(BROWSER_FD, &st) != 0 ||
      !S_ISSOCK(st.st_mode)) {
    fputs("zynclone-console-splice: fd 3 and fd 4 must be sockets\n", stderr);
    return 1;
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGPIPE, SIG_IGN);
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  sigprocmask(SIG_BLOCK, &stops, &wait_mask);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
    fprintf(stderr, "zynclone-console-splice: pipe: %s\n", strerror(errno));
    return 1;
  }
  pipe_out = p[0];
  pipe_in = p[1];
  // A bigger pipe means fewer, longer frames; the default (64 KiB) still works.
  int pipe_size = fcntl(pipe_in, F_SETPIPE_SZ, PIPE_SIZE);
  if (pipe_size < 0) pipe_size = fcntl(pipe_in, F_GETPIPE_SZ);
  printf("{\"event\":\"ready\",\"pipeSize\":%d}\n", pipe_size);
  fflush(stdout);

  for (;;) {
    if (stop_signalled) end("stopped", 0, true);
    struct pollfd w[2] = {{.fd = VNC_FD, .events = POLLIN}, {.fd = CONTROL_FD, .events = POLLIN}};
    if (ppoll(w, 2, NULL, &wait_mask) < 0) {
      if (errno == EINTR) continue;
      end("failed", errno, true);
    }
    if (w[1].revents) {
      ssize_t n = read(CONTROL_FD, control + control_len, sizeof control - control_len);
      // The end of the control pipe is the monitor's request to stop (or its death).
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) end("stopped", 0, true);
      if (n > 0) {
        control_len += (size_t)n;
        if (!send_control_frames()) end("bad-control-frame", 0, true);
      }
    }
    if (!w[0].revents) continue;
    ssize_t n = splice(VNC_FD, NULL, pipe_in, NULL, (size_t)pipe_size,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0) end("vnc-closed", 0, true);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      end("vnc-failed", errno, true);
    }
    send_frame((size_t)n);
  }
}
