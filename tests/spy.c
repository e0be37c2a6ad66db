/*
 * spy.c - a library the tests preload into a server (LD_PRELOAD) to see
 * and to bend what no client can: how its sends behave, and whether it
 * copes with calls cut short by a signal. It stands between the server and
 * the C library's send(), listen() and close() (and, for SPY_EINTR,
 * accept(), recv() and the waits):
 *
 *   SPY_LOG=FILE         append what it saw to FILE: "spy: loaded" at
 *                        start-up; "spy: shortened a send" the first time
 *                        it shortened one; "spy: send without TCP_NODELAY
 *                        on fd N" the first time a send goes out on a socket
 *                        that has Nagle's algorithm on (TCP_NODELAY off).
 *   SPY_SHORT_SENDS=MAX  hand the kernel at most 1..MAX bytes of each send
 *                        (a pseudo-random size, the same on every run), as
 *                        a kernel short of buffer space may: the server must
 *                        send the rest later, from the right place.
 *   SPY_SNDBUF=BYTES     give the listening socket a send buffer of BYTES
 *                        (SO_SNDBUF), which every accepted connection
 *                        inherits: then the kernel itself takes only part
 *                        of a big send. For chapter 06, whose sends go
 *                        through io_uring, past send() and past this spy.
 *                        Logs "spy: send buffer set to N".
 *   SPY_RCVBUF=BYTES     the same for the receive buffer (SO_RCVBUF): a
 *                        size the kernel no longer tunes on its own, for a
 *                        test that must know how much a connection holds.
 *                        Logs "spy: receive buffer set to N".
 *   SPY_EINTR=1          make every second call of accept(), recv(), send()
 *                        and the wait (select(), poll(), epoll_wait() and
 *                        their p- variants) fail with EINTR before it does
 *                        anything, as a signal arriving at that moment would
 *                        (what `strace -e inject=...:error=EINTR:when=2+2`
 *                        does, without the right to trace); "spy:
 *                        interrupted CALL" is logged the first time for each.
 *
 * At each close() of a connected TCP socket it also asks for TCP_NODELAY,
 * and logs "spy: closed a connection with TCP_NODELAY" (once) or "spy:
 * closed a connection without TCP_NODELAY on fd N" (once): how to check a
 * server whose sends it cannot see.
 *
 * Why not ask the kernel for short sends? On loopback it grows a socket's
 * send buffer to megabytes, so a send of 64 KiB is never short there.
 * Why not strace? Reading the server's setsockopt() calls needs the right
 * to trace it, which stock Ubuntu refuses to ordinary users (Yama).
 *
 * Built by tests/Makefile as spy.so; helpers.bash's start_server_with_spy
 * loads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static int send_buffer;    /* SPY_SNDBUF; 0: leave it alone */
static int receive_buffer; /* SPY_RCVBUF; 0: leave it alone */
static bool told_close_nodelay, told_close_nagle;
static const char *log_path;
static size_t short_sends; /* 0: leave the sizes alone */
static uint64_t state;     /* of the generator of short sizes */
static bool told_shortened, told_nagle;
static bool interrupting; /* SPY_EINTR */

/* One line appended to SPY_LOG, if it is set. O_APPEND: each line lands
 * whole, after whatever the test or an earlier server wrote. */
__attribute__((format(printf, 1, 2))) static void spy_log(const char *format, ...)
{
    char line[128];
    va_list args;

    if (log_path == NULL)
        return;
    va_start(args, format);
    int length = vsnprintf(line, sizeof line - 1, format, args);
    va_end(args);
    if (length < 0)
        return;
    if ((size_t)length > sizeof line - 2)
        length = sizeof line - 2;
    line[length++] = '\n';
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd == -1)
        return;
    ssize_t ignored = write(fd, line, (size_t)length);
    (void)ignored; /* the test finds the line missing and says so */
    close(fd);
}

__attribute__((constructor)) static void spy_start(void)
{
    log_path = getenv("SPY_LOG");
    const char *bytes = getenv("SPY_SNDBUF");
    if (bytes != NULL)
        send_buffer = atoi(bytes);
    bytes = getenv("SPY_RCVBUF");
    if (bytes != NULL)
        receive_buffer = atoi(bytes);
    const char *max = getenv("SPY_SHORT_SENDS");
    if (max != NULL)
        short_sends = strtoul(max, NULL, 10);
    const char *eintr = getenv("SPY_EINTR");
    interrupting = eintr != NULL && strcmp(eintr, "0") != 0;
    spy_log("spy: loaded");
}

/* ---- SPY_EINTR ---------------------------------------------------------- */

/* The calls the spy may interrupt, and how often each was made. */
enum call { ACCEPT, RECV, SEND, WAIT, CALLS };
static const char *const call_names[CALLS] = {"accept", "recv", "send", "wait"};
static unsigned long call_counts[CALLS];
static bool told_interrupted[CALLS];

/* Whether this call of CALL fails with EINTR (errno set): every second one,
 * when SPY_EINTR is on. */
static bool interrupted(enum call call)
{
    if (!interrupting || ++call_counts[call] % 2 != 0)
        return false;
    if (!told_interrupted[call]) {
        spy_log("spy: interrupted %s", call_names[call]);
        told_interrupted[call] = true;
    }
    errno = EINTR;
    return true;
}

/* The C library's function called NAME, or abort(): the spy stands in for
 * it and has nothing to pass the call on to. */
static void *real(const char *name)
{
    void *found = dlsym(RTLD_NEXT, name);
    if (found == NULL) {
        spy_log("spy: no %s() to pass calls to", name);
        abort();
    }
    return found;
}

/* Each stand-in ends by passing its call on to the C library's function,
 * looked up on its first call. dlsym() returns a data pointer; memcpy makes
 * it a function pointer without a conversion that ISO C leaves undefined. */
#define PASS_ON(type, name, ...)                                                                   \
    do {                                                                                           \
        static type *next;                                                                         \
        if (next == NULL) {                                                                        \
            void *found = real(#name);                                                             \
            memcpy(&next, &found, sizeof next);                                                    \
        }                                                                                          \
        return next(__VA_ARGS__);                                                                  \
    } while (0)

/* glibc declares the address of accept() and accept4() as __SOCKADDR_ARG
 * (a transparent union, with _GNU_SOURCE): the same here, or the types clash. */
typedef int accept_function(int, __SOCKADDR_ARG, socklen_t *restrict);
typedef int accept4_function(int, __SOCKADDR_ARG, socklen_t *restrict, int);
typedef ssize_t recv_function(int, void *, size_t, int);
typedef ssize_t send_function(int, const void *, size_t, int);
typedef ssize_t recv_chk_function(int, void *, size_t, size_t, int);
typedef int select_function(int, fd_set *, fd_set *, fd_set *, struct timeval *);
typedef int pselect_function(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
                             const sigset_t *);
typedef int poll_function(struct pollfd *, nfds_t, int);
typedef int poll_chk_function(struct pollfd *, nfds_t, int, size_t);
typedef int ppoll_function(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
typedef int epoll_wait_function(int, struct epoll_event *, int, int);
typedef int epoll_pwait_function(int, struct epoll_event *, int, int, const sigset_t *);
typedef int listen_function(int, int);
typedef int close_function(int);

int accept(int fd, __SOCKADDR_ARG address, socklen_t *restrict length)
{
    if (interrupted(ACCEPT))
        return -1;
    PASS_ON(accept_function, accept, fd, address, length);
}

int accept4(int fd, __SOCKADDR_ARG address, socklen_t *restrict length, int flags)
{
    if (interrupted(ACCEPT))
        return -1;
    PASS_ON(accept4_function, accept4, fd, address, length, flags);
}

ssize_t recv(int fd, void *buffer, size_t length, int flags)
{
    if (interrupted(RECV))
        return -1;
    PASS_ON(recv_function, recv, fd, buffer, length, flags);
}

/* What recv() becomes with _FORTIFY_SOURCE (Ubuntu's compiler sets it). */
ssize_t __recv_chk(int fd, void *buffer, size_t length, size_t size, int flags)
{
    if (interrupted(RECV))
        return -1;
    PASS_ON(recv_chk_function, __recv_chk, fd, buffer, length, size, flags);
}

int select(int count, fd_set *reading, fd_set *writing, fd_set *other, struct timeval *timeout)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(select_function, select, count, reading, writing, other, timeout);
}

int pselect(int count, fd_set *reading, fd_set *writing, fd_set *other,
            const struct timespec *timeout, const sigset_t *mask)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(pselect_function, pselect, count, reading, writing, other, timeout, mask);
}

int poll(struct pollfd *entries, nfds_t count, int timeout)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(poll_function, poll, entries, count, timeout);
}

/* What poll() becomes with _FORTIFY_SOURCE. */
int __poll_chk(struct pollfd *entries, nfds_t count, int timeout, size_t size)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(poll_chk_function, __poll_chk, entries, count, timeout, size);
}

int ppoll(struct pollfd *entries, nfds_t count, const struct timespec *timeout,
          const sigset_t *mask)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(ppoll_function, ppoll, entries, count, timeout, mask);
}

int epoll_wait(int epoll_fd, struct epoll_event *events, int most, int timeout)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(epoll_wait_function, epoll_wait, epoll_fd, events, most, timeout);
}

int epoll_pwait(int epoll_fd, struct epoll_event *events, int most, int timeout,
                const sigset_t *mask)
{
    if (interrupted(WAIT))
        return -1;
    PASS_ON(epoll_pwait_function, epoll_pwait, epoll_fd, events, most, timeout, mask);
}

/* ---- send() --------------------------------------------------------------- */

ssize_t send(int fd, const void *buffer, size_t length, int flags)
{
    int nodelay;
    socklen_t size = sizeof nodelay;

    if (interrupted(SEND))
        return -1;
    if (!told_nagle && getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &size) == 0 &&
        nodelay == 0) {
        spy_log("spy: send without TCP_NODELAY on fd %d", fd);
        told_nagle = true;
    }
    if (short_sends > 0 && length > 1) {
        size_t most = length < short_sends ? length : short_sends;
        /* Knuth's MMIX generator: sizes that look random and repeat. */
        state = state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        size_t shorter = 1 + (size_t)((state >> 33) % most);
        if (shorter < length && !told_shortened) {
            spy_log("spy: shortened a send");
            told_shortened = true;
        }
        length = shorter;
    }
    PASS_ON(send_function, send, fd, buffer, length, flags);
}

/* Give the listening socket a buffer of `bytes` (SO_SNDBUF or SO_RCVBUF),
 * if asked; `name` says which in the log. */
static void set_buffer(int fd, int option, int bytes, const char *name)
{
    if (bytes <= 0)
        return;
    if (setsockopt(fd, SOL_SOCKET, option, &bytes, sizeof bytes) == 0)
        spy_log("spy: %s buffer set to %d", name, bytes);
    else
        spy_log("spy: could not set the %s buffer", name);
}

int listen(int fd, int backlog)
{
    set_buffer(fd, SO_SNDBUF, send_buffer, "send");
    set_buffer(fd, SO_RCVBUF, receive_buffer, "receive");
    PASS_ON(listen_function, listen, fd, backlog);
}

/* Only sockets with a peer: a listening socket has Nagle's algorithm "on"
 * and nothing to delay. */
int close(int fd)
{
    struct sockaddr_storage peer;
    socklen_t peer_size = sizeof peer;
    int nodelay;
    socklen_t size = sizeof nodelay;

    if ((!told_close_nodelay || !told_close_nagle) &&
        getpeername(fd, (struct sockaddr *)&peer, &peer_size) == 0 &&
        (peer.ss_family == AF_INET || peer.ss_family == AF_INET6) &&
        getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &size) == 0) {
        if (nodelay != 0 && !told_close_nodelay) {
            spy_log("spy: closed a connection with TCP_NODELAY");
            told_close_nodelay = true;
        } else if (nodelay == 0 && !told_close_nagle) {
            spy_log("spy: closed a connection without TCP_NODELAY on fd %d", fd);
            told_close_nagle = true;
        }
    }
    PASS_ON(close_function, close, fd);
}
