#ifndef ARBOR_ACCEL_DIRECT_H
#define ARBOR_ACCEL_DIRECT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Create (or truncate) `path` with mode 0600 holding `len` bytes of `src`, the whole 4 KiB blocks written with
 * O_DIRECT and the tail through the page cache. Falls back to an ordinary write where O_DIRECT is refused. Returns 0
 * or an errno; *was_direct tells whether the page cache was bypassed. Not fsynced.
 */
int write_file_direct(const char *path, const uint8_t *src, size_t len, bool *was_direct);

#endif
