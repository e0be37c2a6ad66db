/*
 * Chapter 03: many clients in one thread, with poll().
 *
 * Chapter 02's select() stops at FD_SETSIZE: a descriptor of 1024 or more
 * does not fit in an fd_set, so the server could hold about a thousand
 * clients. poll() takes an array of struct pollfd instead -- a descriptor,
 * the events we wait for, the events that happened -- as long as we like.
 * With the descriptor limit raised, this server holds tens of thousands.
 *
 * The array is ours to keep, and unlike fd_sets it survives the call: we
 * set a connection's interest (POLLIN or POLLOUT) when it changes, not
 * before every wait. The work is in keeping the array in step with the
 * connection table as clients come and go:
 *  - a new client is appended to the array, and remembers its slot;
 *  - a leaving client's slot is filled by the array's last entry, so the
 *    array stays dense and poll() sees no holes.
 *
 * What does not change: every poll() still hands the kernel the whole
 * array, and the kernel and then we look at every entry, idle or not. The
 * cost of one wake-up grows with the number of connections. Chapter 04.
 *
 *   ./echo-server -p 7000          then, in other terminals:
 *   ../tests/client -p 7000 cat    or a few thousand: ../tests/client -p 7000 echo -c 5000
 */
/* ppoll(), poll()'s version of pselect(), is Linux's (and, since 2024, in
 * POSIX). glibc declares it only when asked for its extensions. */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
    nfds_t slot;          /* where this connection's pollfd is in the array */
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
     * A descriptor is below the process's limit on them, so the table has
     * that many entries, and so does the pollfd array. */
    struct connection **connections;
    int capacity;
    /* What poll() watches: pollfds[0] is the listening socket, the rest are
     * connections, with no holes. */
    struct pollfd *pollfds;
    nfds_t watched; /* entries in use */
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
 * Any process may raise it up to the hard limit, and this server needs one
 * descriptor per client. Returns the limit we got. */
static int raise_descriptor_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1)
        die("getrlimit RLIMIT_NOFILE");
    rlim_t wanted = limit.rlim_max;
    limit.rlim_cur = wanted;
    if (setrlimit(RLIMIT_NOFILE, &limit) == -1)
        report("setrlimit RLIMIT_NOFILE"); /* not fatal: we run with less */
    if (getrlimit(RLIMIT_NOFILE, &limit) == -1)
        die("getrlimit RLIMIT_NOFILE");
    /* A table entry per descriptor: cap it where the limit is absurdly high. */
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

static void request_stop(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* Chapter 01's handler had to do the whole shutdown itself, because a
 * blocking server cannot wait for "a client or a signal". ppoll() can, as
 * pselect() did in chapter 02.
 * SIGINT and SIGTERM stay blocked all the time -- one that arrives is kept
 * pending by the kernel -- except inside ppoll(), which swaps in
 * *wait_mask (the same signals, unblocked) and starts waiting in one atomic
 * step. A signal pending or arriving then interrupts the wait (EINTR), the
 * handler sets the flag, and the loop sees it. No moment is left in which
 * the flag could be set but the loop asleep.
 *
 * One catch: ppoll() lets a pending signal in only when it would have to
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
    connection->slot = server->watched++;
    server->pollfds[connection->slot] = (struct pollfd){.fd = fd, .events = POLLIN};
    if (server->verbosity != QUIET)
        log_line("accepted connection from", connection->peer);
}

/* While accept() has no descriptor to give us (EMFILE), poll() must not
 * watch the listening socket: events 0 makes it skip the entry. */
static void set_accepting(struct server *server, bool accepting)
{
    server->accepting = accepting;
    server->pollfds[0].events = accepting ? POLLIN : 0;
}

static void close_connection(struct server *server, struct connection *connection)
{
    int fd = connection->fd;
    if (close(fd) == -1)
        report_client_error(server, "close", connection);
    if (server->verbosity != QUIET)
        log_line("closed connection from", connection->peer);
    /* Fill the hole with the array's last entry, and tell that entry's
     * connection where it went (it may be this very one). */
    struct pollfd last = server->pollfds[--server->watched];
    server->pollfds[connection->slot] = last;
    server->connections[last.fd]->slot = connection->slot;
    server->connections[fd] = NULL;
    free(connection->unsent);
    free(connection);
    /* A descriptor is free again: if accept() had run out, try again. */
    set_accepting(server, true);
}

/* What poll() should watch this connection for: POLLIN, bytes to read, or
 * POLLOUT, room to write. The change holds from the next poll() on. */
static void watch(struct server *server, const struct connection *connection,
                  short events)
{
    server->pollfds[connection->slot].events = events;
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
    watch(server, connection, POLLOUT); /* and stop reading until it's gone */
    return true;
}

/* poll() says: bytes to read, or end-of-file, or an error to collect. */
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
            return; /* nothing after all; poll() will tell us again */
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

/* poll() says: room to write, so more of the unsent bytes can go. Once
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
        watch(server, connection, POLLIN);
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
         * stays readable: if we went on watching it, poll() would return
         * at once, accept() fail at once, and the server would spin. We stop
         * watching it until a connection closes, or for a second at most
         * (the shortage may be someone else's). */
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
        if (fd >= server->capacity) {
            /* Only if the limit was raised since start-up, or is bigger than
             * the table we were willing to allocate. */
            fprintf(stderr, "echo-server: accept: descriptor %d is beyond"
                            " the connection table; closing it\n", fd);
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

/* Serves whatever poll() found ready. Whatever it says of a connection --
 * ready, hung up, in error -- the call we would make next (recv or send)
 * finds out and deals with it. A handler may close its connection, which
 * moves the array's last entry into its slot: walking the array from the
 * end means that entry has been served already. (Walking forwards would
 * skip it this round; poll() reports it again at the next call, so it is
 * only served late -- no test can tell the two apart.) New clients come
 * last. */
static void dispatch(struct server *server)
{
    for (nfds_t slot = server->watched - 1; slot > 0; slot--) {
        const struct pollfd *entry = &server->pollfds[slot];
        if (entry->revents == 0)
            continue;
        struct connection *connection = server->connections[entry->fd];
        if (connection->unsent == NULL)
            on_readable(server, connection);
        else
            on_writable(server, connection);
    }
    if (server->pollfds[0].revents != 0)
        accept_clients(server);
}

/* How long ppoll() may sleep: for ever, unless accepting is paused; then
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
        struct timespec limit;
        int ready = ppoll(server->pollfds, server->watched,
                          wait_limit(server, &limit), wait_mask);
        if (ready == -1) {
            if (errno == EINTR) /* a signal: the loop's condition decides */
                continue;
            die("ppoll");
        }
        if (!server->accepting && monotonic_ms() >= server->retry_accepting_at)
            set_accepting(server, true);
        dispatch(server);
    }
}

static void shut_down(struct server *server)
{
    puts("shutting down");
    fflush(stdout);
    while (server->watched > 1)
        close_connection(server, server->connections[server->pollfds[1].fd]);
    close(server->listen_fd);
    free(server->connections);
    free(server->pollfds);
}

int main(int argc, char **argv)
{
    struct options options = parse_options(argc, argv);
    int descriptor_limit = raise_descriptor_limit();
    sigset_t wait_mask;
    install_signal_handlers(&wait_mask);

    /* Static: with the buffer it is too big to be comfortable on the stack.
     * The two arrays get one entry per possible descriptor. calloc() only
     * reserves the address space; memory is used as entries are. */
    static struct server server;
    server.capacity = descriptor_limit;
    server.connections = calloc((size_t)descriptor_limit, sizeof *server.connections);
    server.pollfds = calloc((size_t)descriptor_limit, sizeof *server.pollfds);
    if (server.connections == NULL || server.pollfds == NULL)
        die("calloc");
    server.listen_fd = listen_on(options.host, options.port);
    server.verbosity = options.verbosity;
    server.pollfds[0] = (struct pollfd){.fd = server.listen_fd, .events = POLLIN};
    server.watched = 1;
    server.accepting = true;
    announce(server.listen_fd);

    serve_until_stopped(&server, &wait_mask);
    shut_down(&server);
    return 0;
}
