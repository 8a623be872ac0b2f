// fuseio: readiness-driven reads of a /dev/fuse descriptor on the main thread. A uv_poll_t on Node's own event loop
// calls JavaScript when the descriptor is readable; JavaScript then drains it with read() until -EAGAIN. No libuv
// threadpool hop and no exception per EAGAIN. Knows nothing of the FUSE protocol.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;   // (status: number) => void; 0 = readable, < 0 = -errno from libuv (e.g. POLLERR → EBADF)
  napi_async_context async;
  int started;
  int closing;
} Watch;

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  char code[32];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

static napi_value throw_status(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, NULL, info && info->error_message ? info->error_message : what);
  return NULL;
}

#define CHECK(env, call, what)                             \
  do {                                                     \
    if ((call) != napi_ok) return throw_status(env, what); \
  } while (0)

static void on_closed(uv_handle_t *h) {
  Watch *w = (Watch *)h->data;
  free(w);
}

/* Release the JS references and close the handle; the Watch is freed once libuv has closed it. */
static void watch_close(Watch *w) {
  if (w->closing) return;
  w->closing = 1;
  if (w->callback) {
    napi_delete_reference(w->env, w->callback);
    w->callback = NULL;
  }
  if (w->async) {
    napi_async_destroy(w->env, w->async);
    w->async = NULL;
  }
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)events;
  Watch *w = (Watch *)p->data;
  if (w->closing || !w->callback) return;
  // libuv stops the handle itself on POLLERR (status UV_EBADF): remember that so start() re-arms it.
  if (status < 0) w->started = 0;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  if (napi_get_reference_value(env, w->callback, &fn) == napi_ok && fn != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, status, &arg) == napi_ok) {
    // make_callback (not call_function; its receiver must be an object): runs process.nextTick and promise jobs when the callback returns, as every
    // other libuv-driven callback in Node does.
    if (napi_make_callback(env, w->async, recv, fn, 1, &arg, &result) == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static Watch *unwrap(napi_env env, napi_value v) {
  Watch *w = NULL;
  if (napi_get_value_external(env, v, (void **)&w) != napi_ok || w == NULL) {
    napi_throw_type_error(env, NULL, "not a fuseio watch");
    return NULL;
  }
  return w;
}

/* watch(fd, callback) -> handle: sets O_NONBLOCK on fd and calls callback(status) whenever it is readable. */
static napi_value WatchFd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "watch: arguments");
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_typeof(env, argv[1], &t) != napi_ok ||
      t != napi_function) {
    napi_throw_type_error(env, NULL, "watch(fd: number, callback: (status: number) => void)");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return throw_errno(env, "fcntl(F_GETFL)", errno);
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return throw_errno(env, "fcntl(F_SETFL)", errno);
  uv_loop_t *loop = NULL;
  CHECK(env, napi_get_uv_event_loop(env, &loop), "napi_get_uv_event_loop");
  Watch *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watch", ENOMEM);
  w->env = env;
  int r = uv_poll_init(loop, &w->poll, fd);
  if (r != 0) {
    free(w);
    return throw_errno(env, "uv_poll_init", -r);
  }
  w->poll.data = w;
  napi_value name, handle;
  if (napi_create_reference(env, argv[1], 1, &w->callback) != napi_ok ||
      napi_create_string_utf8(env, "FuseRead", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &w->async) != napi_ok) {
    watch_close(w);
    return throw_status(env, "watch: references");
  }
  r = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (r != 0) {
    watch_close(w);
    return throw_errno(env, "uv_poll_start", -r);
  }
  w->started = 1;
  // The Watch outlives the JS value only until close(): no finalizer, the owner must close it (the device does on
  // ENODEV or stop).
  if (napi_create_external(env, w, NULL, NULL, &handle) != napi_ok) {
    watch_close(w);
    return throw_status(env, "watch: external");
  }
  return handle;
}

/* start(handle): re-arm after libuv stopped the poll on an error (POLLERR before mount(2) attaches the fd). */
static napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "start: arguments");
  if (argc < 1) return throw_status(env, "start(handle)");
  Watch *w = unwrap(env, argv[0]);
  if (!w) return NULL;
  if (w->closing || w->started) return NULL;
  int r = uv_poll_start(&w->poll, UV_READABLE, on_poll);
  if (r != 0) return throw_errno(env, "uv_poll_start", -r);
  w->started = 1;
  return NULL;
}

/* close(handle): stop watching and release the handle (idempotent), so the event loop can end. */
static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "close: arguments");
  if (argc < 1) return throw_status(env, "close(handle)");
  Watch *w = unwrap(env, argv[0]);
  if (!w) return NULL;
  watch_close(w);
  return NULL;
}

/* read(fd, buf) -> bytes read, or -errno (never throws for I/O errors; EINTR is retried here). */
static napi_value Read(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  void *data = NULL;
  size_t len = 0;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL), "read: arguments");
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "read(fd: number, buf: Buffer)");
    return NULL;
  }
  ssize_t n;
  do {
    n = read(fd, data, len);
  } while (n < 0 && errno == EINTR);
  int32_t result = n < 0 ? -errno : (int32_t)n;
  napi_value out;
  CHECK(env, napi_create_int32(env, result, &out), "read: result");
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"watch", NULL, WatchFd, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, Start, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, NULL},
      {"read", NULL, Read, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, 4, props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
