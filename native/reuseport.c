// A listening socket of its own for each data-plane worker, on a port the other workers
// share: SO_REUSEPORT, which Node 20's net.Server cannot set (its reusePort option came in
// 22.12). One fd shared between threads would be closed by each thread's handle, the second
// close hitting whatever number the first one freed. So each worker asks for its own socket
// here, bound but not listening, and hands the fd to net.Server#listen({ fd }): Node wraps it
// in a TCP handle, calls listen(2) and closes it with the server.
//
//   bind(host: string, port: number): number   host a numeric IPv4 or IPv6 address
//
// Errors are thrown as JS Errors whose `code` is the errno name, as Node's own are.

#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// The errno names these calls can fail with; Node-API has no errno-to-name call.
static const char *errno_name(int err) {
  switch (err) {
#define NAME(e) case e: return #e;
    NAME(EACCES) NAME(EADDRINUSE) NAME(EADDRNOTAVAIL) NAME(EAFNOSUPPORT) NAME(EINVAL)
    NAME(EMFILE) NAME(ENFILE) NAME(ENOBUFS) NAME(ENOMEM) NAME(ENOPROTOOPT) NAME(EPERM)
    NAME(EPROTONOSUPPORT)
#undef NAME
    default: return "UNKNOWN";
  }
}

// Throws Error(`${what}: ${strerror(err)}`) with code = the errno name; returns NULL for the caller to return.
static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, errno_name(err), msg);
  return NULL;
}

static napi_value bind_reuseport(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

  // INET6_ADDRSTRLEN holds any numeric address with its NUL; one byte more tells a longer
  // string (not an address) from one that fits.
  char host[INET6_ADDRSTRLEN + 1];
  size_t host_len;
  double port_arg;
  if (argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok ||
      napi_get_value_double(env, argv[1], &port_arg) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "bind(host: string, port: number)");
    return NULL;
  }
  if (!(port_arg >= 0 && port_arg <= 65535) || port_arg != (double)(int)port_arg) {
    napi_throw_range_error(env, "EINVAL", "port must be an integer from 0 to 65535");
    return NULL;
  }
  int port = (int)port_arg;

  // "what" for the messages: host:port, IPv6 in brackets as in a URL.
  char where[INET6_ADDRSTRLEN + 16];
  snprintf(where, sizeof where, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);

  struct sockaddr_storage addr;
  socklen_t addr_len = 0;
  memset(&addr, 0, sizeof addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
  struct in_addr a4;
  struct in6_addr a6;
  if (host_len >= INET6_ADDRSTRLEN) {
    // longer than any numeric address (and possibly cut short by the buffer): not one
  } else if (inet_pton(AF_INET, host, &a4) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_addr = a4;
    v4->sin_port = htons(port);
    addr_len = sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &a6) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = a6;
    v6->sin6_port = htons(port);
    addr_len = sizeof *v6;
  }
  if (addr_len == 0) {
    char msg[INET6_ADDRSTRLEN + 64];
    snprintf(msg, sizeof msg, "bind %s: not a numeric IPv4 or IPv6 address", host);
    napi_throw_error(env, "EINVAL", msg);
    return NULL;
  }

  // Non-blocking as libuv wants its fds; close-on-exec so that model servers the gateway
  // spawns do not inherit the listening socket (and keep the port after it exits).
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);

  const int on = 1, off = 0;
  const char *failed = NULL;
  // SO_REUSEADDR as libuv sets it on every TCP bind: a restart is not refused for the old
  // connections in TIME_WAIT. SO_REUSEPORT: the point, every worker's socket on the one port.
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) failed = "setsockopt SO_REUSEADDR";
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) failed = "setsockopt SO_REUSEPORT";
  // `::` takes IPv4 connections too (dual stack), as uWebSockets.js and Node do; the
  // kernel default (net.ipv6.bindv6only) may say otherwise.
  else if (addr.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr) &&
           setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) failed = "setsockopt IPV6_V6ONLY";
  else if (bind(fd, (struct sockaddr *)&addr, addr_len) != 0) failed = "bind";
  if (failed != NULL) {
    int err = errno;  // close() may change errno
    close(fd);
    char what[sizeof where + 32];
    snprintf(what, sizeof what, "%s %s", failed, where);
    return throw_errno(env, what, err);
  }

  napi_value result;
  if (napi_create_int32(env, fd, &result) != napi_ok) {
    close(fd);
    return NULL;
  }
  return result;
}

// No global state: safe to load in every worker thread (each gets its own exports).
NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "bind", NAPI_AUTO_LENGTH, bind_reuseport, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "bind", fn) != napi_ok) return NULL;
  return exports;
}
