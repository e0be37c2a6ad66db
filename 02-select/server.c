/*
 * Chapter 02: many clients in one thread, with select().
 *
 * Chapter 01 blocked in recv() on one client while others waited. Here no
 * call ever blocks on a client: every socket is non-blocking, and the only
 * place the server waits is pselect(), which sleeps until one of many
 * sockets is ready -- a new client to accept, bytes to read, room to write.
 * The server then does just what is ready, and goes back to wait. That loop
 * is an event loop.
 *
 * Not blocking brings its own work, which this file shows:
 *  - send() may take only part of the bytes (or none: EAGAIN). What it did
 *    not take is kept per connection and sent when select() says the socket
 *    is writable again.
 *  - While a connection has bytes waiting to go out, we stop reading from it.
 *    That caps its memory at one read's worth, and makes a client that never
 *    reads slow down only itself (backpressure).
 *  - A signal must stop the server even while it waits in select():
 *    pselect() lets signals in only while it waits, so none slips by.
 *  - An fd_set holds descriptors below FD_SETSIZE (1024) only.
 *
 *   ./echo-server -p 7000          then, in other terminals:
 *   ../tests/client -p 7000 cat    several at once: all are served
 */
#define _POSIX_C_SOURCE 200809L

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
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum verbosity { QUIET, NORMAL, VERBOSE };

struct options {
    const char *host;
    const char *port;
    enum verbosity verbosity;
};

enum {
    /* Room for "[IPv6 address]:65535" and the terminating NUL. */
    ADDRESS_TEXT_SIZE = INET6_ADDRSTRLEN + 8,
    /* How much one recv() may return. It is also the most a connection ever
     * holds unsent: we read again only once everything has gone out. */
    BUFFER_SIZE = 64 * 1024,
};

/* One client. An idle connection costs just this struct: the bytes it has
 * not been able to send live in a buffer of their own, allocated only while
 * there are any. */
struct connection {
    int fd;
    char *unsent;         /* bytes the kernel did not take yet, or NULL */
    size_t unsent_length; /* how many there are ...                     */
    size_t unsent_done;   /* ... and how many of them have gone since   */
    char peer[ADDRESS_TEXT_SIZE];
};

struct server {
    int listen_fd;
    enum verbosity verbosity;
    /* False while accept() has no descriptor to give us (EMFILE): we then
     * stop watching the listening socket until a connection closes, or
     * until retry_accepting_at (on monotonic_ms()'s clock) has passed. */
    bool accepting;
    long long retry_accepting_at;
    /* The connection table, indexed by descriptor; NULL where there is none.
     * select() cannot watch a descriptor >= FD_SETSIZE anyway. */
    struct connection *connections[FD_SETSIZE];
    int highest_fd; /* select() wants one more than the highest it watches */
    /* Every read goes here first, and most bytes go straight back out. */
    char buffer[BUFFER_SIZE];
};

static const char USAGE[] =
    "usage: echo-server [-H HOST] [-p PORT] [-q | -v]\n"
    "  -H HOST  address to listen on: IPv4 or IPv6 literal or a name"
    " (default 127.0.0.1)\n"
    "  -p PORT  0-65535 (default 65432; 0 lets the kernel choose)\n"
    "  -q       quiet: log nothing per connection\n"
    "  -v       verbose: also log every echo\n"
    "  -h       print this help and exit\n";

/* Set by the signal handler, read by the event loop. It has to be global: a
 * handler gets nothing but the signal's number. volatile sig_atomic_t is the
 * type a handler may write and the program read without tearing. */
static volatile sig_atomic_t stop_requested = 0;

/* ---- Reporting ---------------------------------------------------------- */

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
    fprintf(stderr, "echo-server: %s%s\n%s", problem, detail, USAGE);
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

static struct options parse_options(int argc, char **argv)
{
    struct options options = {"127.0.0.1", "65432", NORMAL};
    int quiet = 0, verbose = 0;
    char flag[] = "-?";
    int opt;

    opterr = 0; /* we word the errors ourselves, in the usual shape */
    while ((opt = getopt(argc, argv, ":H:p:qvh")) != -1) {
        switch (opt) {
        case 'H': options.host = optarg; break;
        case 'p': options.port = optarg; break;
        case 'q': quiet = 1; break;
        case 'v': verbose = 1; break;
        case 'h': fputs(USAGE, stdout); exit(0);
        case ':': flag[1] = (char)optopt; usage_error("missing value for ", flag);
        default: flag[1] = (char)optopt; usage_error("unknown option ", flag);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument ", argv[optind]);
    if (!is_valid_port(options.port))
        usage_error("port must be a number from 0 to 65535: ", options.port);
    if (quiet && verbose)
        usage_error("-q and -v exclude each other", "");
    options.verbosity = quiet ? QUIET : verbose ? VERBOSE : NORMAL;
    return options;
}

/* ---- Start-up ----------------------------------------------------------- */

/* A process may open only so many descriptors: the soft limit, often 1024.
 * Any process may raise it up to the hard limit. With select() we can use
 * no more than FD_SETSIZE anyway, but every chapter starts the same way. */
static void raise_descriptor_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1) {
        report("getrlimit RLIMIT_NOFILE");
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) == -1)
        report("setrlimit RLIMIT_NOFILE"); /* not fatal: we run with less */
}

/* Milliseconds on a clock that only goes forward, whatever happens to the
 * time of day. */
static long long monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

static void request_stop(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* Chapter 01's handler had to do the whole shutdown itself, because a
 * blocking server cannot wait for "a client or a signal". pselect() can.
 * SIGINT and SIGTERM stay blocked all the time -- one that arrives is kept
 * pending by the kernel -- except inside pselect(), which swaps in
 * *wait_mask (the same signals, unblocked) and starts waiting in one atomic
 * step. A signal pending or arriving then interrupts the wait (EINTR), the
 * handler sets the flag, and the loop sees it. No moment is left in which
 * the flag could be set but the loop asleep.
 *
 * One catch: pselect() lets a pending signal in only when it would have to
 * wait. If some socket is ready at once, it returns that, and the signal
 * stays pending. A server that is never idle would never see it; so the
 * loop also asks the kernel, with stop_signal_pending(). */
static void install_signal_handlers(sigset_t *wait_mask)
{
    struct sigaction action = {0};
    sigemptyset(&action.sa_mask);

    /* Writing to a connection the client has closed raises SIGPIPE, whose
     * default action kills the process: one vanished client would take the
     * whole server down. Ignored, the write fails with EPIPE instead, and we
     * deal with that client alone. */
    action.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &action, NULL) == -1)
        die("sigaction SIGPIPE");

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, wait_mask) == -1)
        die("sigprocmask");
    sigdelset(wait_mask, SIGINT);
    sigdelset(wait_mask, SIGTERM);

    action.sa_handler = request_stop;
    if (sigaction(SIGINT, &action, NULL) == -1 ||
        sigaction(SIGTERM, &action, NULL) == -1)
        die("sigaction SIGINT/SIGTERM");
}

static bool stop_signal_pending(void)
{
    sigset_t pending;
    if (sigpending(&pending) == -1)
        die("sigpending");
    return sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM);
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

/* From now on, a call on fd that would have to wait fails with EAGAIN
 * instead. */
static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1)
        return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
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
     * it allows. Non-blocking: accept() says EAGAIN once the queue is
     * empty, so we can take every waiting client in one go. */
    if (listen(fd, SOMAXCONN) == -1) {
        report("listen");
        close(fd);
        return -1;
    }
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
    char what[ADDRESS_TEXT_SIZE + 16];
    if (server->verbosity == QUIET) /* a client's trouble is per-connection news */
        return;
    snprintf(what, sizeof what, "%s %s", call, connection->peer);
    report(what);
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
    connection->fd = fd;
    format_address(address, connection->peer);
    server->connections[fd] = connection;
    if (fd > server->highest_fd)
        server->highest_fd = fd;
    if (server->verbosity != QUIET)
        log_line("accepted connection from", connection->peer);
}

static void close_connection(struct server *server, struct connection *connection)
{
    int fd = connection->fd;
    if (close(fd) == -1)
        report_client_error(server, "close", connection);
    if (server->verbosity != QUIET)
        log_line("closed connection from", connection->peer);
    server->connections[fd] = NULL;
    while (server->highest_fd > server->listen_fd &&
           server->connections[server->highest_fd] == NULL)
        server->highest_fd--;
    free(connection->unsent);
    free(connection);
    /* A descriptor is free again: if accept() had run out, try again. */
    server->accepting = true;
}

/* Sends what the kernel takes now and keeps the rest for later. Returns
 * false if the connection failed (and is closed). */
static bool send_or_keep(struct server *server, struct connection *connection,
                         const char *bytes, size_t length)
{
    ssize_t sent = send(connection->fd, bytes, length, 0);
    if (sent == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            report_client_error(server, "send to", connection);
            close_connection(server, connection);
            return false;
        }
        sent = 0; /* the kernel's send buffer is full: keep it all */
    }
    size_t rest = length - (size_t)sent;
    if (rest == 0)
        return true; /* the usual case: nothing to keep, nothing copied */
    connection->unsent = malloc(rest);
    if (connection->unsent == NULL) {
        report("malloc");
        close_connection(server, connection);
        return false;
    }
    memcpy(connection->unsent, bytes + sent, rest);
    connection->unsent_length = rest;
    connection->unsent_done = 0;
    return true;
}

/* select() says: bytes to read, or end-of-file, or an error to collect. */
static void on_readable(struct server *server, struct connection *connection)
{
    ssize_t received = recv(connection->fd, server->buffer, sizeof server->buffer, 0);
    if (received == 0) {
        /* End-of-file: the client is done sending. We read only while
         * nothing is waiting to go out, so everything it sent has been
         * echoed to the kernel already: close. */
        close_connection(server, connection);
        return;
    }
    if (received == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return; /* nothing after all; select() will tell us again */
        report_client_error(server, "recv from", connection);
        close_connection(server, connection);
        return;
    }
    if (server->verbosity == VERBOSE) {
        printf("echoing %zd bytes to %s\n", received, connection->peer);
        fflush(stdout);
    }
    send_or_keep(server, connection, server->buffer, (size_t)received);
}

/* select() says: room to write, so more of the unsent bytes can go. Once
 * they all have, the connection goes back to reading. */
static void on_writable(struct server *server, struct connection *connection)
{
    size_t left = connection->unsent_length - connection->unsent_done;
    ssize_t sent = send(connection->fd, connection->unsent + connection->unsent_done, left, 0);
    if (sent == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        report_client_error(server, "send to", connection);
        close_connection(server, connection);
        return;
    }
    connection->unsent_done += (size_t)sent; /* a short write sends less */
    if (connection->unsent_done == connection->unsent_length) {
        free(connection->unsent);
        connection->unsent = NULL;
        connection->unsent_length = connection->unsent_done = 0;
    }
}

/* accept() can fail for reasons that are no bug of ours. Returns whether to
 * go on accepting now. */
static bool accept_failed(struct server *server)
{
    switch (errno) {
    case EAGAIN: /* EWOULDBLOCK is the same on Linux */
        return false; /* the queue is empty: all waiting clients taken */
    case EINTR:        /* a signal arrived first */
    case ECONNABORTED: /* the client gave up before we accepted it */
        return true;
    case EMFILE: /* no descriptor left for us ... */
    case ENFILE: /* ... or for anyone on the system */
    case ENOBUFS:
    case ENOMEM:
        /* The client stays queued in the kernel, so the listening socket
         * stays readable: if we went on watching it, select() would return
         * at once, accept() fail at once, and the server would spin. We stop
         * watching it until a connection closes, or for a second at most
         * (the shortage may be someone else's). */
        report("accept");
        server->accepting = false;
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

static void accept_clients(struct server *server)
{
    for (;;) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        int fd = accept(server->listen_fd, (struct sockaddr *)&address, &length);
        if (fd == -1) {
            if (accept_failed(server))
                continue;
            return;
        }
        if (fd >= FD_SETSIZE) {
            /* FD_SET() on it would write past the end of the fd_set. */
            char peer[ADDRESS_TEXT_SIZE];
            format_address(&address, peer);
            fprintf(stderr, "echo-server: descriptor %d is beyond select()'s"
                            " FD_SETSIZE (%d): closing connection from %s\n",
                    fd, FD_SETSIZE, peer);
            close(fd);
            continue;
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

/* ---- The event loop ----------------------------------------------------- */

/* select() forgets: it overwrites the sets with what is ready. So before
 * every call we say again what we wait for. A connection with unsent bytes
 * waits for room to write, and is not read from meanwhile (backpressure);
 * any other waits for bytes to read. Returns the first argument select()
 * wants: one more than the highest descriptor. */
static int build_interest(const struct server *server, fd_set *readable, fd_set *writable)
{
    FD_ZERO(readable);
    FD_ZERO(writable);
    if (server->accepting)
        FD_SET(server->listen_fd, readable);
    for (int fd = 0; fd <= server->highest_fd; fd++) {
        const struct connection *connection = server->connections[fd];
        if (connection == NULL)
            continue;
        if (connection->unsent != NULL)
            FD_SET(fd, writable);
        else
            FD_SET(fd, readable);
    }
    return server->highest_fd + 1;
}

/* Serves whatever select() found ready. A handler may close its
 * connection, which leaves NULL in the table: hence the check. New clients
 * come last: they were in no set, so this round has nothing for them. */
static void dispatch(struct server *server, const fd_set *readable, const fd_set *writable)
{
    for (int fd = 0; fd <= server->highest_fd; fd++) {
        struct connection *connection = server->connections[fd];
        if (connection == NULL)
            continue;
        if (FD_ISSET(fd, readable))
            on_readable(server, connection);
        else if (FD_ISSET(fd, writable))
            on_writable(server, connection);
    }
    if (FD_ISSET(server->listen_fd, readable))
        accept_clients(server);
}

/* How long select() may sleep: for ever, unless accepting is paused; then
 * only until it is time to try accept() again. */
static struct timespec *wait_limit(const struct server *server, struct timespec *limit)
{
    if (server->accepting)
        return NULL;
    long long left = server->retry_accepting_at - monotonic_ms();
    if (left < 0)
        left = 0;
    *limit = (struct timespec){.tv_sec = left / 1000, .tv_nsec = left % 1000 * 1000000};
    return limit;
}

static void serve_until_stopped(struct server *server, const sigset_t *wait_mask)
{
    while (!stop_requested && !stop_signal_pending()) {
        fd_set readable, writable;
        int nfds = build_interest(server, &readable, &writable);
        struct timespec limit;
        int ready = pselect(nfds, &readable, &writable, NULL,
                            wait_limit(server, &limit), wait_mask);
        if (ready == -1) {
            if (errno == EINTR) /* a signal: the loop's condition decides */
                continue;
            die("pselect");
        }
        if (!server->accepting && monotonic_ms() >= server->retry_accepting_at)
            server->accepting = true;
        dispatch(server, &readable, &writable);
    }
}

static void shut_down(struct server *server)
{
    puts("shutting down");
    fflush(stdout);
    for (int fd = 0; fd <= server->highest_fd; fd++) {
        if (server->connections[fd] != NULL)
            close_connection(server, server->connections[fd]);
    }
    close(server->listen_fd);
}

int main(int argc, char **argv)
{
    struct options options = parse_options(argc, argv);
    raise_descriptor_limit();
    sigset_t wait_mask;
    install_signal_handlers(&wait_mask);

    /* Static: the table and the buffer make it about 72 KiB, too big to be
     * comfortable on the stack. */
    static struct server server;
    server.listen_fd = listen_on(options.host, options.port);
    if (server.listen_fd >= FD_SETSIZE) {
        /* Only if we were started with over a thousand descriptors open,
         * inherited from our parent. FD_SET() on it would write past the
         * end of the fd_set, and without it no client gets in. */
        fprintf(stderr, "echo-server: listening socket: descriptor %d is beyond"
                        " select()'s FD_SETSIZE (%d)\n", server.listen_fd, FD_SETSIZE);
        return 1;
    }
    server.verbosity = options.verbosity;
    server.accepting = true;
    server.highest_fd = server.listen_fd;
    announce(server.listen_fd);

    serve_until_stopped(&server, &wait_mask);
    shut_down(&server);
    return 0;
}
