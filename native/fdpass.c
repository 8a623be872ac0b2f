// fdpass: the two syscalls Node lacks for fusermount3 — socketpair(2) and receiving a descriptor
// (SCM_RIGHTS) with recvmsg(2). Knows nothing of FUSE beyond that.
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* socketpair() -> [fd0, fd1]: AF_UNIX stream pair, both close-on-exec. */
static napi_value SocketPair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return throw_errno(env, "socketpair", errno);
  napi_value arr, a, b;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, sv[0], &a);
  napi_create_int32(env, sv[1], &b);
  napi_set_element(env, arr, 0, a);
  napi_set_element(env, arr, 1, b);
  return arr;
}

/* recvFd(sock) -> fd: one waiting message carrying one descriptor (never blocks: EAGAIN if none yet). */
static napi_value RecvFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t sock;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &sock) != napi_ok) {
    napi_throw_type_error(env, NULL, "recvFd(sock: number)");
    return NULL;
  }
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "recvmsg", errno);
  if (n == 0) {
    napi_throw_error(env, NULL, "recvmsg: peer closed without sending a descriptor");
    return NULL;
  }
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
    napi_throw_error(env, NULL, "recvmsg: no descriptor in the message");
    return NULL;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"socketpair", NULL, SocketPair, NULL, NULL, NULL, napi_default, NULL},
      {"recvFd", NULL, RecvFd, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
