// writeFileDirect: create a cache file whose bytes bypass the page cache (O_DIRECT).
//
// Why: a cache file is written once and read rarely (the kernel's FUSE page cache already holds what was just read
// or written through the mount), yet a buffered write allocates a page-cache page for every 4 KiB of it. On the
// 2-core Firecracker VMs arbor is measured on, free guest memory is reported back to the host, so those pages are
// often fresh: the kernel's copy into them (copy_folio_from_iter_atomic) was 15% of a cold reader's CPU, and a
// buffered write swung between 0.3 and 2+ ms per MiB with the machine's memory state. A direct write moves the
// bytes from one reused, already-touched buffer and leaves the page cache alone: ~0.2 ms of CPU per MiB, steady.
#define _GNU_SOURCE /* O_DIRECT, strerrorname_np */
#include "direct.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <fcntl.h>
#include <unistd.h>
#endif

/* Direct I/O wants offsets, lengths and memory aligned to the device's block; 4 KiB covers every common one. */
#define ALIGN 4096
/* `n` rounded up to whole 4 KiB blocks (one block for 0: posix_memalign wants a size). */
static size_t aligned_size(size_t n) {
  size_t a = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  return a == 0 ? ALIGN : a;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t at) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, at);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
    at += w;
  }
  return 0;
}

int write_file_direct(const char *path, const uint8_t *src, size_t len, bool *was_direct) {
#if defined(__linux__) && defined(O_DIRECT)
  *was_direct = false;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
  bool direct = fd >= 0;
  /* tmpfs and some others refuse O_DIRECT at open: write through the page cache there. */
  if (fd < 0 && errno == EINVAL) fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  size_t head = direct ? len & ~(size_t)(ALIGN - 1) : 0;
  int err = 0;
  if (head > 0) {
    const uint8_t *from = src;
    uint8_t *bounce = NULL; /* an aligned copy, from this thread's pool, when `src` is not aligned itself */
    if (((uintptr_t)src & (ALIGN - 1)) != 0) {
      if ((bounce = direct_buffer_take(head)) == NULL) {
        close(fd);
        return ENOMEM;
      }
      memcpy(bounce, src, head);
      from = bounce;
    }
    err = pwrite_all(fd, from, head, 0);
    if (bounce != NULL) direct_buffer_give(bounce, head);
    /* A filesystem that opened with O_DIRECT but wants another alignment: write it all buffered instead. */
    if (err == EINVAL) head = 0, err = 0;
  }
  if (err == 0 && direct) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0) err = errno;
  }
  /* The tail (under 4 KiB) starts on a page boundary past the end of the file, so this write reads nothing back. */
  if (err == 0) err = pwrite_all(fd, src + head, len - head, (off_t)head);
  if (close(fd) < 0 && err == 0) err = errno;
  *was_direct = err == 0 && head > 0;
  return err;
#else
  (void)path;
  (void)src;
  (void)len;
  *was_direct = false;
  return ENOSYS;
#endif
}

/*
 * Aligned copies, reused: for asynchronous writes, taken and given back on the thread that queues them (their
 * completions run there too), and for a synchronous write of unaligned bytes; each thread keeps its own few.
 */
#define POOL_KEEP 8
static __thread struct {
  uint8_t *buf;
  size_t cap;
} pool[POOL_KEEP];
static __thread int pooled;

uint8_t *direct_buffer_take(size_t n) {
  for (int i = pooled - 1; i >= 0; i--) {
    if (pool[i].cap >= n) {
      uint8_t *b = pool[i].buf;
      pool[i] = pool[--pooled];
      return b;
    }
  }
  void *p = NULL;
  return posix_memalign(&p, ALIGN, aligned_size(n)) == 0 ? p : NULL;
}

void direct_buffer_give(uint8_t *b, size_t n) {
  if (pooled < POOL_KEEP) {
    pool[pooled].buf = b;
    pool[pooled].cap = aligned_size(n);
    pooled++;
    return;
  }
  free(b);
}
