/*
 * Chapter 06: completion instead of readiness, with io_uring.
 *
 * Chapters 02 to 05 ask the kernel "which sockets are ready?" and then make
 * the calls themselves: epoll_wait(), then recv(), then send(), one system
 * call each. io_uring turns the question round. We hand the kernel the
 * calls themselves -- "receive on this socket", "send these bytes" -- as
 * entries in a submission queue, and it tells us when each is *done*, with
 * its result, in a completion queue. Both queues are memory the kernel and
 * we share (uring.c), so one io_uring_enter() submits every new request and
 * waits for completions, and the requests themselves cost no system call.
 *
 * Completion changes who owns what, and that is this chapter's lesson:
 *  - a buffer handed to the kernel is the kernel's until its completion
 *    arrives. Closing a connection means cancelling what is in flight and
 *    waiting for every completion before its memory goes (begin_close);
 *  - a send may complete with fewer bytes than asked: the rest goes in a
 *    new send, and only one send per connection is ever in flight, so
 *    bytes never reorder (on_sent);
 *  - a receive posted on an idle connection would pin a buffer for as long
 *    as the client is silent. The kernel's provided buffers let it pick a
 *    buffer from a shared pool only when bytes arrive, so an idle
 *    connection holds none (receive).
 *
 * Like chapter 04, SIGINT and SIGTERM stay blocked and arrive through a
 * signalfd: here a read of it is submitted to the ring, and its completion
 * is the stop (read_signal).
 *
 * Needs Linux 5.19 or later (provided-buffer rings). Where io_uring is
 * missing or refused, the server says why in one line and exits 1
 * (open_ring); README.md says which feature needs which version.
 *
 *   ./echo-server -p 7000          then, in other terminals:
 *   ../tests/client -p 7000 cat    or ten thousand: ../tests/client -p 7000 echo -c 10000
 */
/* signalfd came from Linux; glibc declares it when asked for its
 * extensions. */
#define _GNU_SOURCE

#include "uring.h"

#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/signalfd.h>
#include <sys/socket.h>
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
    /* How much one receive may return: the size of each provided buffer.
     * It is also the most a connection ever holds unsent: we receive again
     * only once everything has gone out. */
    BUFFER_SIZE = 64 * 1024,
    /* The pool of provided buffers the kernel picks from (a power of two):
     * at most this many connections hold received bytes at once; the
     * others wait their turn (on_pool_empty). */
    BUFFER_COUNT = 64,
    BUFFER_GROUP = 0,
    /* Room for requests filled in and not yet submitted; when it is full we
     * submit them and go on (next_sqe). */
    SQ_ENTRIES = 256,
    /* The largest completion queue the kernel allows (IORING_MAX_CQ_ENTRIES). */
    MOST_CQ_ENTRIES = 65536,
};

/* What a request was, kept in the low byte of its user_data, which the
 * kernel hands back with its completion; the bits above hold the
 * descriptor. */
enum request_kind {
    ACCEPT,        /* the one accept in flight on the listening socket */
    SIGNAL_READ,   /* the read of the signalfd: a stop signal when it completes */
    ACCEPT_TIMER,  /* the one-second wait before accept is tried again */
    RECEIVE,       /* a connection's receive, ...                          */
    BYTES_POLL,    /* ... or its wait for bytes while the pool was empty, ... */
    SEND,          /* ... or its send: never two of these at once             */
    CANCEL,        /* a connection's cancel, when it closes with a request in flight */
    SERVER_CANCEL, /* the cancel of the accept or of its timer, at shut-down */
};

/* One client. An idle connection costs just this struct: its receive,
 * posted in the kernel, has no buffer until bytes arrive. */
struct connection {
    int fd;
    /* Requests of this connection the kernel still holds: 0 or 1 (a receive
     * or a send), plus a cancel while it closes. Its memory, and its
     * buffer, may go only once this is back to 0. */
    int in_flight;
    uint64_t request;     /* the user_data of its receive or send in flight */
    bool closing;
    int buffer_id;        /* the provided buffer holding its unsent bytes, or -1 */
    size_t unsent_length; /* how many there are ...                           */
    size_t unsent_done;   /* ... and how many of them have gone since         */
    bool has_bytes;                  /* known to have bytes waiting to be received */
    bool waiting_for_buffer;         /* ... and the pool was empty: it is in the queue */
    struct connection *next_waiting; /* ... and this one comes after it */
    char peer[ADDRESS_TEXT_SIZE];
};

struct server {
    int listen_fd;
    enum verbosity verbosity;
    struct uring ring;
    int in_flight; /* every request the kernel holds: shut-down waits for 0 */
    int signal_fd; /* readable once SIGINT or SIGTERM is pending */
    bool stopping; /* set when it is */
    /* Memory the kernel writes into when a request completes. Like any
     * buffer handed to it, it must stay put until then, so it lives here
     * and not on the stack of the function that submitted the request. */
    struct signalfd_siginfo signal_info;         /* SIGNAL_READ's */
    struct sockaddr_storage accept_address;      /* ACCEPT's ... */
    socklen_t accept_address_length;             /* ... and its length */
    struct __kernel_timespec accept_retry_delay; /* ACCEPT_TIMER's */
    /* Whether the accept, and the timer, are in flight. The accept is not
     * while accept has no descriptor to give us (EMFILE): it goes again
     * when a connection closes, or when the timer has run out. */
    bool accept_armed, timer_armed;
    /* The connection table, indexed by descriptor; NULL where there is none.
     * A descriptor is below the process's limit on them, so the table has
     * that many entries. A completion names its descriptor; the table
     * gives its connection. */
    struct connection **connections;
    int capacity;
    /* The pool of provided buffers, BUFFER_COUNT of BUFFER_SIZE bytes, and
     * the ring through which we hand them to the kernel. */
    char *buffers;
    struct io_uring_buf *buffer_ring;
    /* Connections whose receive found the pool empty, served first come
     * first served as buffers come back. */
    struct connection *waiting_first, *waiting_last;
    /* Buffers that came back in this turn while no connection waited for
     * one (see wake_for_unclaimed_buffers). */
    int unclaimed_buffers;
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

/* Chapters 02 and 03 let SIGINT and SIGTERM in only while they wait, with
 * pselect() and ppoll(); chapter 04 made them readable on a signalfd. Here
 * the signalfd stays, and a read of it goes to the ring like any other
 * request (read_signal): it completes once a signal is pending. Why there
 * is no race: the signals are blocked *before* the signalfd is made, and
 * stay blocked for good, so from this call on a signal that arrives -- at
 * start-up, while we wait, or while we are busy with a thousand
 * completions -- is kept pending by the kernel, never acted on, and the
 * posted read completes with it. There is no handler, no flag to check,
 * and no moment between a check and a wait where it could slip through.
 * Blocking mode (no SFD_NONBLOCK): io_uring waits on the descriptor for
 * us; a non-blocking one would make the read complete at once with EAGAIN. */
static int open_signal_fd(void)
{
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, NULL) == -1)
        die("sigprocmask");
    int fd = signalfd(-1, &stop_signals, 0);
    if (fd == -1)
        die("signalfd");
    return fd;
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

    /* Blocking, unlike chapters 02 to 05: we never call accept() ourselves
     * and so never risk blocking in it. io_uring waits for the client. */
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

/* ---- io_uring: the ring, the pool, and requests ------------------------------- */

/* Where io_uring is missing or refused -- an old kernel, a sandbox, a
 * container's seccomp profile, kernel.io_uring_disabled -- the server can
 * do nothing: it says why, in one line, and exits 1. */
static _Noreturn void io_uring_unavailable(const char *why, const char *hint)
{
    fprintf(stderr, "echo-server: io_uring: %s%s%s\n", why, *hint ? " " : "", hint);
    exit(1);
}

/* Why io_uring_setup() may be refused, as far as we can tell from here,
 * written into hint. */
static void explain_refusal(int error, char *hint, size_t size)
{
    int disabled = 0; /* kernel.io_uring_disabled: Linux 6.6 and later */
    FILE *sysctl = fopen("/proc/sys/kernel/io_uring_disabled", "r");
    if (sysctl != NULL) {
        if (fscanf(sysctl, "%d", &disabled) != 1)
            disabled = 0;
        fclose(sysctl);
    }
    if (error == ENOSYS)
        snprintf(hint, size, "(no io_uring in this kernel, or a sandbox hides it)");
    else if (disabled != 0)
        snprintf(hint, size, "(kernel.io_uring_disabled is %d)", disabled);
    else if (error == EPERM)
        snprintf(hint, size, "(a seccomp profile or a sandbox refuses it)");
    else if (error == EINVAL) /* a set-up flag it does not know (uring_open) */
        snprintf(hint, size, "(Linux 5.19 or later is needed)");
    else
        hint[0] = '\0';
}

/* Each operation we submit, and its name with the kernel that brought it. */
static const uint8_t NEEDED_OPS[] = {
    IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL, IORING_OP_TIMEOUT, IORING_OP_POLL_ADD,
    IORING_OP_READ, IORING_OP_RECV, IORING_OP_SEND,
};
static const char *const NEEDED_OP_NAMES[] = {
    "IORING_OP_ACCEPT (Linux 5.5)", "IORING_OP_ASYNC_CANCEL (Linux 5.5)",
    "IORING_OP_TIMEOUT (Linux 5.4)", "IORING_OP_POLL_ADD (Linux 5.1)",
    "IORING_OP_READ (Linux 5.6)", "IORING_OP_RECV (Linux 5.6)",
    "IORING_OP_SEND (Linux 5.6)",
};

/* The completion queue must hold what can complete before we look: per
 * connection a receive or a send, and a cancel while it closes; and the
 * accept, its timer, the signal read and their cancels. Sized for that,
 * it cannot overflow, up to MOST_CQ_ENTRIES / 2 connections; beyond them
 * (a descriptor limit above 32,000) the kernel's NODROP feature, which we
 * insist on, keeps the extra completions waiting in the kernel instead of
 * losing them. */
static unsigned completion_queue_size(int capacity)
{
    long long wanted = 2LL * capacity + 8;
    if (wanted < 2 * SQ_ENTRIES)
        wanted = 2 * SQ_ENTRIES;
    return wanted > MOST_CQ_ENTRIES ? MOST_CQ_ENTRIES : (unsigned)wanted;
}

static void open_ring(struct server *server)
{
    const char *failed;
    if (!uring_open(&server->ring, SQ_ENTRIES, completion_queue_size(server->capacity),
                    &failed)) {
        int error = errno;
        char why[160], hint[80];
        snprintf(why, sizeof why, "%s: %s", failed, strerror(error));
        explain_refusal(error, hint, sizeof hint);
        io_uring_unavailable(why, hint);
    }
    int count = (int)sizeof NEEDED_OPS;
    int missing = uring_first_unsupported(&server->ring, NEEDED_OPS, count);
    if (missing == -1) {
        char why[160];
        snprintf(why, sizeof why, "IORING_REGISTER_PROBE: %s", strerror(errno));
        io_uring_unavailable(why, "(Linux 5.6 or later is needed)");
    }
    if (missing < count)
        io_uring_unavailable("this kernel lacks", NEEDED_OP_NAMES[missing]);
}

/* The pool: BUFFER_COUNT buffers, all handed to the kernel at once. Every
 * page is touched now, so that the memory the pool costs shows from the
 * start and never grows: the kernel takes the buffers in turn, so in time
 * every one is used. (Filled with a byte other than 0: a compiler may turn
 * malloc() and a zeroing memset() into calloc(), which touches nothing.) */
static void provide_buffers(struct server *server)
{
    server->buffers = malloc((size_t)BUFFER_COUNT * BUFFER_SIZE);
    if (server->buffers == NULL)
        die("malloc buffer pool");
    memset(server->buffers, 0xee, (size_t)BUFFER_COUNT * BUFFER_SIZE);
    server->buffer_ring = uring_register_buffer_ring(&server->ring, BUFFER_COUNT, BUFFER_GROUP);
    if (server->buffer_ring == NULL) {
        char why[160];
        snprintf(why, sizeof why, "IORING_REGISTER_PBUF_RING: %s", strerror(errno));
        io_uring_unavailable(why, "(provided-buffer rings need Linux 5.19)");
    }
    for (int id = 0; id < BUFFER_COUNT; id++)
        uring_provide_buffer(server->buffer_ring, BUFFER_COUNT,
                             server->buffers + (size_t)id * BUFFER_SIZE, BUFFER_SIZE,
                             (uint16_t)id);
}

static char *buffer_bytes(const struct server *server, int id)
{
    return server->buffers + (size_t)id * BUFFER_SIZE;
}

/* A free SQE. When the submission queue is full, what is in it goes to the
 * kernel now and we go on: a full queue means "submit", not "fail". With
 * the completion queue sized for everything in flight (and NODROP), the
 * kernel refuses a submission only when it is out of memory itself; then
 * the server cannot keep its promises to anyone, and stops with status 1. */
static struct io_uring_sqe *next_sqe(struct server *server)
{
    for (;;) {
        struct io_uring_sqe *sqe = uring_get_sqe(&server->ring);
        if (sqe != NULL)
            return sqe;
        if (uring_submit(&server->ring, false) == -1 && errno != EINTR)
            die("io_uring_enter");
    }
}

/* Fills in the parts every request has: what, on which descriptor, and the
 * user_data its completion will carry back. Counts it as in flight. */
static struct io_uring_sqe *start_request(struct server *server, uint8_t opcode, int fd,
                                          enum request_kind kind)
{
    struct io_uring_sqe *sqe = next_sqe(server);
    sqe->opcode = opcode;
    sqe->fd = fd;
    sqe->user_data = (uint64_t)fd << 8 | kind;
    server->in_flight++;
    return sqe;
}

/* The same for a connection's request, which it counts, and remembers by
 * its user_data: that is how a cancel names it (begin_close). */
static struct io_uring_sqe *start_connection_request(struct server *server,
                                                     struct connection *connection,
                                                     uint8_t opcode, enum request_kind kind)
{
    struct io_uring_sqe *sqe = start_request(server, opcode, connection->fd, kind);
    connection->request = sqe->user_data;
    connection->in_flight++;
    return sqe;
}

/* The read completes when SIGINT or SIGTERM is pending (open_signal_fd). */
static void read_signal(struct server *server)
{
    struct io_uring_sqe *sqe = start_request(server, IORING_OP_READ, server->signal_fd,
                                             SIGNAL_READ);
    sqe->addr = (uint64_t)(uintptr_t)&server->signal_info;
    sqe->len = sizeof server->signal_info;
    sqe->off = (uint64_t)-1; /* "the current position": a signalfd has none */
}

/* One accept in flight; its completion carries the new descriptor. */
static void arm_accept(struct server *server)
{
    struct io_uring_sqe *sqe = start_request(server, IORING_OP_ACCEPT, server->listen_fd,
                                             ACCEPT);
    server->accept_address_length = sizeof server->accept_address;
    sqe->addr = (uint64_t)(uintptr_t)&server->accept_address;
    sqe->addr2 = (uint64_t)(uintptr_t)&server->accept_address_length;
    server->accept_armed = true;
}

/* A timeout with nothing to count completes, with -ETIME, after the delay. */
static void arm_accept_timer(struct server *server)
{
    if (server->timer_armed)
        return; /* the one already running will do */
    struct io_uring_sqe *sqe = start_request(server, IORING_OP_TIMEOUT, 0, ACCEPT_TIMER);
    server->accept_retry_delay.tv_sec = 1;
    server->accept_retry_delay.tv_nsec = 0;
    sqe->addr = (uint64_t)(uintptr_t)&server->accept_retry_delay;
    sqe->len = 1;
    server->timer_armed = true;
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

/* Posts a receive that has no buffer yet: IOSQE_BUFFER_SELECT lets the
 * kernel keep one from the pool only once bytes are there. An idle
 * connection's receive waits in the kernel holding no memory of ours --
 * with a buffer of its own, 10,000 idle clients would pin 625 MiB. */
static struct io_uring_sqe *receive(struct server *server, struct connection *connection)
{
    struct io_uring_sqe *sqe = start_connection_request(server, connection, IORING_OP_RECV,
                                                        RECEIVE);
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUFFER_GROUP;
    sqe->len = BUFFER_SIZE;
    return sqe;
}

/* Sends what is left of the connection's unsent bytes, from the first one
 * not yet sent. The buffer is the kernel's until this send completes. */
static void send_rest(struct server *server, struct connection *connection)
{
    struct io_uring_sqe *sqe = start_connection_request(server, connection, IORING_OP_SEND,
                                                        SEND);
    sqe->addr = (uint64_t)(uintptr_t)(buffer_bytes(server, connection->buffer_id) +
                                      connection->unsent_done);
    sqe->len = (uint32_t)(connection->unsent_length - connection->unsent_done);
}

/* A readiness request, in a completion chapter: it completes, using no
 * buffer, once the socket has bytes (or an end-of-file or an error) to
 * receive. */
static void wait_for_bytes(struct server *server, struct connection *connection)
{
    struct io_uring_sqe *sqe = start_connection_request(server, connection, IORING_OP_POLL_ADD,
                                                        BYTES_POLL);
    sqe->poll32_events = POLLIN; /* a little-endian layout (x86-64, arm64) */
}

/* The connection waits in a queue, holding nothing, until a buffer comes
 * back. */
static void wait_for_buffer(struct server *server, struct connection *connection)
{
    connection->waiting_for_buffer = true;
    connection->next_waiting = NULL;
    if (server->waiting_last != NULL)
        server->waiting_last->next_waiting = connection;
    else
        server->waiting_first = connection;
    server->waiting_last = connection;
}

static void stop_waiting_for_buffer(struct server *server, struct connection *connection)
{
    struct connection **link = &server->waiting_first, *previous = NULL;
    while (*link != connection) {
        previous = *link;
        link = &(*link)->next_waiting;
    }
    *link = connection->next_waiting;
    if (server->waiting_last == connection)
        server->waiting_last = previous;
    connection->waiting_for_buffer = false;
}

/* The first connection waiting for a buffer receives again: there is one
 * free now. Returns whether there was one to wake. */
static bool wake_next_waiting(struct server *server)
{
    struct connection *next = server->waiting_first;
    if (next == NULL || server->stopping)
        return false;
    stop_waiting_for_buffer(server, next);
    receive(server, next);
    return true;
}

/* A buffer is free in the pool: the first connection waiting for one gets
 * to receive again; if none waits, the buffer is unclaimed for now. */
static void offer_free_buffer(struct server *server)
{
    if (!wake_next_waiting(server))
        server->unclaimed_buffers++;
}

/* A buffer goes back to the pool -- only once the kernel is done with it. */
static void give_back_buffer(struct server *server, int id)
{
    uring_provide_buffer(server->buffer_ring, BUFFER_COUNT, buffer_bytes(server, id),
                         BUFFER_SIZE, (uint16_t)id);
    offer_free_buffer(server);
}

/* The end of a turn. A buffer that came back while no connection waited
 * may be wanted after all: the kernel can turn a receive away (ENOBUFS)
 * while the buffer that would serve it is still ours, and the completion
 * that frees that buffer may come just before the ENOBUFS, in the same
 * turn. The connection queued a moment after the buffer came back would
 * wait beside it -- for ever, if no other buffer came back. So each buffer
 * that came back unclaimed in this turn now wakes a connection waiting, if
 * there is one. (If the kernel has lent that buffer to another receive
 * meanwhile, the woken one is turned away again and queues again.) */
static void wake_for_unclaimed_buffers(struct server *server)
{
    while (server->unclaimed_buffers > 0 && wake_next_waiting(server))
        server->unclaimed_buffers--;
    server->unclaimed_buffers = 0;
}

/* The receive found the pool empty (ENOBUFS). The kernel picks a buffer
 * when the receive is *issued*, bytes or not, so a connection may get
 * ENOBUFS before any bytes have come. Posting the receive again at once
 * would fail again at once: a spin. So a connection first waits for bytes,
 * holding no buffer; only one that has bytes waits in the queue for a
 * buffer. Each buffer that comes back wakes one in the queue, and each one
 * woken takes a buffer -- or, if it takes none (its bytes were an
 * end-of-file or a reset), passes the turn on (on_received). A woken
 * connection that had no bytes would take the turn and leave the buffer
 * unused, and the queue could wait for ever beside a free pool. */
static void on_pool_empty(struct server *server, struct connection *connection)
{
    if (connection->has_bytes)
        wait_for_buffer(server, connection);
    else
        wait_for_bytes(server, connection);
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
    connection->buffer_id = -1;
    format_address(address, connection->peer);
    server->connections[fd] = connection;
    if (server->verbosity != QUIET)
        log_line("accepted connection from", connection->peer);
    receive(server, connection);
}

/* The last step of a close, once the kernel holds nothing of the
 * connection's: only now may its descriptor, its buffer and its memory go.
 * Closing the descriptor earlier would not stop a request in flight (the
 * kernel holds its own reference to the socket), and the number could be
 * reused by the next accept while completions for the old one are due. */
static void finish_close(struct server *server, struct connection *connection)
{
    int fd = connection->fd;
    if (close(fd) == -1)
        report_client_error(server, "close", connection);
    if (server->verbosity != QUIET)
        log_line("closed connection from", connection->peer);
    server->connections[fd] = NULL;
    if (connection->buffer_id >= 0)
        give_back_buffer(server, connection->buffer_id);
    free(connection);
    /* A descriptor is free again: if accept had run out, try again now. */
    if (!server->accept_armed && !server->stopping)
        arm_accept(server);
}

/* Closing starts here. With nothing in flight it ends at once; otherwise
 * a cancel asks the kernel to end the request in flight, and the close
 * ends when the last completion has come, the request's (ECANCELED, or
 * its result if it was done first) and the cancel's own (dispatch). The
 * cancel names the request by its user_data, which the kernel finds at
 * once; naming it by descriptor (IORING_ASYNC_CANCEL_FD) makes the kernel
 * look through every request in flight, and at shut-down, 10,000 times
 * 10,000 looks took seconds. */
static void begin_close(struct server *server, struct connection *connection)
{
    if (connection->closing)
        return;
    connection->closing = true;
    if (connection->waiting_for_buffer)
        stop_waiting_for_buffer(server, connection);
    if (connection->in_flight == 0) {
        finish_close(server, connection);
        return;
    }
    struct io_uring_sqe *sqe = start_request(server, IORING_OP_ASYNC_CANCEL, connection->fd,
                                             CANCEL);
    sqe->addr = connection->request;
    connection->in_flight++;
}

/* ---- Completions ------------------------------------------------------------ */

/* A receive completed: bytes in a buffer the kernel chose, end-of-file, or
 * an error. The bytes go straight back out of that same buffer. */
static void on_received(struct server *server, struct connection *connection,
                        int result, uint32_t flags)
{
    if (result == -ENOBUFS) {
        on_pool_empty(server, connection);
        return;
    }
    int id = flags & IORING_CQE_F_BUFFER ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    if (connection->has_bytes && id < 0)
        offer_free_buffer(server); /* its turn at the pool, not used: pass it on */
    connection->has_bytes = false;
    if (result == -EINTR || result == -EAGAIN) {
        if (id >= 0)
            give_back_buffer(server, id);
        receive(server, connection);
        return;
    }
    if (result <= 0) {
        if (id >= 0)
            give_back_buffer(server, id);
        if (result < 0) {
            errno = -result;
            report_client_error(server, "recv from", connection);
        }
        /* End-of-file: the client is done sending. We receive only while
         * nothing is waiting to go out, so everything it sent has been
         * echoed already: close. */
        begin_close(server, connection);
        return;
    }
    if (server->verbosity == VERBOSE) {
        printf("echoing %d bytes to %s\n", result, connection->peer);
        fflush(stdout);
    }
    connection->buffer_id = id;
    connection->unsent_length = (size_t)result;
    connection->unsent_done = 0;
    send_rest(server, connection);
}

/* A send completed, perhaps with fewer bytes than asked: the rest goes in
 * a new send, from where the kernel stopped. Only when all of them have
 * gone is the buffer free, and the connection receives again: one request
 * at a time per connection, so bytes never reorder, and what it holds
 * unsent is one buffer at most (backpressure: a client that does not read
 * stalls its own connection, nobody else's). */
static void on_sent(struct server *server, struct connection *connection, int result)
{
    if (result < 0) {
        if (result == -EINTR || result == -EAGAIN) {
            send_rest(server, connection);
            return;
        }
        errno = -result;
        report_client_error(server, "send to", connection);
        begin_close(server, connection);
        return;
    }
    connection->unsent_done += (size_t)result;
    if (connection->unsent_done < connection->unsent_length) {
        if (server->verbosity == VERBOSE) {
            printf("short send: %d of %zu bytes to %s\n", result,
                   connection->unsent_length - (connection->unsent_done - (size_t)result),
                   connection->peer);
            fflush(stdout);
        }
        send_rest(server, connection);
        return;
    }
    give_back_buffer(server, connection->buffer_id);
    connection->buffer_id = -1;
    /* The client has just been sent its echo, and most clients read it
     * before they send again: a receive tried now would most likely find
     * nothing, and the kernel would then wait for bytes and try again.
     * POLL_FIRST skips the try bound to fail: the kernel waits first. (A
     * client that has sent more meanwhile ends that wait at once.) */
    struct io_uring_sqe *sqe = receive(server, connection);
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
}

/* The wait for bytes, while the pool was empty, is over: something to
 * receive (or an end-of-file, or an error, which the receive reports). */
static void on_bytes_waiting(struct server *server, struct connection *connection, int result)
{
    if (result < 0 && result != -EINTR && result != -EAGAIN) {
        errno = -result;
        report_client_error(server, "poll", connection);
        begin_close(server, connection);
        return;
    }
    connection->has_bytes = result >= 0;
    receive(server, connection);
}

/* The accept completed: a new descriptor, or why there is none. Returns
 * whether to accept again now. */
static bool accept_failed(struct server *server, int error)
{
    errno = error;
    switch (error) {
    case ECANCELED: /* shut-down cancelled it */
        return false;
    case EINTR:
    case EAGAIN:
    case ECONNABORTED: /* the client gave up before we accepted it */
        return true;
    case EMFILE: /* no descriptor left for us ... */
    case ENFILE: /* ... or for anyone on the system */
    case ENOBUFS:
    case ENOMEM:
        /* The client stays queued in the kernel: accepting again at once
         * would fail at once, again and again -- a spin. We accept again
         * when a connection closes, or in a second at most (the shortage
         * may be someone else's). */
        report("accept");
        arm_accept_timer(server);
        return false;
    case EBADF: case EINVAL: case ENOTSOCK: case EFAULT:
        die("accept"); /* our own bug: the listening socket is not usable */
    default:
        /* Network errors of the new connection (ENETDOWN, EPROTO, ...):
         * that one client is lost, we go on. */
        report("accept");
        return true;
    }
}

static void on_accepted(struct server *server, int result)
{
    server->accept_armed = false;
    if (result < 0) {
        if (accept_failed(server, -result) && !server->stopping)
            arm_accept(server);
        return;
    }
    int fd = result;
    if (fd >= server->capacity) {
        /* Only if the limit was raised since start-up, or is bigger than
         * the table we were willing to allocate. */
        fprintf(stderr, "echo-server: accept: descriptor %d is beyond"
                        " the connection table; closing it\n", fd);
        close(fd);
    } else {
        disable_nagle(fd);
        add_connection(server, fd, &server->accept_address);
    }
    if (!server->stopping)
        arm_accept(server);
}

/* The one-second wait after EMFILE is over (or cancelled at shut-down). */
static void on_accept_timer(struct server *server)
{
    server->timer_armed = false;
    if (!server->accept_armed && !server->stopping)
        arm_accept(server);
}

static void on_signal(struct server *server, int result)
{
    if (result == -EINTR || result == -EAGAIN) {
        read_signal(server);
        return;
    }
    if (result < 0) {
        errno = -result;
        die("read signalfd");
    }
    server->stopping = true;
}

/* What one completion is about, from the user_data we gave its request.
 * A completion for a closing connection only counts down its requests in
 * flight (a buffer it brings goes straight back to the pool); the last
 * one ends the close. */
static void dispatch(struct server *server, const struct io_uring_cqe *cqe)
{
    enum request_kind kind = (enum request_kind)(cqe->user_data & 0xff);
    int fd = (int)(cqe->user_data >> 8);
    server->in_flight--;
    switch (kind) {
    case ACCEPT: on_accepted(server, cqe->res); return;
    case SIGNAL_READ: on_signal(server, cqe->res); return;
    case ACCEPT_TIMER: on_accept_timer(server); return;
    case SERVER_CANCEL: return;
    default: break;
    }
    struct connection *connection = server->connections[fd];
    connection->in_flight--;
    if (connection->closing) {
        if (kind == RECEIVE && (cqe->flags & IORING_CQE_F_BUFFER))
            give_back_buffer(server, (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        if (connection->in_flight == 0)
            finish_close(server, connection);
        return;
    }
    if (kind == RECEIVE)
        on_received(server, connection, cqe->res, cqe->flags);
    else if (kind == BYTES_POLL)
        on_bytes_waiting(server, connection, cqe->res);
    else if (kind == SEND)
        on_sent(server, connection, cqe->res);
}

/* ---- The completion loop ------------------------------------------------ */

/* One turn: everything filled in since the last turn goes to the kernel,
 * and we sleep until at least one completion is there -- one system call
 * for both. Then every completion waiting is served. Each is copied out
 * and its slot given back before it is served: serving it may submit.
 * Last, buffers that came back unclaimed meet connections that queued
 * for one after them. */
static void submit_and_serve(struct server *server)
{
    if (uring_submit(&server->ring, true) == -1) {
        if (errno == EINTR) /* stopped and continued (SIGSTOP, SIGCONT) */
            return;
        die("io_uring_enter");
    }
    struct io_uring_cqe *cqe;
    while ((cqe = uring_peek(&server->ring)) != NULL) {
        struct io_uring_cqe completion = *cqe;
        uring_seen(&server->ring);
        dispatch(server, &completion);
    }
    wake_for_unclaimed_buffers(server);
}

static void serve_until_stopped(struct server *server)
{
    while (!server->stopping)
        submit_and_serve(server);
}

/* Cancels the server's own requests still in flight: the accept and the
 * timer. Their completions (ECANCELED) and the cancels' own still come. */
static void cancel_server_requests(struct server *server)
{
    uint64_t targets[2];
    int count = 0;
    if (server->accept_armed)
        targets[count++] = (uint64_t)server->listen_fd << 8 | ACCEPT;
    if (server->timer_armed)
        targets[count++] = ACCEPT_TIMER; /* descriptor 0 */
    for (int i = 0; i < count; i++) {
        struct io_uring_sqe *sqe = start_request(server, IORING_OP_ASYNC_CANCEL, 0,
                                                 SERVER_CANCEL);
        sqe->addr = targets[i]; /* the user_data of the request to cancel */
    }
}

/* Every connection is closed the way any is -- cancel, then wait for its
 * completions -- and the server waits for the last completion of all
 * before the memory the kernel could still write into goes. */
static void shut_down(struct server *server)
{
    puts("shutting down");
    fflush(stdout);
    for (int fd = 0; fd < server->capacity; fd++) {
        if (server->connections[fd] != NULL)
            begin_close(server, server->connections[fd]);
    }
    cancel_server_requests(server);
    while (server->in_flight > 0)
        submit_and_serve(server);
    close(server->listen_fd);
    close(server->signal_fd);
    uring_close(&server->ring);
    free(server->buffers);
    free(server->connections);
}

int main(int argc, char **argv)
{
    struct options options = parse_options(argc, argv);
    int descriptor_limit = raise_descriptor_limit();
    ignore_sigpipe();

    /* Static: the kernel writes into some of its fields (signal_info,
     * accept_address), so it must outlive every request. The table gets
     * one entry per possible descriptor. calloc() only reserves the
     * address space; memory is used as entries are. */
    static struct server server;
    server.signal_fd = open_signal_fd(); /* from here on, a signal waits for us */
    server.capacity = descriptor_limit;
    server.connections = calloc((size_t)descriptor_limit, sizeof *server.connections);
    if (server.connections == NULL)
        die("calloc");
    open_ring(&server);
    provide_buffers(&server);
    read_signal(&server);
    server.listen_fd = listen_on(options.host, options.port);
    server.verbosity = options.verbosity;
    arm_accept(&server);
    announce(server.listen_fd);

    serve_until_stopped(&server);
    shut_down(&server);
    return 0;
}
