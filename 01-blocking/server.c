/*
 * Chapter 01: a blocking echo server.
 *
 * It accepts one client, sends back every byte that client sends until the
 * client is done, closes the connection, and only then accepts the next
 * client. Every call blocks: accept() waits for a client, recv() waits for
 * bytes, send() waits for room in the kernel's send buffer. That keeps the
 * code straight -- and means a second client waits, unserved, for as long as
 * the first one stays connected. Chapter 02 removes that limit.
 *
 * What later chapters keep from this file: the command line, the ready line,
 * the logs, how a signal stops the server, and the care taken over partial
 * writes, EINTR, SIGPIPE and a full descriptor table.
 *
 *   ./echo-server -p 7000          then, in another terminal:
 *   ../tests/client -p 7000 cat    type a line, see it come back
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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
    /* How much one recv() may return. Bigger means fewer system calls for a
     * client that sends a lot; the kernel hands over whatever it has, up to
     * this much. */
    BUFFER_SIZE = 64 * 1024,
};

static const char USAGE[] =
    "usage: echo-server [-H HOST] [-p PORT] [-q | -v]\n"
    "  -H HOST  address to listen on: IPv4 or IPv6 literal or a name"
    " (default 127.0.0.1)\n"
    "  -p PORT  0-65535 (default 65432; 0 lets the kernel choose)\n"
    "  -q       quiet: log nothing per connection\n"
    "  -v       verbose: also log every echo\n"
    "  -h       print this help and exit\n";

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
 * Any process may raise it up to the hard limit. One client at a time needs
 * few, but every chapter starts the same way, and later ones need thousands. */
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

/* A signal handler may call only async-signal-safe functions (man 7
 * signal-safety): not printf, not exit, not free. write() and _exit() are.
 *
 * Why not set a flag here and check it in the main loop? Because of a race:
 * if the signal lands just after the loop checked the flag and just before it
 * blocks in accept() or recv(), the server sleeps on with the flag set. A
 * blocking server cannot wait for "a client or a signal" at once; chapter 02
 * learns how, with pselect(). Here the handler does the whole shutdown
 * itself, which is safe because this server keeps nothing in user space that
 * must be saved: every log line is already flushed, and on exit the kernel
 * closes every socket, the listening one and the client's. */
static void shut_down_now(int signal_number)
{
    static const char message[] = "shutting down\n";
    (void)signal_number;
    ssize_t ignored = write(STDOUT_FILENO, message, sizeof message - 1);
    (void)ignored; /* nothing sensible to do if stdout is gone */
    _exit(0);
}

static void install_signal_handlers(void)
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

    /* Block both signals while either handler runs, so that a second
     * signal cannot interrupt the first one's write. */
    sigaddset(&action.sa_mask, SIGINT);
    sigaddset(&action.sa_mask, SIGTERM);
    action.sa_handler = shut_down_now;
    if (sigaction(SIGINT, &action, NULL) == -1 ||
        sigaction(SIGTERM, &action, NULL) == -1)
        die("sigaction SIGINT/SIGTERM");
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

/* ---- Serving one client ------------------------------------------------- */

static void report_client_error(const char *call, const char *peer,
                                enum verbosity verbosity)
{
    char what[ADDRESS_TEXT_SIZE + 16];
    if (verbosity == QUIET) /* a client's trouble is per-connection news */
        return;
    snprintf(what, sizeof what, "%s %s", call, peer);
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

/* send() may take fewer bytes than asked (a "short write"), for instance
 * when a signal interrupts it midway; the rest must follow. Returns 0 once
 * every byte is with the kernel, -1 on an error such as the client gone. */
static int send_all(int fd, const char *bytes, size_t length)
{
    while (length > 0) {
        ssize_t sent = send(fd, bytes, length, 0);
        if (sent == -1) {
            if (errno == EINTR) /* a signal arrived before anything was sent */
                continue;
            return -1;
        }
        bytes += sent;
        length -= (size_t)sent;
    }
    return 0;
}

/* Echoes until the client shuts down its side. The buffer bounds our memory
 * whatever the client does: while the client does not read, send() blocks,
 * so we stop reading from it, and the kernel in turn stops the client's
 * writes once our receive buffer is full. That is backpressure, for free. */
static void echo_until_done(int fd, const char *peer, enum verbosity verbosity)
{
    char buffer[BUFFER_SIZE];
    for (;;) {
        ssize_t received = recv(fd, buffer, sizeof buffer, 0);
        if (received == 0) /* end of file: everything sent has been echoed */
            return;
        if (received == -1) {
            if (errno == EINTR)
                continue;
            report_client_error("recv from", peer, verbosity);
            return;
        }
        if (verbosity == VERBOSE) {
            printf("echoing %zd bytes to %s\n", received, peer);
            fflush(stdout);
        }
        if (send_all(fd, buffer, (size_t)received) == -1) {
            report_client_error("send to", peer, verbosity);
            return;
        }
    }
}

/* accept() can fail for reasons that are no bug of ours. The listening
 * socket stays fine in every case; the question is whether to retry now. */
static void handle_accept_error(void)
{
    switch (errno) {
    case EINTR:        /* a signal arrived first */
    case ECONNABORTED: /* the client gave up before we accepted it */
        return;
    case EMFILE: /* no descriptor left for us ... */
    case ENFILE: /* ... or for anyone on the system */
    case ENOBUFS:
    case ENOMEM: {
        /* Retrying at once would fail again at once: a busy loop that burns
         * a CPU. The client stays queued in the kernel meanwhile; we try
         * again in a second, when descriptors may have been freed. */
        struct timespec pause = {1, 0};
        report("accept");
        nanosleep(&pause, NULL);
        return;
    }
    case EBADF: case EINVAL: case ENOTSOCK: case EFAULT:
        die("accept"); /* our own bug: the listening socket is not usable */
    default:
        /* Network errors of the new connection (ENETDOWN, EPROTO, ...) that
         * Linux reports on accept: that one client is lost, we go on.
         * EOPNOTSUPP is one of them: accept(2) also uses it for a socket
         * that is not SOCK_STREAM, but ours is, so here it can only be
         * the new connection's. */
        report("accept");
    }
}

static _Noreturn void serve_forever(int listen_fd, enum verbosity verbosity)
{
    for (;;) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        int fd = accept(listen_fd, (struct sockaddr *)&address, &length);
        if (fd == -1) {
            handle_accept_error();
            continue;
        }
        char peer[ADDRESS_TEXT_SIZE];
        format_address(&address, peer);
        if (verbosity != QUIET)
            log_line("accepted connection from", peer);
        disable_nagle(fd);

        echo_until_done(fd, peer, verbosity);

        if (close(fd) == -1)
            report_client_error("close", peer, verbosity);
        if (verbosity != QUIET)
            log_line("closed connection from", peer);
    }
}

int main(int argc, char **argv)
{
    struct options options = parse_options(argc, argv);
    raise_descriptor_limit();
    install_signal_handlers();
    int listen_fd = listen_on(options.host, options.port);
    announce(listen_fd);
    serve_forever(listen_fd, options.verbosity); /* left only by a signal */
}
