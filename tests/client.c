#define _GNU_SOURCE
/*
 * client.c - the test client that the bats tests drive against every
 * chapter's echo server.
 *
 *   client [-H HOST] -p PORT [-t TIMEOUT_MS] COMMAND [COMMAND OPTIONS]
 *
 *   -H HOST        server address: IPv4/IPv6 literal or name (127.0.0.1);
 *                  each connection uses the first address that connects
 *   -p PORT        server port (required)
 *   -t TIMEOUT_MS  deadline (default 10000): echo, pingpong and cat: the
 *                  whole command; hold: the connects, then each echo
 *                  round; flood: the connect. Without -t, a cat whose
 *                  stdin is a terminal has no deadline until ^D; then the
 *                  server has 10 s to close.
 *   -H, -p and -t may also follow the command name.
 *
 * Commands (each result is ONE line of key=value pairs on stdout):
 *
 *   echo [-c CONNS] [-n BYTES] [-w MAXWRITE] [-s SEED] [-x] [-v]
 *       Open CONNS (1) connections at once, send BYTES (1000) pseudo-random
 *       bytes on each while reading the echo back, verify every byte.
 *       -w  split the stream into writes of random size 1..MAXWRITE
 *       -s  seed of the byte streams (1)
 *       -x  half-close after writing; success then needs EOF after the echo
 *       -v  print "sent conns=C bytes=B" once every connection wrote all
 *       -> ok=N closed=N reset=N refused=N mismatch=N timeout=N
 *          (exit 0 iff every connection is ok; a wrong byte is on stderr)
 *   cat
 *       Copy stdin to the server and the server to stdout, like netcat.
 *       At stdin EOF, half-close; exit 0 when the server closes, 1 if it
 *       does not close by the deadline.
 *   hold [-c CONNS] [-e]
 *       Open CONNS (1) connections and keep them open.
 *       -> holding=C failed=F     (C connects completed, F did not)
 *       With -e, after a first echo round of 16 bytes per connection:
 *       -> holding=C failed=F echoed=E closed=K timeout=T
 *       SIGUSR1 runs one more round: round=R echoed=E closed=K timeout=T
 *       (closed counts closes, resets and wrong bytes since the last line).
 *       SIGTERM or SIGINT closes everything and exits 0.
 *   flood [-n BYTES] [-i IDLE_MS] [-x] [-u] [-r] [-d]
 *       Write BYTES (64 MiB) without ever reading, until all are written or
 *       no write made progress for IDLE_MS (500).
 *       -> done wrote=W | stalled wrote=W  (reset wrote=W, exit 1, if the
 *       server broke the connection). Then with -x shut down the sending
 *       side (FIN); then with -u pause: -> paused wrote=W, and do nothing
 *       until SIGUSR1; then with -r reset the connection (RST) and exit 0,
 *       else keep it open until SIGTERM or SIGINT. -x -r is the client
 *       that makes a careless server die of SIGPIPE: the reset reaches a
 *       server that has seen the FIN, and its next send() fails with EPIPE.
 *       -d  then read back and verify all W bytes (within the deadline of
 *       -t, from then on), keeping the connection open:
 *       -> drained read=W  (undrained read=R, exit 1, if they do not all
 *       come back). The server had a backlog and has sent it all: with
 *       nothing left to do, it must go back to sleep. With -x the server
 *       must then close, as for echo -x, and the client exits:
 *       -> drained read=W eof=1  (exit 0; else undrained, eof=0 if the
 *       server did not close by the deadline, eof=1 if it closed early).
 *       Each SIGUSR1 then sends 256 KiB at once, reading the echo as it
 *       comes: -> bursting (once the kernel took what it could at once),
 *       then -> burst=B read=R  (B of the bursts so far came back whole;
 *       the deadline of -t for each). A server that reads one buffer per
 *       edge-triggered event strands the rest of a burst.
 *   pingpong [-n ROUNDS] [-s SIZE]
 *       ROUNDS (1000) sequential round trips of SIZE (64) bytes.
 *       -> rounds=R  (exit 0 iff R == ROUNDS)
 *
 * Exit status: 0 when the command succeeded, 1 when it did not or on a
 * runtime error, 2 on a usage error.
 *
 * How it works
 *   - One epoll loop drives every socket. Sockets are non-blocking and
 *     registered edge-triggered, once: on each event we read and write until
 *     the kernel says EAGAIN, so each event costs O(1) and 10,000
 *     connections are cheap.
 *   - No copy of the sent data is kept. Byte i of connection k's stream is a
 *     pure function of (key_k, i) (a counter-based generator built on the
 *     splitmix64 mixer). A connection's `sent` and `received` counters are
 *     two positions in the same stream: the writer generates the bytes at
 *     `sent`, the reader regenerates the bytes at `received` to compare.
 *     hold and pingpong rounds only raise each connection's goal, so an
 *     echo that comes late (after its round timed out) is still verified.
 *   - Signals (hold, flood) are blocked and read from a signalfd that sits in
 *     the epoll set, so a signal is just another event: there is no global
 *     flag and no race between checking a flag and sleeping in epoll_wait.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    BUF_SIZE = 65536,  /* largest single read() or write() */
    MAX_EVENTS = 1024, /* events taken per epoll_wait() */
    ROUND_BYTES = 16,  /* bytes per connection in a hold echo round */
    BURST_BYTES = 256 * 1024, /* flood -d: bytes sent at once at each SIGUSR1 */
    DEFAULT_TIMEOUT_MS = 10000,
};
#define NO_DEADLINE ((int64_t)-1)

/* ---------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------- */

/* Report a failed call on stderr as "client: WHAT: REASON" (uses errno). */
static void fail(const char *what)
{
    fprintf(stderr, "client: %s: %s\n", what, strerror(errno));
}

/* Print one result line on stdout and flush it at once: tests wait for it. */
__attribute__((format(printf, 1, 2))) static void report(const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
    if (fflush(stdout) != 0) {
        fail("stdout");
        exit(1);
    }
}

/* Close a descriptor we own; a failure is only worth a message. */
static void close_fd(int fd)
{
    if (close(fd) != 0)
        fail("close");
}

/* Milliseconds on a clock that never jumps. */
static int64_t now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        fail("clock_gettime");
        exit(1);
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The deadline `ms` from now, or NO_DEADLINE when ms is negative. */
static int64_t deadline_after(int64_t ms)
{
    return ms < 0 ? NO_DEADLINE : now_ms() + ms;
}

/* An epoll_wait() timeout for a deadline: -1 (none), or 0 once it passed. */
static int ms_until(int64_t deadline)
{
    if (deadline == NO_DEADLINE)
        return -1;
    int64_t left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Write all of buf to a blocking descriptor (stdout), however many
 * write() calls that takes. */
static int write_all(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n >= 0) {
            buf += n;
            len -= (size_t)n;
        } else if (errno != EINTR) {
            fail("write");
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * The byte streams
 * ------------------------------------------------------------------- */

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* splitmix64's output function: a fast, well-mixed, one-to-one hash. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The key that selects connection `index`'s stream under `seed`. */
static uint64_t stream_key(uint64_t seed, size_t index)
{
    return mix64(mix64(seed) ^ (uint64_t)index);
}

/* Bytes [offset, offset + len) of the stream `key`. Word w of the stream is
 * splitmix64's w-th output, so any position can be produced directly. */
static void stream_fill(uint64_t key, size_t offset, unsigned char *out, size_t len)
{
    while (len > 0) {
        uint64_t word = mix64(key + (uint64_t)(offset / 8 + 1) * GOLDEN);
        for (unsigned byte = offset % 8; byte < 8 && len > 0; byte++) {
            *out++ = (unsigned char)(word >> (8 * byte));
            offset++;
            len--;
        }
    }
}

/* Index of the first byte where a and b differ, or len if they don't. */
static size_t first_difference(const unsigned char *a, const unsigned char *b, size_t len)
{
    if (memcmp(a, b, len) == 0)
        return len;
    size_t i = 0;
    while (a[i] == b[i])
        i++;
    return i;
}

/* ---------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------- */

enum command { CMD_ECHO, CMD_CAT, CMD_HOLD, CMD_FLOOD, CMD_PINGPONG };

static const struct {
    const char *name;
    const char *optstring; /* -H, -p and -t are accepted after it too */
} commands[] = {
    [CMD_ECHO] = {"echo", "+H:p:t:c:n:w:s:xv"},
    [CMD_CAT] = {"cat", "+H:p:t:"},
    [CMD_HOLD] = {"hold", "+H:p:t:c:e"},
    [CMD_FLOOD] = {"flood", "+H:p:t:n:i:xurd"},
    [CMD_PINGPONG] = {"pingpong", "+H:p:t:n:s:"},
};

struct options {
    const char *host;
    const char *port;
    int64_t timeout_ms; /* -1 until -t is given */
    enum command command;
    size_t conns;     /* echo, hold -c */
    size_t bytes;     /* echo, flood -n */
    size_t max_write; /* echo -w; 0: as much as the socket takes */
    uint64_t seed;    /* echo -s */
    bool half_close;  /* echo, flood -x */
    bool verbose;     /* echo -v */
    bool echo_round;  /* hold -e */
    int64_t idle_ms;  /* flood -i */
    bool pause;       /* flood -u */
    bool reset;       /* flood -r */
    bool drain;       /* flood -d */
    size_t rounds;    /* pingpong -n */
    size_t size;      /* pingpong -s */
};

enum parse_result { PARSE_OK, PARSE_HELP, PARSE_ERROR };

static void usage(FILE *out)
{
    fputs("usage: client [-H HOST] -p PORT [-t TIMEOUT_MS] COMMAND [OPTIONS]\n"
          "commands:\n"
          "  echo [-c CONNS] [-n BYTES] [-w MAXWRITE] [-s SEED] [-x] [-v]\n"
          "  cat\n"
          "  hold [-c CONNS] [-e]\n"
          "  flood [-n BYTES] [-i IDLE_MS] [-x] [-u] [-r] [-d]\n"
          "  pingpong [-n ROUNDS] [-s SIZE]\n",
          out);
}

/* Parse a decimal number in [min, max] into *out; false if it isn't one. */
static bool parse_number(const char *text, unsigned long long min, unsigned long long max,
                         unsigned long long *out)
{
    char *end;

    if (*text < '0' || *text > '9') /* rejects "", "-1", " 1", "+1" */
        return false;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* Parse a number for a size_t option. */
static bool set_size(const char *arg, size_t min, size_t *field)
{
    unsigned long long v;

    if (!parse_number(arg, min, SIZE_MAX, &v))
        return false;
    *field = (size_t)v;
    return true;
}

/* Parse a number of milliseconds (it must fit an epoll_wait() timeout). */
static bool set_ms(const char *arg, int64_t *field)
{
    unsigned long long v;

    if (!parse_number(arg, 0, INT_MAX, &v))
        return false;
    *field = (int64_t)v;
    return true;
}

/* Apply one option letter `opt` with argument `arg`; false if invalid. */
static bool apply_option(struct options *o, int opt, const char *arg)
{
    unsigned long long v;
    bool pingpong = o->command == CMD_PINGPONG;

    switch (opt) {
    case 'H': o->host = arg; return true;
    case 'p': o->port = arg; return parse_number(arg, 1, 65535, &v);
    case 't': return set_ms(arg, &o->timeout_ms);
    case 'i': return set_ms(arg, &o->idle_ms);
    case 'c': return set_size(arg, 1, &o->conns);
    case 'w': return set_size(arg, 1, &o->max_write);
    case 'n': return set_size(arg, 0, pingpong ? &o->rounds : &o->bytes);
    case 's':
        if (pingpong)
            return set_size(arg, 1, &o->size);
        if (!parse_number(arg, 0, UINT64_MAX, &v))
            return false;
        o->seed = v;
        return true;
    case 'x': o->half_close = true; return true;
    case 'v': o->verbose = true; return true;
    case 'e': o->echo_round = true; return true;
    case 'u': o->pause = true; return true;
    case 'r': o->reset = true; return true;
    case 'd': o->drain = true; return true;
    }
    return false;
}

/* Run getopt over argv with `optstring`, applying every option found.
 * A leading '+' in optstring stops at the first non-option (the command
 * name) instead of letting glibc reorder argv. */
static enum parse_result parse_options(int argc, char **argv, const char *optstring,
                                       struct options *o)
{
    int opt;

    optind = 0; /* glibc: start afresh, also for the second parse */
    opterr = 0; /* we print our own messages */
    while ((opt = getopt(argc, argv, optstring)) != -1) {
        if (opt == 'h')
            return PARSE_HELP;
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "client: unknown option or missing value: -%c\n", optopt);
            return PARSE_ERROR;
        }
        if (!apply_option(o, opt, optarg)) {
            fprintf(stderr, "client: invalid value for -%c: %s\n", opt, optarg);
            return PARSE_ERROR;
        }
    }
    return PARSE_OK;
}

/* Find the command called `name`; false if there is none. */
static bool find_command(const char *name, enum command *command)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            *command = (enum command)i;
            return true;
        }
    }
    fprintf(stderr, "client: unknown command: %s\n", name);
    return false;
}

/* Fill *o from the command line. */
static enum parse_result parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){
        .host = "127.0.0.1",
        .timeout_ms = -1,
        .conns = 1,
        .bytes = 1000,
        .seed = 1,
        .idle_ms = 500,
        .rounds = 1000,
        .size = 64,
    };
    enum parse_result result = parse_options(argc, argv, "+hH:p:t:", o);
    if (result != PARSE_OK)
        return result;
    if (optind >= argc) {
        fprintf(stderr, "client: no command given\n");
        return PARSE_ERROR;
    }
    if (!find_command(argv[optind], &o->command))
        return PARSE_ERROR;
    if (o->command == CMD_FLOOD)
        o->bytes = 64 * 1024 * 1024;
    int first = optind; /* the command's own argv starts at its name */
    result = parse_options(argc - first, argv + first, commands[o->command].optstring, o);
    if (result != PARSE_OK)
        return result == PARSE_HELP ? PARSE_ERROR : result;
    if (first + optind < argc) {
        fprintf(stderr, "client: unexpected argument: %s\n", argv[first + optind]);
        return PARSE_ERROR;
    }
    if (o->port == NULL) {
        fprintf(stderr, "client: -p PORT is required\n");
        return PARSE_ERROR;
    }
    return PARSE_OK;
}

/* The -t deadline in ms: given, or the default. */
static int64_t command_timeout(const struct options *o)
{
    return o->timeout_ms >= 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
}

/* ---------------------------------------------------------------------
 * Connections and the session that owns them
 * ------------------------------------------------------------------- */

/* How a connection ended, or how it did in one phase (hold, pingpong). */
enum outcome {
    OUT_OK,
    OUT_CLOSED,
    OUT_RESET,
    OUT_REFUSED,
    OUT_MISMATCH,
    OUT_TIMEOUT,
    OUTCOMES
};

enum conn_state { CONN_NEW, CONN_CONNECTING, CONN_OPEN, CONN_CLOSED };

struct conn {
    int fd; /* -1 unless CONNECTING or OPEN */
    enum conn_state state;
    bool busy;                   /* still working in the current phase */
    bool writing;                /* counted in session.writing */
    bool shut_wr;                /* -x: shutdown(SHUT_WR) done */
    size_t index;                /* for messages */
    uint64_t key;                /* selects this connection's stream */
    size_t sent;                 /* stream bytes written */
    size_t received;             /* stream bytes read back and verified */
    size_t goal;                 /* the phase is done when received == goal */
    const struct addrinfo *addr; /* address being tried */
    int error;                   /* errno of the last failure */
};

/*
 * Everything a command works with. The work is cut into phases (connect,
 * one echo round, ...): start_phase() makes every live connection busy and
 * raises its goal; session_run() loops until no connection is busy or the
 * deadline passes. s->busy counts busy connections, so "are we done?" is O(1).
 */
struct session {
    const struct options *opt;
    struct addrinfo *addrs;
    int epfd;
    int sigfd; /* -1 unless the command waits for signals */
    struct conn *conns;
    size_t nconns;
    size_t busy;                    /* connections with busy set */
    size_t writing;                 /* connections with writing set */
    size_t wrote;                   /* connections that wrote their goal */
    size_t connected;               /* connects that completed */
    size_t tally[OUTCOMES];         /* outcomes since the last result line */
    bool close_when_done;           /* echo: close a connection once it is ok */
    bool connect_only;              /* cat: only connect; cat moves the bytes */
    bool quit;                      /* SIGINT or SIGTERM arrived */
    size_t rounds_wanted;           /* SIGUSR1s not yet served */
    unsigned char buf[BUF_SIZE];    /* data just read, or about to be sent */
    unsigned char expect[BUF_SIZE]; /* what the data read should be */
};

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close_fd(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
}

/* A connection leaves the writers (echo -v): print once the last one has. */
static void writer_done(struct session *s, struct conn *c)
{
    c->writing = false;
    s->writing--;
    if (s->writing == 0 && s->opt->verbose)
        report("sent conns=%zu bytes=%zu", s->wrote, s->opt->bytes);
}

/* Must a connection that ended its phase with `result` be closed? */
static bool should_close(const struct session *s, const struct conn *c,
                         enum outcome result)
{
    if (c->state != CONN_OPEN) /* a connect that failed or took too long */
        return true;
    if (result == OUT_OK || result == OUT_TIMEOUT)
        return s->close_when_done; /* hold and pingpong keep it */
    return true;                   /* closed, reset, mismatch: it is of no further use */
}

/* Record `result` for the connection; it is no longer busy. */
static void conn_finish(struct session *s, struct conn *c, enum outcome result)
{
    s->tally[result]++;
    if (c->busy) {
        c->busy = false;
        s->busy--;
    }
    if (c->writing)
        writer_done(s, c);
    if (should_close(s, c, result))
        conn_close(c);
}

/* Add a new socket to the epoll set, edge-triggered, for good. */
static int conn_watch(struct session *s, struct conn *c, int fd)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLET,
        .data.ptr = c,
    };

    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fail("epoll_ctl");
        close_fd(fd);
        return -1;
    }
    c->fd = fd;
    c->state = CONN_CONNECTING;
    return 0;
}

/* Start a non-blocking connect to c->addr, moving on to the next address
 * when one fails at once. Returns -1 only on a local error. */
static int conn_start(struct session *s, struct conn *c)
{
    for (; c->addr != NULL; c->addr = c->addr->ai_next) {
        const struct addrinfo *a = c->addr;
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        a->ai_protocol);
        if (fd < 0) {
            fail("socket");
            return -1;
        }
        /* EINPROGRESS is the normal answer: the result comes as an event. */
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS ||
            errno == EINTR)
            return conn_watch(s, c, fd);
        c->error = errno;
        close_fd(fd);
    }
    conn_finish(s, c, OUT_REFUSED);
    return 0;
}

/* The first event on a connecting socket: did the connect succeed? */
static int conn_complete_connect(struct session *s, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0 || err == ECONNRESET) { /* a reset comes after a connect */
        c->state = CONN_OPEN;
        s->connected++;
    }
    c->error = err;
    if (err == 0)
        return 0;
    if (err == ECONNRESET) {
        conn_finish(s, c, OUT_RESET);
        return 0;
    }
    conn_close(c);
    c->addr = c->addr->ai_next; /* try the next address, if any */
    return conn_start(s, c);
}

/* Size of the next write: what is left, at most BUF_SIZE and, under -w, a
 * random 1..MAXWRITE drawn from (key, offset) so that runs repeat exactly. */
static size_t chunk_size(const struct session *s, const struct conn *c)
{
    size_t size = c->goal - c->sent;

    if (size > BUF_SIZE)
        size = BUF_SIZE;
    if (s->opt->max_write > 0) {
        size_t random = 1 + (size_t)(mix64(~c->key + c->sent) % s->opt->max_write);
        if (random < size)
            size = random;
    }
    return size;
}

/* echo -x: each connection half-closes once it has written everything, and
 * succeeds only at the server's end-of-file. (flood -x half-closes by
 * itself, once it stops writing.) */
static bool echo_half_closes(const struct session *s)
{
    return s->opt->command == CMD_ECHO && s->opt->half_close;
}

/* Everything up to the goal is written: half-close (echo -x), count it
 * (-v). */
static void conn_wrote_all(struct session *s, struct conn *c)
{
    if (echo_half_closes(s) && !c->shut_wr) {
        if (shutdown(c->fd, SHUT_WR) != 0) {
            c->error = errno;
            conn_finish(s, c, OUT_RESET);
            return;
        }
        c->shut_wr = true;
    }
    if (c->writing) {
        s->wrote++;
        writer_done(s, c);
    }
}

/* Write the stream up to the goal, until the socket is full (EAGAIN). */
static void conn_write(struct session *s, struct conn *c)
{
    while (c->sent < c->goal) {
        size_t len = chunk_size(s, c);
        stream_fill(c->key, c->sent, s->buf, len);
        ssize_t n = send(c->fd, s->buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            c->sent += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return; /* EPOLLOUT will tell us when there is room */
        } else if (errno != EINTR) {
            c->error = errno;
            conn_finish(s, c, OUT_RESET);
            return;
        }
    }
    conn_wrote_all(s, c);
}

/* Check n bytes just read (in s->buf) against the stream. Returns false
 * when the connection was dropped for a wrong or an extra byte. */
static bool conn_verify(struct session *s, struct conn *c, size_t n)
{
    size_t echoable = c->sent - c->received; /* no echo beyond what we sent */
    size_t len = n < echoable ? n : echoable;

    stream_fill(c->key, c->received, s->expect, len);
    size_t bad = first_difference(s->buf, s->expect, len);
    if (bad == n) {
        c->received += n;
        return true;
    }
    if (bad < len)
        fprintf(stderr,
                "client: connection %zu: wrong byte at offset %zu "
                "(expected 0x%02x, got 0x%02x)\n",
                c->index, c->received + bad, s->expect[bad], s->buf[bad]);
    else
        fprintf(stderr,
                "client: connection %zu: unexpected byte at offset "
                "%zu (only %zu were sent)\n",
                c->index, c->received + bad, c->sent);
    conn_finish(s, c, OUT_MISMATCH);
    return false;
}

/* The server closed its side: success only for -x after the full echo. */
static void conn_on_eof(struct session *s, struct conn *c)
{
    bool complete = c->busy && c->shut_wr && c->received == c->goal;

    conn_finish(s, c, complete ? OUT_OK : OUT_CLOSED);
}

/* Read and verify until the socket is empty (EAGAIN), EOF or an error. */
static void conn_read(struct session *s, struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, s->buf, sizeof s->buf, 0);
        if (n > 0) {
            if (!conn_verify(s, c, (size_t)n))
                return;
        } else if (n == 0) {
            conn_on_eof(s, c);
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            c->error = errno;
            conn_finish(s, c, OUT_RESET);
            return;
        }
    }
}

/* Handle one epoll event of a connection. */
static int conn_on_event(struct session *s, struct conn *c, uint32_t events)
{
    if (c->state == CONN_CONNECTING) {
        if (conn_complete_connect(s, c) < 0)
            return -1;
        if (c->state != CONN_OPEN)
            return 0; /* failed, or trying the next address */
        events |= EPOLLOUT;
        if (s->connect_only) { /* leave the socket's data and EOF to cat */
            conn_finish(s, c, OUT_OK);
            return 0;
        }
    }
    if (c->state == CONN_OPEN && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        conn_read(s, c);
    if (c->state == CONN_OPEN && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        conn_write(s, c);
    /* A connection is done once its whole echo is back; one that has
     * half-closed (-x), only at the server's end-of-file after it. */
    if (c->state == CONN_OPEN && c->busy && !c->shut_wr && c->received == c->goal)
        conn_finish(s, c, OUT_OK);
    return 0;
}

/* Drain the signalfd: SIGUSR1 asks for a round, anything else to quit. */
static int session_read_signals(struct session *s)
{
    struct signalfd_siginfo info;

    for (;;) {
        ssize_t n = read(s->sigfd, &info, sizeof info);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof info) {
            fail("read signalfd");
            return -1;
        }
        if (info.ssi_signo == SIGUSR1)
            s->rounds_wanted++;
        else
            s->quit = true;
    }
}

/* Block SIGINT, SIGTERM and SIGUSR1 and receive them through epoll. */
static int session_watch_signals(struct session *s)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        fail("sigprocmask");
        return -1;
    }
    s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->sigfd < 0) {
        fail("signalfd");
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev) != 0) {
        fail("epoll_ctl");
        return -1;
    }
    return 0;
}

/* The deadline passed: every connection still busy timed out. */
static void session_expire(struct session *s)
{
    for (size_t i = 0; i < s->nconns && s->busy > 0; i++)
        if (s->conns[i].busy)
            conn_finish(s, &s->conns[i], OUT_TIMEOUT);
}

/* Wait for events once (at most `timeout` ms) and handle them. */
static int session_poll(struct session *s, int timeout)
{
    struct epoll_event events[MAX_EVENTS];

    int n = epoll_wait(s->epfd, events, MAX_EVENTS, timeout);
    if (n < 0 && errno != EINTR) {
        fail("epoll_wait");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = events[i].data.ptr; /* NULL: the signalfd */
        int rc =
            c == NULL ? session_read_signals(s) : conn_on_event(s, c, events[i].events);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Run the loop until no connection is busy (or, with until_signal, until a
 * SIGUSR1 asks for a round), a quit signal, or the deadline. */
static int session_run(struct session *s, int64_t deadline, bool until_signal)
{
    while (!s->quit && (until_signal ? s->rounds_wanted == 0 : s->busy > 0)) {
        int timeout = ms_until(deadline);
        if (timeout == 0) {
            session_expire(s);
            return 0;
        }
        if (session_poll(s, timeout) < 0)
            return -1;
    }
    return 0;
}

/* Begin a phase: every live connection is busy until `bytes` more of its
 * stream have been echoed back; open ones start writing at once (the
 * socket is already writable, so no new edge would tell us). */
static void start_phase(struct session *s, size_t bytes)
{
    for (size_t i = 0; i < s->nconns; i++) {
        struct conn *c = &s->conns[i];
        if (c->state == CONN_CLOSED)
            continue;
        c->goal += bytes;
        c->busy = c->writing = true;
        s->busy++;
        s->writing++;
        if (c->state == CONN_OPEN)
            conn_write(s, c);
    }
}

/* Start connecting every connection. */
static int session_connect_all(struct session *s)
{
    for (size_t i = 0; i < s->nconns; i++)
        if (conn_start(s, &s->conns[i]) < 0)
            return -1;
    return 0;
}

/* A phase that only connects: done when every connect completed or failed. */
static int session_connect(struct session *s, int64_t deadline)
{
    start_phase(s, 0);
    if (session_connect_all(s) < 0)
        return -1;
    return session_run(s, deadline, false);
}

/* Forget the outcomes counted so far (after a result line). */
static void session_clear_tally(struct session *s)
{
    memset(s->tally, 0, sizeof s->tally);
}

/* Resolve the server and prepare `nconns` connections. */
static int session_open(struct session *s, const struct options *o, size_t nconns)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    s->opt = o;
    s->sigfd = -1;
    s->epfd = -1;
    int rc = getaddrinfo(o->host, o->port, &hints, &s->addrs);
    if (rc != 0) {
        fprintf(stderr, "client: %s: %s\n", o->host, gai_strerror(rc));
        return -1;
    }
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        fail("epoll_create1");
        return -1;
    }
    s->conns = calloc(nconns, sizeof *s->conns);
    if (s->conns == NULL) {
        fail("calloc");
        return -1;
    }
    s->nconns = nconns;
    for (size_t i = 0; i < nconns; i++)
        s->conns[i] = (struct conn){
            .fd = -1, .index = i, .addr = s->addrs, .key = stream_key(o->seed, i)};
    return 0;
}

/* Close everything session_open() and the commands opened. */
static void session_close(struct session *s)
{
    for (size_t i = 0; i < s->nconns; i++)
        conn_close(&s->conns[i]);
    free(s->conns);
    if (s->sigfd >= 0)
        close_fd(s->sigfd);
    if (s->epfd >= 0)
        close_fd(s->epfd);
    if (s->addrs != NULL)
        freeaddrinfo(s->addrs);
}

/* For the one-connection commands: is it open? If not, say why. */
static bool conn_require_open(const struct session *s, const struct conn *c)
{
    if (c->state == CONN_OPEN)
        return true;
    fprintf(stderr, "client: connect: %s\n",
            s->tally[OUT_TIMEOUT] > 0 ? "timed out"
            : c->error != 0           ? strerror(c->error)
                                      : "closed at once");
    return false;
}

/* ---------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------- */

static int cmd_echo(struct session *s)
{
    const struct options *o = s->opt;
    const size_t *t = s->tally;

    s->close_when_done = true;
    start_phase(s, o->bytes);
    if (session_connect_all(s) < 0 ||
        session_run(s, deadline_after(command_timeout(o)), false) < 0)
        return 1;
    report("ok=%zu closed=%zu reset=%zu refused=%zu mismatch=%zu timeout=%zu", t[OUT_OK],
           t[OUT_CLOSED], t[OUT_RESET], t[OUT_REFUSED], t[OUT_MISMATCH], t[OUT_TIMEOUT]);
    return t[OUT_OK] == s->nconns ? 0 : 1;
}

/* One hold echo round: 16 bytes on every open connection, within -t. */
static int hold_round(struct session *s)
{
    start_phase(s, ROUND_BYTES);
    return session_run(s, deadline_after(command_timeout(s->opt)), false);
}

/* Print a hold result line: `head` then the last round's counts. */
static void hold_report(struct session *s, const char *head)
{
    const size_t *t = s->tally;

    report("%s echoed=%zu closed=%zu timeout=%zu", head, t[OUT_OK],
           t[OUT_CLOSED] + t[OUT_RESET] + t[OUT_MISMATCH], t[OUT_TIMEOUT]);
    session_clear_tally(s);
}

/* Connect, report (after a first round with -e), then serve SIGUSR1 rounds
 * until SIGTERM or SIGINT. A server closing a held connection between
 * rounds is counted, as "closed", in the next round's line. */
static int cmd_hold(struct session *s)
{
    const struct options *o = s->opt;
    size_t *t = s->tally;
    char head[64];

    if (session_watch_signals(s) < 0 ||
        session_connect(s, deadline_after(command_timeout(o))) < 0)
        return 1;
    /* Closes and resets so far are reported with the next round. */
    snprintf(head, sizeof head, "holding=%zu failed=%zu", s->connected,
             s->nconns - s->connected);
    t[OUT_OK] = t[OUT_REFUSED] = t[OUT_TIMEOUT] = 0;
    if (o->echo_round && !s->quit && hold_round(s) < 0)
        return 1;
    if (s->quit)
        return 0;
    if (o->echo_round)
        hold_report(s, head);
    else
        report("%s", head);
    for (size_t round = o->echo_round ? 2 : 1;; round++) {
        if (session_run(s, NO_DEADLINE, true) < 0)
            return 1;
        if (s->quit)
            return 0;
        s->rounds_wanted--;
        if (hold_round(s) < 0)
            return 1;
        if (s->quit)
            return 0;
        snprintf(head, sizeof head, "round=%zu", round);
        hold_report(s, head);
    }
}

/* Write without ever reading until the goal or IDLE_MS without progress.
 * Returns false if the connection failed or a quit signal came. */
static bool flood_write(struct session *s, struct conn *c)
{
    int64_t last_progress = now_ms();

    while (c->state == CONN_OPEN && c->sent < c->goal && !s->quit) {
        size_t before = c->sent;
        conn_write(s, c);
        if (c->sent > before)
            last_progress = now_ms();
        int timeout = ms_until(last_progress + s->opt->idle_ms);
        if (c->state != CONN_OPEN || c->sent == c->goal || timeout == 0)
            break;
        if (session_poll(s, timeout) < 0)
            return false;
    }
    return c->state == CONN_OPEN && !s->quit;
}

/* Reset the connection: linger 0 makes close() send an RST. */
static int conn_abort(struct conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0) {
        fail("setsockopt SO_LINGER");
        return -1;
    }
    conn_close(c);
    return 0;
}

/* After flood -d: a burst of BURST_BYTES at each SIGUSR1, until a quit
 * signal. */
static int flood_bursts(struct session *s, struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
    size_t whole = 0;

    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        fail("epoll_ctl");
        return 1;
    }
    for (;;) {
        if (session_run(s, NO_DEADLINE, true) < 0)
            return 1;
        if (s->quit)
            return 0;
        s->rounds_wanted--;
        c->goal += BURST_BYTES;
        c->busy = true;
        s->busy++;
        conn_write(s, c);
        report("bursting"); /* what the kernel takes at once has gone */
        if (session_run(s, deadline_after(command_timeout(s->opt)), false) < 0)
            return 1;
        if (s->quit)
            return 0;
        if (c->state == CONN_OPEN && c->received == c->goal)
            whole++;
        report("burst=%zu read=%zu", whole, c->received);
    }
}

/* flood -d: read back and verify everything written (and, after -x, the
 * server's end-of-file), then stay connected for bursts until a quit
 * signal (after -x: exit). The outcome is in the tally, cleared once the
 * flood stopped: ok, or how the connection ended meanwhile. */
static int flood_drain(struct session *s, struct conn *c)
{
    const size_t *t = s->tally;

    if (c->state == CONN_OPEN) { /* not closed while paused (-u) */
        /* EPOLL_CTL_MOD checks readiness afresh: echoes already waiting
         * raise an event of their own, edge-triggered or not. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
            fail("epoll_ctl");
            return 1;
        }
        c->busy = true;
        s->busy++;
        if (session_run(s, deadline_after(command_timeout(s->opt)), false) < 0)
            return 1;
        if (s->quit)
            return 0;
    }
    const char *result = t[OUT_OK] > 0 ? "drained" : "undrained";
    if (!c->shut_wr) {
        report("%s read=%zu", result, c->received);
        return t[OUT_OK] > 0 ? flood_bursts(s, c) : 1;
    }
    report("%s read=%zu eof=%d", result, c->received, t[OUT_OK] + t[OUT_CLOSED] > 0);
    return t[OUT_OK] > 0 ? 0 : 1;
}

/* flood -u: say so, then do nothing until SIGUSR1 (or a quit signal). */
static int flood_pause(struct session *s, struct conn *c)
{
    report("paused wrote=%zu", c->sent);
    if (session_run(s, NO_DEADLINE, true) < 0)
        return -1;
    if (!s->quit)
        s->rounds_wanted--;
    return 0;
}

static int cmd_flood(struct session *s)
{
    struct conn *c = &s->conns[0];

    if (session_watch_signals(s) < 0 ||
        session_connect(s, deadline_after(command_timeout(s->opt))) < 0)
        return 1;
    if (s->quit)
        return 0;
    if (!conn_require_open(s, c))
        return 1;
    /* From now on only writability matters: never read, never wake for data. */
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.ptr = c};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        fail("epoll_ctl");
        return 1;
    }
    c->goal = s->opt->bytes;
    if (!flood_write(s, c)) {
        if (s->quit)
            return 0;
        fprintf(stderr, "client: flood: %s\n", strerror(c->error));
        report("reset wrote=%zu", c->sent);
        return 1;
    }
    report("%s wrote=%zu", c->sent == c->goal ? "done" : "stalled", c->sent);
    c->goal = c->sent; /* write no more, whatever happens next */
    session_clear_tally(s); /* from here on, count only how it ends */
    if (s->opt->half_close) {
        if (shutdown(c->fd, SHUT_WR) != 0) {
            fail("shutdown");
            return 1;
        }
        c->shut_wr = true;
    }
    if (s->opt->pause && flood_pause(s, c) < 0)
        return 1;
    if (s->quit)
        return 0;
    if (s->opt->reset)
        return conn_abort(c) < 0 ? 1 : 0;
    if (s->opt->drain)
        return flood_drain(s, c);
    while (!s->quit)
        if (session_poll(s, -1) < 0)
            return 1;
    return 0;
}

static int cmd_pingpong(struct session *s)
{
    struct conn *c = &s->conns[0];
    int64_t deadline = deadline_after(command_timeout(s->opt));
    size_t done = 0;

    if (session_connect(s, deadline) < 0)
        return 1;
    if (conn_require_open(s, c)) {
        while (done < s->opt->rounds && c->state == CONN_OPEN) {
            start_phase(s, s->opt->size);
            if (session_run(s, deadline, false) < 0)
                return 1;
            if (c->received != c->goal)
                break; /* closed, reset, mismatch or timed out */
            done++;
        }
    }
    report("rounds=%zu", done);
    return done == s->opt->rounds ? 0 : 1;
}

/* cat: stdin -> socket and socket -> stdout at the same time. */
struct cat {
    struct session *s;
    struct conn *c;
    bool stdin_eof;
    bool stdin_pollable; /* false for regular files, which epoll refuses */
    bool stdin_watched;  /* stdin is in the epoll set with EPOLLIN */
    bool server_eof;
    int64_t deadline;       /* NO_DEADLINE while a person types, without -t */
    size_t len, off;        /* pending[off..len) is still to be sent */
    unsigned char *pending; /* BUF_SIZE bytes read from stdin */
};

/* Watch stdin (level-triggered) only while there is room to read into. */
static int cat_watch_stdin(struct cat *k, bool on)
{
    if (!k->stdin_pollable || k->stdin_eof || k->stdin_watched == on)
        return 0;
    struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = k};
    if (epoll_ctl(k->s->epfd, EPOLL_CTL_MOD, STDIN_FILENO, &ev) != 0) {
        fail("epoll_ctl stdin");
        return -1;
    }
    k->stdin_watched = on;
    return 0;
}

/* Send what stdin gave us; stop reading stdin while the socket is full. */
static int cat_flush(struct cat *k)
{
    while (k->off < k->len) {
        ssize_t n = send(k->c->fd, k->pending + k->off, k->len - k->off, MSG_NOSIGNAL);
        if (n >= 0)
            k->off += (size_t)n;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            return cat_watch_stdin(k, false);
        else if (errno != EINTR) {
            fail("send");
            return -1;
        }
    }
    k->len = k->off = 0;
    return cat_watch_stdin(k, true);
}

/* stdin is done: stop watching it and half-close the connection. */
static int cat_stdin_eof(struct cat *k)
{
    if (k->stdin_pollable &&
        epoll_ctl(k->s->epfd, EPOLL_CTL_DEL, STDIN_FILENO, NULL) != 0) {
        fail("epoll_ctl stdin");
        return -1;
    }
    k->stdin_eof = true;
    if (k->deadline == NO_DEADLINE) /* the person typing is done */
        k->deadline = deadline_after(command_timeout(k->s->opt));
    if (shutdown(k->c->fd, SHUT_WR) != 0) {
        fail("shutdown");
        return -1;
    }
    return 0;
}

/* Read one chunk of stdin (it is ready, or a file) and send it. */
static int cat_read_stdin(struct cat *k)
{
    ssize_t n = read(STDIN_FILENO, k->pending, BUF_SIZE);

    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n < 0) {
        fail("read stdin");
        return -1;
    }
    if (n == 0)
        return cat_stdin_eof(k);
    k->len = (size_t)n;
    k->off = 0;
    return cat_flush(k);
}

/* Copy everything the server sent to stdout. */
static int cat_receive(struct cat *k)
{
    for (;;) {
        ssize_t n = recv(k->c->fd, k->s->buf, sizeof k->s->buf, 0);
        if (n > 0) {
            if (write_all(STDOUT_FILENO, k->s->buf, (size_t)n) < 0)
                return -1;
        } else if (n == 0) {
            k->server_eof = true;
            return 0;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        } else if (errno != EINTR) {
            fail("recv");
            return -1;
        }
    }
}

/* Put stdin in the epoll set; epoll refuses regular files (EPERM): those
 * are always ready, so we read them whenever the send buffer is empty. */
static int cat_add_stdin(struct cat *k)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};

    if (epoll_ctl(k->s->epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) == 0) {
        k->stdin_pollable = k->stdin_watched = true;
        return 0;
    }
    if (errno == EPERM)
        return 0;
    fail("epoll_ctl stdin");
    return -1;
}

/* Handle one event of the cat loop. */
static int cat_on_event(struct cat *k, const struct epoll_event *ev)
{
    if (ev->data.ptr == k) /* stdin; it may have been paused meanwhile */
        return k->len == 0 && !k->stdin_eof ? cat_read_stdin(k) : 0;
    if ((ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && cat_receive(k) < 0)
        return -1;
    if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        return cat_flush(k);
    return 0;
}

static int cmd_cat(struct session *s)
{
    /* cat verifies nothing: stdin data waits in the session's spare buffer. */
    struct cat k = {.s = s, .c = &s->conns[0], .pending = s->expect};
    struct epoll_event events[MAX_EVENTS];

    /* Someone typing at a terminal takes the time they need: without -t,
     * the deadline starts at their ^D (cat_stdin_eof). */
    k.deadline = s->opt->timeout_ms < 0 && isatty(STDIN_FILENO)
                     ? NO_DEADLINE
                     : deadline_after(command_timeout(s->opt));
    s->connect_only = true;
    /* The connect used up the socket's first edge: receive once at once. */
    if (session_connect(s, deadline_after(command_timeout(s->opt))) < 0 ||
        !conn_require_open(s, k.c) || cat_add_stdin(&k) < 0 || cat_receive(&k) < 0)
        return 1;
    while (!k.server_eof) {
        bool file_ready = !k.stdin_pollable && !k.stdin_eof && k.len == 0;
        int timeout = ms_until(k.deadline);
        if (timeout == 0) {
            fprintf(stderr, "client: cat: timed out\n");
            return 1;
        }
        int n = epoll_wait(s->epfd, events, MAX_EVENTS, file_ready ? 0 : timeout);
        if (n < 0 && errno != EINTR) {
            fail("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++)
            if (cat_on_event(&k, &events[i]) < 0)
                return 1;
        if (file_ready && cat_read_stdin(&k) < 0)
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------- */

/* Make room for 10,000+ sockets and survive writes to closed sockets. */
static int prepare_process(void)
{
    struct rlimit rl;
    struct sigaction ignore = {.sa_handler = SIG_IGN};

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fail("getrlimit");
        return -1;
    }
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fail("setrlimit");
        return -1;
    }
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, NULL) != 0) {
        fail("sigaction");
        return -1;
    }
    return 0;
}

static int run_command(struct session *s)
{
    switch (s->opt->command) {
    case CMD_ECHO: return cmd_echo(s);
    case CMD_CAT: return cmd_cat(s);
    case CMD_HOLD: return cmd_hold(s);
    case CMD_FLOOD: return cmd_flood(s);
    case CMD_PINGPONG: return cmd_pingpong(s);
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct options opt;
    struct session *s;

    switch (parse_args(argc, argv, &opt)) {
    case PARSE_HELP: usage(stdout); return 0;
    case PARSE_ERROR: usage(stderr); return 2;
    case PARSE_OK: break;
    }
    bool many = opt.command == CMD_ECHO || opt.command == CMD_HOLD;
    s = calloc(1, sizeof *s); /* 128 KiB of buffers: not for the stack */
    if (s == NULL) {
        fail("calloc");
        return 1;
    }
    int status = 1;
    if (prepare_process() == 0 && session_open(s, &opt, many ? opt.conns : 1) == 0)
        status = run_command(s);
    session_close(s);
    free(s);
    return status;
}
