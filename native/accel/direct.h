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

/*
 * A 4 KiB-aligned buffer of at least `n` bytes from this thread's pool (or new); NULL when out of memory. Give it
 * back with its length when done.
 */
uint8_t *direct_buffer_take(size_t n);
void direct_buffer_give(uint8_t *b, size_t n);

#endif
