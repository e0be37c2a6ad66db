/*
 * Chapter 05: the event loop on a selector, Python's `selectors` in C.
 *
 * Chapters 02, 03 and 04 wrote the same server three times, each welded to
 * its mechanism: fd_sets, a pollfd array, an epoll instance. Here the
 * mechanism moves behind a small library, selector.h, that a Python
 * programmer knows already: register a descriptor with the events it
 * waits for and a pointer of ours, select, and get (key, events) pairs
 * back. This file never names select(), poll() or epoll: `-b select`,
 * `-b poll` or `-b epoll` picks one when the server starts, and the same
 * code runs on each.
 *
 * The pointer we register is a callback, as in the Python server this
 * tutorial started from:
 *     sel.register(lsock, selectors.EVENT_READ, accept)
 *     ...
 *     callback = key.data
 *     callback(key.fileobj)
 * A C function cannot carry its object along the way a Python method
 * does, so what we register is a struct handler: the function to call,
 * at the start of whatever it works on (a connection, the listening
 * socket, the signal pipe). The loop calls it without knowing which.
 *
 * Each connection's callback returns what the connection waits for next
 * -- to read, to write, or nothing: close it -- and one place applies
 * that answer. It is chapter 04's logic: one recv() and one send() per
 * event, and only what the kernel did not take is kept.
 *
 * Signals come through the selector too, the portable way: the
 * self-pipe trick (see open_signal_pipe).
 *
 *   ./echo-server -p 7000 -b poll     then, in other terminals:
 *   ../tests/client -p 7000 cat       or ten thousand: ../tests/client -p 7000 echo -c 10000
 */
/* POSIX alone, no Linux extensions: this file builds on the BSDs and
 * macOS too (`make portable` checks it). */
#define _POSIX_C_SOURCE 200809L

#include "selector.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum verbosity { QUIET, NORMAL, VERBOSE };

struct options {
    const char *host;
    const char *port;
    const char *backend; /* NULL: the selector's default */
    enum verbosity verbosity;
};

enum {
    /* Room for "[IPv6 address]:65535" and the terminating NUL. */
    ADDRESS_TEXT_SIZE = INET6_ADDRSTRLEN + 8,
    /* How much one recv() may return. It is also the most a connection ever
     * holds unsent: we read again only once everything has gone out. */
    BUFFER_SIZE = 64 * 1024,
};

/* What a connection's callback answers: the events it waits for next, or
 * this, to have it closed. */
enum { CLOSE = 0 };

struct server;

/* What we register as a key's data: the function the loop calls when the
 * descriptor is ready. It is the first member of what it belongs to, so
 * the function can turn the pointer back into its connection: C promises
 * that a pointer to a struct, converted, points to its first member, and
 * back (C11 6.7.2.1). */
struct handler {
    void (*on_ready)(struct server *server, struct handler *self, unsigned events);
};

/* One client. An idle connection costs just this struct (and its key in
 * the selector): the bytes it has not been able to send live in a buffer
 * of their own, allocated only while there are any. */
struct connection {
    struct handler handler; /* first: see struct handler */
    int fd;
    char *unsent;         /* bytes the kernel did not take yet, or NULL */
    size_t unsent_length; /* how many there are ...                     */
    size_t unsent_done;   /* ... and how many of them have gone since   */
    char peer[ADDRESS_TEXT_SIZE];
};

struct server {
    struct selector *selector;
    enum verbosity verbosity;
    int listen_fd;
    struct handler listener;  /* its callback accepts clients */
    int signal_pipe;          /* read end of the self-pipe */
    struct handler stopper;   /* its callback sets stopping */
    bool stopping;
    /* False while accept() has no descriptor to give us (EMFILE): the
     * listening socket is then unregistered until a connection closes, or
     * until retry_accepting_at (on monotonic_ms()'s clock) has passed. */
    bool accepting;
    long long retry_accepting_at;
    int descriptor_limit; /* every descriptor is below it */
    /* Every read goes here first, and most bytes go straight back out. */
    char buffer[BUFFER_SIZE];
};

static const char USAGE[] =
    "usage: echo-server [-H HOST] [-p PORT] [-q | -v] [-b NAME]\n"
    "  -H HOST  address to listen on: IPv4 or IPv6 literal or a name"
    " (default 127.0.0.1)\n"
    "  -p PORT  0-65535 (default 65432; 0 lets the kernel choose)\n"
    "  -q       quiet: log nothing per connection\n"
    "  -v       verbose: also log every echo\n";

/* ---- Reporting ---------------------------------------------------------- */

/* The usage, with the backends this build has, best (the default) first. */
static void print_usage(FILE *stream)
{
    fputs(USAGE, stream);
    fputs("  -b NAME  backend:", stream);
    for (int i = 0; selector_backends(i) != NULL; i++)
        fprintf(stream, "%s %s", i == 0 ? "" : " |", selector_backends(i));
    fprintf(stream, " (default %s)\n", selector_backends(0));
    fputs("  -h       print this help and exit\n", stream);
}

/* Every error message has one shape: "echo-server: WHAT: REASON". */
static void report(const char *what)
{
    fprintf(stderr, "echo-server: %s: %s\n", what, strerror(errno));
}

static _Noreturn void die(const char *what)
{
    report(what);
    exit(1);
}

static _Noreturn void usage_error(const char *problem, const char *detail)
{
    fprintf(stderr, "echo-server: %s%s\n", problem, detail);
    print_usage(stderr);
    exit(2);
}

/* Log lines go to stdout, one at a time and flushed at once, so that whoever
 * reads them (a person, a test, a pipe) sees each line as it happens. */
static void log_line(const char *event, const char *address)
{
    printf("%s %s\n", event, address);
    fflush(stdout);
}

/* ---- The command line --------------------------------------------------- */

static int is_valid_port(const char *text)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    /* Digits only: strtol would also accept " 7", "+7" and "-0". */
    return text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0 &&
           value <= 65535;
}

static bool is_backend(const char *name)
{
    for (int i = 0; selector_backends(i) != NULL; i++) {
        if (strcmp(selector_backends(i), name) == 0)
            return true;
    }
    return false;
}

static struct options parse_options(int argc, char **argv)
{
    struct options options = {"127.0.0.1", "65432", NULL, NORMAL};
    int quiet = 0, verbose = 0;
    char flag[] = "-?";
    int opt;

    opterr = 0; /* we word the errors ourselves, in the usual shape */
    while ((opt = getopt(argc, argv, ":H:p:b:qvh")) != -1) {
        switch (opt) {
        case 'H': options.host = optarg; break;
        case 'p': options.port = optarg; break;
        case 'b': options.backend = optarg; break;
        case 'q': quiet = 1; break;
        case 'v': verbose = 1; break;
        case 'h': print_usage(stdout); exit(0);
        case ':': flag[1] = (char)optopt; usage_error("missing value for ", flag);
        default: flag[1] = (char)optopt; usage_error("unknown option ", flag);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument ", argv[optind]);
    if (!is_valid_port(options.port))
        usage_error("port must be a number from 0 to 65535: ", options.port);
    if (options.backend != NULL && !is_backend(options.backend))
        usage_error("unknown backend: ", options.backend);
    if (quiet && verbose)
        usage_error("-q and -v exclude each other", "");
    options.verbosity = quiet ? QUIET : verbose ? VERBOSE : NORMAL;
    return options;
}

/* ---- Start-up ----------------------------------------------------------- */

/* A process may open only so many descriptors: the soft limit, often 1024.
 * Any process may raise it up to the hard limit, and this server needs one
 * descriptor per client. Returns the limit we got. */
static int raise_descriptor_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1)
        die("getrlimit RLIMIT_NOFILE");
    limit.rlim_cur = limit.rlim_max;
    /* macOS calls its hard limit unlimited, yet refuses that as a soft
     * limit (EINVAL): halve until it takes. Linux takes the first. */
    while (setrlimit(RLIMIT_NOFILE, &limit) == -1) {
        if (errno != EINVAL || limit.rlim_cur <= 1024) {
            report("setrlimit RLIMIT_NOFILE"); /* not fatal: we run with less */
            break;
        }
        limit.rlim_cur = limit.rlim_cur == RLIM_INFINITY ? 1 << 20 : limit.rlim_cur / 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1)
        die("getrlimit RLIMIT_NOFILE");
    /* shut_down() asks about every descriptor below it: cap it where the
     * limit is absurdly high. */
    return limit.rlim_cur < 1 << 24 ? (int)limit.rlim_cur : 1 << 24;
}

/* Milliseconds on a clock that only goes forward, whatever happens to the
 * time of day. */
static long long monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

/* Writing to a connection the client has closed raises SIGPIPE, whose
 * default action kills the process: one vanished client would take the
 * whole server down. Ignored, the write fails with EPIPE instead, and we
 * deal with that client alone. */
static void ignore_sigpipe(void)
{
    struct sigaction action = {0};
    sigemptyset(&action.sa_mask);
    action.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &action, NULL) == -1)
        die("sigaction SIGPIPE");
}

/* From now on, a call on fd that would have to wait fails with EAGAIN
 * instead. */
static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* The write end of the self-pipe. It is global because a signal handler
 * gets nothing but the signal's number: a global is all it can reach. And
 * volatile sig_atomic_t, the one type C lets a handler rely on: read in
 * one go, never half-written, never cached in a register. It is set before
 * the handler is installed, and never changed while it is. */
static volatile sig_atomic_t signal_pipe_write_end = -1;

/* Runs when SIGINT or SIGTERM arrives, wherever the server is. It may only
 * make async-signal-safe calls (signal-safety(7)); write() is one. The byte
 * makes the pipe's read end readable, and the selector wakes. */
static void on_stop_signal(int signal_number)
{
    (void)signal_number;
    int saved_errno = errno; /* we may be between a call and its errno check */
    char byte = 1;
    if (write(signal_pipe_write_end, &byte, 1) == -1) {
        /* EAGAIN: the pipe is full of earlier bytes, and one is enough. */
    }
    errno = saved_errno;
}

/* The self-pipe trick. Chapters 02 to 04 each needed their mechanism's
 * own answer to "a signal while we wait": pselect(), ppoll(), a signalfd.
 * A pipe works with every mechanism: the handler writes a byte into it, and
 * its read end is registered like any socket, so a signal is just one more
 * readable descriptor. There is no moment when it can be missed: a byte
 * written before the wait makes the wait return at once, and a byte stays
 * readable until we read it, however busy the loop is. Both ends are
 * non-blocking, so neither the handler nor our draining can ever hang.
 * (Python's signal.set_wakeup_fd() is the same trick.) Returns the read
 * end. */
static int open_signal_pipe(void)
{
    int ends[2];
    if (pipe(ends) == -1)
        die("pipe");
    for (int i = 0; i < 2; i++) {
        if (set_nonblocking(ends[i]) == -1 || fcntl(ends[i], F_SETFD, FD_CLOEXEC) == -1)
            die("fcntl signal pipe");
    }
    signal_pipe_write_end = ends[1];

    struct sigaction action = {0};
    /* Let the other stop signal wait while the handler runs. SA_RESTART:
     * a log line's write() interrupted by the signal goes on instead of
     * failing. The wait in the selector is never restarted whatever we
     * say (signal(7)), and it need not be: the pipe wakes it anyway. */
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGTERM);
    action.sa_flags = SA_RESTART;
    action.sa_handler = on_stop_signal;
    if (sigaction(SIGINT, &action, NULL) == -1 || sigaction(SIGTERM, &action, NULL) == -1)
        die("sigaction");
    return ends[0];
}

/* "127.0.0.1:5000" or "[::1]:5000", the way the logs show addresses. */
static void format_address(const struct sockaddr_storage *address, char *text)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(text, ADDRESS_TEXT_SIZE, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)address;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(text, ADDRESS_TEXT_SIZE, "%s:%u", host, (unsigned)ntohs(in4->sin_port));
    }
}

/* Returns a listening socket on one address, or -1 (the reason reported). */
static int bind_and_listen(const struct addrinfo *address)
{
    char where[ADDRESS_TEXT_SIZE + 8] = "bind ";
    struct sockaddr_storage storage = {0};
    memcpy(&storage, address->ai_addr, address->ai_addrlen);
    format_address(&storage, where + strlen(where));

    int fd = socket(address->ai_family, address->ai_socktype, address->ai_protocol);
    if (fd == -1) {
        report("socket");
        return -1;
    }
    /* Lets a restarted server bind at once, even while connections of its
     * previous run still linger in the kernel (TIME_WAIT). */
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1)
        report("setsockopt SO_REUSEADDR");
    if (bind(fd, address->ai_addr, address->ai_addrlen) == -1) {
        report(where);
        close(fd);
        return -1;
    }
    /* SOMAXCONN: let the kernel queue as many not-yet-accepted clients as
     * it allows. */
    if (listen(fd, SOMAXCONN) == -1) {
        report("listen");
        close(fd);
        return -1;
    }
    /* Non-blocking: accept() says EAGAIN once the queue is empty, so we can
     * take every waiting client in one go. */
    if (set_nonblocking(fd) == -1) {
        report("fcntl O_NONBLOCK");
        close(fd);
        return -1;
    }
    return fd;
}

/* getaddrinfo() turns "localhost", "::1" or "0.0.0.0" into addresses to
 * bind to; we take the first that works. Exits with status 1 if none does. */
static int listen_on(const char *host, const char *port)
{
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC; /* IPv4 or IPv6, whatever HOST is */
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    struct addrinfo *addresses;
    int status = getaddrinfo(host, port, &hints, &addresses);
    if (status != 0) {
        fprintf(stderr, "echo-server: %s: %s\n", host, gai_strerror(status));
        exit(1);
    }
    int fd = -1;
    for (struct addrinfo *a = addresses; a != NULL && fd == -1; a = a->ai_next)
        fd = bind_and_listen(a);
    freeaddrinfo(addresses);
    if (fd == -1)
        exit(1);
    return fd;
}

/* The ready line, "listening on ADDR:PORT", with the port the kernel really
 * chose (with -p 0 it picks a free one). Tests and tools wait for it. */
static void announce(int listen_fd)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    char text[ADDRESS_TEXT_SIZE];
    if (getsockname(listen_fd, (struct sockaddr *)&address, &length) == -1)
        die("getsockname");
    format_address(&address, text);
    log_line("listening on", text);
}

/* ---- Connections -------------------------------------------------------- */

static void report_client_error(const struct server *server, const char *call,
                                const struct connection *connection)
{
    char what[ADDRESS_TEXT_SIZE + 24];
    if (server->verbosity == QUIET) /* a client's trouble is per-connection news */
        return;
    snprintf(what, sizeof what, "%s %s", call, connection->peer);
    report(what);
}

/* While accept() has no descriptor to give us (EMFILE), the selector must
 * not report the listening socket. A key cannot wait for nothing, so we
 * unregister it, and register it again to resume. Called at every close,
 * so it does something only on a change. */
static void set_accepting(struct server *server, bool accepting)
{
    if (accepting == server->accepting)
        return;
    int status = accepting ? selector_register(server->selector, server->listen_fd,
                                               SELECTOR_READ, &server->listener)
                           : selector_unregister(server->selector, server->listen_fd);
    if (status == -1) {
        /* Not worth dying for: the clients we have can still be served, and
         * the kernel's refusal (say, short of memory) may pass. We stay as
         * we were and try again later: at the next close, or a second from
         * now (not at once: that would spin). */
        report(accepting ? "selector_register listening socket"
                         : "selector_unregister listening socket");
        server->retry_accepting_at = monotonic_ms() + 1000;
        return;
    }
    server->accepting = accepting;
}

static void close_connection(struct server *server, struct connection *connection)
{
    /* Unregister first: once closed, the number may come back at the next
     * accept(), for another client. */
    int fd = connection->fd;
    if (selector_unregister(server->selector, fd) == -1)
        report_client_error(server, "selector_unregister", connection);
    if (close(fd) == -1)
        report_client_error(server, "close", connection);
    if (server->verbosity != QUIET)
        log_line("closed connection from", connection->peer);
    free(connection->unsent);
    free(connection);
    /* A descriptor is free again: if accept() had run out, try again. */
    set_accepting(server, true);
}

/* Sends what the kernel takes now and keeps the rest for later. Returns
 * what the connection waits for next: to read if all has gone, to write
 * if some is kept, or CLOSE. */
static unsigned send_or_keep(struct server *server, struct connection *connection,
                             const char *bytes, size_t length)
{
    ssize_t sent = send(connection->fd, bytes, length, 0);
    if (sent == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            report_client_error(server, "send to", connection);
            return CLOSE;
        }
        sent = 0; /* the kernel's send buffer is full: keep it all */
    }
    size_t rest = length - (size_t)sent;
    if (rest == 0)
        return SELECTOR_READ; /* the usual case: nothing to keep, nothing copied */
    connection->unsent = malloc(rest);
    if (connection->unsent == NULL) {
        report("malloc");
        return CLOSE;
    }
    memcpy(connection->unsent, bytes + sent, rest);
    connection->unsent_length = rest;
    connection->unsent_done = 0;
    /* Wait for room to write, and stop reading until it's all gone. */
    return SELECTOR_WRITE;
}

/* The selector says: bytes to read, or end-of-file, or an error to
 * collect. */
static unsigned on_readable(struct server *server, struct connection *connection)
{
    ssize_t received = recv(connection->fd, server->buffer, sizeof server->buffer, 0);
    if (received == 0) {
        /* End-of-file: the client is done sending. We read only while
         * nothing is waiting to go out, so everything it sent has been
         * echoed to the kernel already: close. */
        return CLOSE;
    }
    if (received == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return SELECTOR_READ; /* nothing after all; we will hear again */
        report_client_error(server, "recv from", connection);
        return CLOSE;
    }
    if (server->verbosity == VERBOSE) {
        printf("echoing %zd bytes to %s\n", received, connection->peer);
        fflush(stdout);
    }
    return send_or_keep(server, connection, server->buffer, (size_t)received);
}

/* The selector says: room to write, so more of the unsent bytes can go.
 * Once they all have, the connection goes back to reading. */
static unsigned on_writable(struct server *server, struct connection *connection)
{
    size_t left = connection->unsent_length - connection->unsent_done;
    ssize_t sent = send(connection->fd, connection->unsent + connection->unsent_done, left, 0);
    if (sent == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return SELECTOR_WRITE;
        report_client_error(server, "send to", connection);
        return CLOSE;
    }
    connection->unsent_done += (size_t)sent; /* a short write sends less */
    if (connection->unsent_done < connection->unsent_length)
        return SELECTOR_WRITE;
    free(connection->unsent);
    connection->unsent = NULL;
    connection->unsent_length = connection->unsent_done = 0;
    return SELECTOR_READ;
}

/* A connection's callback. One of the two halves above does the work and
 * answers what to wait for next; this is the one place that acts on the
 * answer. Asking the selector for the same events again costs no system
 * call, so it can simply be told after every event. */
static void on_connection_ready(struct server *server, struct handler *self, unsigned events)
{
    struct connection *connection = (struct connection *)self;
    unsigned next = (events & SELECTOR_WRITE) ? on_writable(server, connection)
                                              : on_readable(server, connection);
    if (next == CLOSE) {
        close_connection(server, connection);
        return;
    }
    if (selector_modify(server->selector, connection->fd, next, &connection->handler) == -1) {
        /* The kernel refused: the connection could hang unserved. */
        report_client_error(server, "selector_modify", connection);
        close_connection(server, connection);
    }
}

/* Nagle's algorithm makes the kernel hold back a small write while an
 * earlier one is still unacknowledged, hoping to merge them. An echo server
 * has nothing to merge: held back, the tail of an echo waits for the
 * client's acknowledgement, which the client may delay (on Linux by 40 ms
 * at least, and up to 200 ms). */
static void disable_nagle(int fd)
{
    int on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
        report("setsockopt TCP_NODELAY"); /* not fatal: only slower */
}

static void add_connection(struct server *server, int fd,
                           const struct sockaddr_storage *address)
{
    struct connection *connection = calloc(1, sizeof *connection);
    if (connection == NULL) {
        report("calloc"); /* no memory for this client: turn it away */
        close(fd);
        return;
    }
    connection->handler.on_ready = on_connection_ready;
    connection->fd = fd;
    format_address(address, connection->peer);
    if (selector_register(server->selector, fd, SELECTOR_READ, &connection->handler) == -1) {
        if (errno == ERANGE) /* chapter 02's limit, with -b select */
            fprintf(stderr, "echo-server: descriptor %d is beyond what the %s backend"
                            " can watch: closing connection from %s\n",
                    fd, selector_name(server->selector), connection->peer);
        else
            report("selector_register");
        free(connection);
        close(fd);
        return;
    }
    if (server->verbosity != QUIET)
        log_line("accepted connection from", connection->peer);
}

/* accept() can fail for reasons that are no bug of ours. Returns whether to
 * go on accepting now. */
static bool accept_failed(struct server *server)
{
    switch (errno) {
    case EAGAIN: /* the queue is empty: all waiting clients taken */
#if EWOULDBLOCK != EAGAIN /* the same on Linux; POSIX allows them to differ */
    case EWOULDBLOCK:
#endif
        return false;
    case EINTR:        /* a signal arrived first */
    case ECONNABORTED: /* the client gave up before we accepted it */
        return true;
    case EMFILE: /* no descriptor left for us ... */
    case ENFILE: /* ... or for anyone on the system */
    case ENOBUFS:
    case ENOMEM:
        /* The client stays queued in the kernel, so the listening socket
         * stays readable: if we went on watching it, the selector would
         * return at once, accept() fail at once, and the server would spin.
         * We stop watching it until a connection closes, or for a second
         * at most (the shortage may be someone else's). */
        report("accept");
        set_accepting(server, false);
        server->retry_accepting_at = monotonic_ms() + 1000;
        return false;
    case EBADF: case EINVAL: case ENOTSOCK: case EFAULT:
        die("accept"); /* our own bug: the listening socket is not usable */
    default:
        /* Network errors of the new connection (ENETDOWN, EPROTO, ...) that
         * Linux reports on accept: that one client is lost, we go on.
         * EOPNOTSUPP is one of them: accept(2) also uses it for a socket
         * that is not SOCK_STREAM, but ours is, so here it can only be
         * the new connection's. */
        report("accept");
        return true;
    }
}

/* The listening socket's callback: takes every client that is waiting. */
static void on_client_waiting(struct server *server, struct handler *self, unsigned events)
{
    (void)self, (void)events; /* unused: there is one listener, and it only reads */
    for (;;) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        int fd = accept(server->listen_fd, (struct sockaddr *)&address, &length);
        if (fd == -1) {
            if (accept_failed(server))
                continue;
            return;
        }
        if (set_nonblocking(fd) == -1) {
            report("fcntl O_NONBLOCK");
            close(fd);
            continue;
        }
        disable_nagle(fd);
        add_connection(server, fd, &address);
    }
}

/* The signal pipe's callback: a stop signal came. Reads the pipe empty so
 * that it does not wake us again, and lets the loop end. */
static void on_stop_requested(struct server *server, struct handler *self, unsigned events)
{
    (void)self, (void)events; /* unused, as for the listener */
    char bytes[64];
    while (read(server->signal_pipe, bytes, sizeof bytes) > 0)
        continue;
    server->stopping = true;
}

/* Registers the signal pipe or the listening socket, or exits: without
 * them no signal stops us, or no client gets in. ERANGE is the select
 * backend's limit, for a server started with over a thousand descriptors
 * open already. */
static void register_or_die(struct server *server, int fd, struct handler *handler,
                            const char *what)
{
    if (selector_register(server->selector, fd, SELECTOR_READ, handler) == 0)
        return;
    if (errno == ERANGE)
        fprintf(stderr, "echo-server: %s: descriptor %d is beyond what the %s backend"
                        " can watch\n", what, fd, selector_name(server->selector));
    else
        fprintf(stderr, "echo-server: selector_register %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- The event loop ----------------------------------------------------- */

/* How long the selector may wait, in milliseconds: for ever (-1), unless
 * accepting is paused; then only until it is time to try accept() again. */
static int wait_limit_ms(const struct server *server)
{
    if (server->accepting)
        return -1;
    long long left = server->retry_accepting_at - monotonic_ms();
    return left > 0 ? (int)left : 0;
}

/* The whole loop, and the same for every backend. A callback may close
 * its own connection, and the next accept() may hand its number to a new
 * client in the same batch: selector_next() knows, and never hands an old
 * event to the new key (selector.h). */
static void serve_until_stopped(struct server *server)
{
    while (!server->stopping) {
        if (selector_select(server->selector, wait_limit_ms(server)) == -1)
            die("selector_select");
        if (!server->accepting && monotonic_ms() >= server->retry_accepting_at)
            set_accepting(server, true);
        struct selector_event event;
        /* Once a stop signal has come, serve no one else: shut_down()
         * closes them all anyway. */
        while (!server->stopping && selector_next(server->selector, &event)) {
            struct handler *handler = event.key.data;
            handler->on_ready(server, handler, event.events);
        }
    }
}

/* Closes every connection: the selector's keys are our list of them. A
 * key's callback says what it is: the listener and the signal pipe have
 * callbacks of their own. */
static void shut_down(struct server *server)
{
    puts("shutting down");
    fflush(stdout);
    for (int fd = 0; fd < server->descriptor_limit; fd++) {
        struct selector_key key;
        if (selector_get_key(server->selector, fd, &key) == 0 &&
            ((struct handler *)key.data)->on_ready == on_connection_ready)
            close_connection(server, (struct connection *)key.data);
    }
    selector_close(server->selector);
    close(server->listen_fd);
    close(server->signal_pipe);
    close(signal_pipe_write_end);
}

int main(int argc, char **argv)
{
    struct options options = parse_options(argc, argv);
    /* Static: with the buffer it is too big to be comfortable on the stack. */
    static struct server server;
    server.descriptor_limit = raise_descriptor_limit();
    server.verbosity = options.verbosity;
    ignore_sigpipe();

    server.selector = selector_open(options.backend);
    if (server.selector == NULL)
        die("selector_open");
    /* From here on, a signal waits for us in the pipe. */
    server.signal_pipe = open_signal_pipe();
    server.stopper.on_ready = on_stop_requested;
    register_or_die(&server, server.signal_pipe, &server.stopper, "signal pipe");

    server.listen_fd = listen_on(options.host, options.port);
    server.listener.on_ready = on_client_waiting;
    server.accepting = true;
    register_or_die(&server, server.listen_fd, &server.listener, "listening socket");
    announce(server.listen_fd);

    serve_until_stopped(&server);
    shut_down(&server);
    return 0;
}
