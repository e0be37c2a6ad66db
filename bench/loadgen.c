/*
 * loadgen: the load generator of the benchmarks (bench/README.md).
 *
 * One thread, non-blocking sockets, one epoll instance (edge-triggered). It
 * opens C active connections and I idle ones to an echo server, then keeps P
 * messages of S bytes in flight on every active connection: each time a
 * message has come back whole, the next one is sent. After a warm-up of W
 * seconds it measures for D seconds and prints ONE line of key=value pairs:
 *
 *   mode=load conns=50 idle=0 size=64 inflight=1 ... msgs_per_s=123456 ...
 *
 * Every byte that comes back is checked: each connection sends its own
 * pseudo-random stream, so a lost, doubled, reordered or foreign byte is a
 * mismatch. Errors are counted by kind (refused, reset, early close, wrong
 * byte, timeout, other) and the connection that had one is dropped.
 *
 * Setting up: every connection, idle or not, first sends one byte and waits
 * for its echo, so the server has surely accepted it; at most --window
 * connections are in that state at once, so a burst of 10,000 connects does
 * not overflow the server's listen backlog.
 *
 * With --server-pid it also reads the server's CPU time (the sum over its
 * threads of /proc/PID/task/TID/schedstat, in ns) at the start and the end of
 * the measured window and reports CPU per message. With --hold it measures no
 * traffic: it opens the idle connections, has each echo one byte, then reads
 * the server's peak and current RSS (VmHWM, VmRSS in /proc/PID/status).
 *
 * Loopback only, unless --allow-non-loopback; every phase has a deadline.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    PATTERN_PERIOD = 65521, /* a prime: no message size is a multiple of it */
    MAX_CHUNK = 64 * 1024,  /* most bytes moved by one read() or write() */
    EVENT_BATCH = 512,
    HIST_SUB_BITS = 5, /* 32 sub-buckets per power of two: <= 3 % error */
    HIST_SUB = 1 << HIST_SUB_BITS,
    HIST_BUCKETS = (64 - HIST_SUB_BITS + 1) * HIST_SUB,
};

/* Byte k of connection c's stream is pattern[(k + c * STREAM_STEP) % PERIOD];
 * the array is longer than the period so any MAX_CHUNK bytes of a stream lie
 * contiguously in it. */
#define STREAM_STEP 7919u
static unsigned char pattern[PATTERN_PERIOD + MAX_CHUNK];
static unsigned char rbuf[MAX_CHUNK];

enum state { CONNECTING, PROBING, READY, DEAD };

enum err_kind { E_REFUSED, E_RESET, E_EOF, E_MISMATCH, E_TIMEOUT, E_OTHER, E_KINDS };
static const char *const err_name[E_KINDS] = {"refused", "reset", "eof", "mismatch",
                                              "timeout", "other"};

struct conn {
    int fd;
    enum state state;
    bool active;
    uint32_t id;
    uint64_t sent;   /* bytes written so far */
    uint64_t target; /* bytes handed to it so far: the probe plus every message issued */
    uint64_t recvd;  /* bytes echoed and checked */
    uint64_t issued; /* messages issued */
    uint64_t done;   /* messages fully echoed */
    int64_t *stamps; /* issue time of each message in flight, a ring of P entries */
};

struct options {
    const char *host;
    const char *port;
    long conns, idle, size, inflight, window;
    double warmup, duration, setup_timeout;
    long server_pid;
    bool hold, allow_remote;
};

enum phase { SETUP, WARMUP, MEASURE, DONE };

static struct options opt = {
    .host = "127.0.0.1",
    .port = NULL,
    .conns = 50,
    .idle = 0,
    .size = 64,
    .inflight = 1,
    .window = 128,
    .warmup = 1.0,
    .duration = 3.0,
    .setup_timeout = 30.0,
    .server_pid = 0,
};

static enum phase phase = SETUP;
static struct conn *conns;
static long nconns;
static int epfd;
static struct sockaddr_storage server_addr;
static socklen_t server_addrlen;
static uint64_t errors[E_KINDS];
static long pending;     /* connections opened but not yet READY */
static long next_open;   /* index of the next connection to open */
static long established; /* connections that reached READY */
static uint64_t total_done, total_bytes;
static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_count;

static const char USAGE[] =
    "usage: loadgen -p PORT [-H HOST] [-c CONNS] [-s SIZE] [-P INFLIGHT] [-i IDLE]\n"
    "               [-w WARMUP] [-d DURATION] [--server-pid PID] [--hold]\n"
    "  -H HOST            server address (default 127.0.0.1; loopback only)\n"
    "  -p PORT            server port (required)\n"
    "  -c CONNS           active connections (default 50)\n"
    "  -s SIZE            message size in bytes, 1-65536 (default 64)\n"
    "  -P INFLIGHT        messages in flight per active connection (default 1)\n"
    "  -i IDLE            extra idle connections (default 0)\n"
    "  -w SECONDS         warm-up before measuring (default 1)\n"
    "  -d SECONDS         measured window (default 3)\n"
    "  -W WINDOW          connections being set up at once (default 128)\n"
    "  -T SECONDS         deadline for setting up all connections (default 30)\n"
    "  --server-pid PID   report the server's CPU time (and RSS with --hold)\n"
    "  --hold             open the idle connections, echo one byte on each,\n"
    "                     report the server's VmHWM/VmRSS and exit\n"
    "  --allow-non-loopback  allow a server address outside 127.0.0.0/8 and ::1\n"
    "Prints one line of key=value pairs. Exit 0 after a run (errors are\n"
    "counted in that line), 1 on a fatal error, 2 on a usage error.\n";

static _Noreturn void fatal(const char *what, int err)
{
    fprintf(stderr, "loadgen: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
    exit(1);
}

static _Noreturn void usage_error(const char *problem)
{
    fprintf(stderr, "loadgen: %s\n%s", problem, USAGE);
    exit(2);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t own_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- Latency histogram (log-linear, like HdrHistogram) ------------------ */

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* The middle of bucket i. */
static double hist_value(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned e = i / HIST_SUB - 1 + HIST_SUB_BITS, sub = i % HIST_SUB;
    double lo = (double)((uint64_t)(HIST_SUB + sub) << (e - HIST_SUB_BITS));
    return lo + (double)((uint64_t)1 << (e - HIST_SUB_BITS)) / 2.0;
}

static double hist_percentile(double p)
{
    if (hist_count == 0)
        return -1;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)hist_count);
    if (rank >= hist_count)
        rank = hist_count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > rank)
            return hist_value(i);
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---- The server process: CPU time and memory ---------------------------- */

/* Nanoseconds on CPU of every thread of the server, or -1. */
static int64_t server_cpu_ns(void)
{
    if (opt.server_pid <= 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", opt.server_pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int64_t sum = 0;
    struct dirent *de;
    int tasks = 0;
    while ((de = readdir(dir)) != NULL && tasks < 4096) {
        if (de->d_name[0] == '.')
            continue;
        char file[128];
        snprintf(file, sizeof file, "%s/%.32s/schedstat", path, de->d_name);
        FILE *f = fopen(file, "r");
        if (!f)
            continue;
        long long ns;
        if (fscanf(f, "%lld", &ns) == 1)
            sum += ns;
        fclose(f);
        tasks++;
    }
    closedir(dir);
    return tasks ? sum : -1;
}

/* The kernel's ksoftirqd threads: when interrupts bring more network work
 * than the kernel will do on the way out of an interrupt or a system call,
 * it hands the rest to them, and their CPU time shows up in no process. */
static long softirq_pids[64];
static int nsoftirq_pids;

static void find_ksoftirqd(void)
{
    DIR *dir = opendir("/proc");
    if (!dir)
        return;
    struct dirent *de;
    long scanned = 0;
    while ((de = readdir(dir)) != NULL && scanned++ < 100000 && nsoftirq_pids < 64) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || pid > 4096) /* kernel threads start early */
            continue;
        char path[64], comm[32] = "";
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f) && strncmp(comm, "ksoftirqd/", 10) == 0)
            softirq_pids[nsoftirq_pids++] = pid;
        fclose(f);
    }
    closedir(dir);
}

static int64_t ksoftirqd_ns(void)
{
    int64_t sum = 0;
    for (int i = 0; i < nsoftirq_pids; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/schedstat", softirq_pids[i]);
        FILE *f = fopen(path, "r");
        long long ns;
        if (!f)
            return -1;
        if (fscanf(f, "%lld", &ns) == 1)
            sum += ns;
        fclose(f);
    }
    return nsoftirq_pids ? sum : -1;
}

/* CPU time of every other thread on the machine (not the server's, not
 * ours, not ksoftirqd's): a run during which other programs were busy was
 * disturbed, and the harness runs it again. Threads are matched by id in a
 * small open-addressing table; a thread that starts in the window counts
 * whole, one that ends in it is missed. */
enum { OTHER_SLOTS = 1 << 16 };
static struct { int tid; int64_t ns; } *others;

static bool is_ours(long pid)
{
    if (pid == (long)getpid() || pid == opt.server_pid)
        return true;
    for (int i = 0; i < nsoftirq_pids; i++)
        if (pid == softirq_pids[i])
            return true;
    return false;
}

/* Walks every thread of every other process: records its CPU time (record)
 * or returns the sum of what each used since it was recorded. */
static int64_t other_threads(bool record)
{
    if (!others && !(others = calloc(OTHER_SLOTS, sizeof *others)))
        return -1;
    DIR *proc = opendir("/proc");
    if (!proc)
        return -1;
    int64_t used = 0;
    long scanned = 0;
    struct dirent *de;
    while ((de = readdir(proc)) != NULL && scanned++ < 100000) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0 || is_ours(pid))
            continue;
        char path[96];
        snprintf(path, sizeof path, "/proc/%ld/task", pid);
        DIR *tasks = opendir(path);
        if (!tasks)
            continue;
        struct dirent *te;
        while ((te = readdir(tasks)) != NULL && scanned++ < 100000) {
            long tid = strtol(te->d_name, &end, 10);
            if (*end || tid <= 0)
                continue;
            snprintf(path, sizeof path, "/proc/%ld/task/%ld/schedstat", pid, tid);
            FILE *f = fopen(path, "r");
            long long ns;
            if (!f)
                continue;
            int ok = fscanf(f, "%lld", &ns) == 1;
            fclose(f);
            if (!ok)
                continue;
            unsigned h = (unsigned)tid * 2654435761u % OTHER_SLOTS;
            for (int probe = 0; probe < 64; probe++, h = (h + 1) % OTHER_SLOTS) {
                if (others[h].tid == tid) {
                    if (record)
                        others[h].ns = ns;
                    else if (ns > others[h].ns)
                        used += ns - others[h].ns;
                    break;
                }
                if (others[h].tid == 0) {
                    if (record) {
                        others[h].tid = (int)tid;
                        others[h].ns = ns;
                    } else {
                        used += ns; /* started within the window */
                    }
                    break;
                }
            }
        }
        closedir(tasks);
    }
    closedir(proc);
    return used;
}

/* The time the hypervisor took from all CPUs so far (steal, in /proc/stat),
 * in ns, or -1. */
static int64_t steal_ns(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    long long v[8];
    int n = fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    return n == 8 && hz > 0 ? (int64_t)v[7] * (1000000000 / hz) : -1;
}

/* A "VmHWM:" style field of /proc/PID/status in KiB, or -1. */
static long server_status_kib(const char *field)
{
    if (opt.server_pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", opt.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            kib = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

/* ---- Connections -------------------------------------------------------- */

static void fail(struct conn *c, enum err_kind kind)
{
    if (c->state == DEAD)
        return;
    errors[kind]++;
    if (c->state != READY)
        pending--;
    c->state = DEAD;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
}

static enum err_kind classify(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return E_REFUSED;
    case ECONNRESET:
    case EPIPE:
        return E_RESET;
    case ETIMEDOUT:
        return E_TIMEOUT;
    default:
        return E_OTHER;
    }
}

static void open_conn(struct conn *c)
{
    int fd = socket(server_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        fatal("socket", errno);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = CONNECTING;
    pending++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        fatal("epoll_ctl", errno);
    if (connect(fd, (struct sockaddr *)&server_addr, server_addrlen) == -1 &&
        errno != EINPROGRESS)
        fail(c, classify(errno));
}

static void open_more(void)
{
    while (pending < opt.window && next_open < nconns)
        open_conn(&conns[next_open++]);
}

/* Hands the connection another message; flush_writes() sends it. */
static void issue(struct conn *c, int64_t now)
{
    c->stamps[c->issued % (uint64_t)opt.inflight] = now;
    c->issued++;
    c->target += (uint64_t)opt.size;
}

static void flush_writes(struct conn *c)
{
    unsigned spins = 0;
    while (c->state != DEAD && c->sent < c->target && spins++ < 1024) {
        uint64_t left = c->target - c->sent;
        size_t len = left < MAX_CHUNK ? (size_t)left : MAX_CHUNK;
        size_t off = (size_t)((c->sent + c->id * (uint64_t)STREAM_STEP) % PATTERN_PERIOD);
        ssize_t n = send(c->fd, pattern + off, len, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (uint64_t)n;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            return; /* EPOLLOUT (edge-triggered) says when there is room */
        } else {
            fail(c, classify(errno));
        }
    }
}

/* A message is done once all its bytes have come back: message m (from 0)
 * ends at stream offset 1 + (m + 1) * size, after the one-byte probe. */
static void account(struct conn *c, int64_t now)
{
    if (c->state == PROBING && c->recvd >= 1) {
        c->state = READY;
        pending--;
        established++;
    }
    if (!c->active || c->recvd < 1)
        return;
    uint64_t done = (c->recvd - 1) / (uint64_t)opt.size;
    while (c->done < done) {
        if (phase == MEASURE) {
            int64_t lat = now - c->stamps[c->done % (uint64_t)opt.inflight];
            hist[hist_index(lat > 0 ? (uint64_t)lat : 0)]++;
            hist_count++;
        }
        c->done++;
        total_done++;
        if (phase == WARMUP || phase == MEASURE)
            issue(c, now);
    }
}

static void read_all(struct conn *c)
{
    int64_t now = now_ns();
    unsigned spins = 0;
    while (c->state != DEAD && spins++ < 1024) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n > 0) {
            if (c->recvd + (uint64_t)n > c->sent) {
                fail(c, E_MISMATCH); /* more came back than was sent */
                return;
            }
            size_t off = (size_t)((c->recvd + c->id * (uint64_t)STREAM_STEP) % PATTERN_PERIOD);
            if (memcmp(rbuf, pattern + off, (size_t)n) != 0) {
                fail(c, E_MISMATCH);
                return;
            }
            c->recvd += (uint64_t)n;
            total_bytes += (uint64_t)n;
            account(c, now);
            /* A short read emptied the socket; with edge-triggered epoll,
             * bytes that arrive later raise a new event. Saves a recv(). */
            if ((size_t)n < sizeof rbuf)
                break;
        } else if (n == 0) {
            fail(c, E_EOF); /* the server closed a connection it should keep */
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN) {
            break;
        } else {
            fail(c, classify(errno));
            return;
        }
    }
    flush_writes(c);
}

static void on_event(struct conn *c, uint32_t events)
{
    if (c->state == DEAD)
        return;
    if (c->state == CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err) {
            fail(c, classify(err));
            return;
        }
        c->state = PROBING;
        c->target = 1;
        flush_writes(c);
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        read_all(c);
    if (c->state != DEAD && (events & EPOLLOUT))
        flush_writes(c);
}

/* ---- Command line ------------------------------------------------------- */

static long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be a number in %ld-%ld", what, min, max);
        usage_error(msg);
    }
    return v;
}

static double parse_seconds(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 3600)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be seconds in 0-3600", what);
        usage_error(msg);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { OPT_PID = 256, OPT_HOLD, OPT_REMOTE };
    static const struct option longopts[] = {
        {"server-pid", required_argument, NULL, OPT_PID},
        {"hold", no_argument, NULL, OPT_HOLD},
        {"allow-non-loopback", no_argument, NULL, OPT_REMOTE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "H:p:c:s:P:i:w:d:W:T:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H': opt.host = optarg; break;
        case 'p': parse_long(optarg, 1, 65535, "port"); opt.port = optarg; break;
        case 'c': opt.conns = parse_long(optarg, 0, 1000000, "CONNS"); break;
        case 's': opt.size = parse_long(optarg, 1, MAX_CHUNK, "SIZE"); break;
        case 'P': opt.inflight = parse_long(optarg, 1, 4096, "INFLIGHT"); break;
        case 'i': opt.idle = parse_long(optarg, 0, 1000000, "IDLE"); break;
        case 'w': opt.warmup = parse_seconds(optarg, "WARMUP"); break;
        case 'd': opt.duration = parse_seconds(optarg, "DURATION"); break;
        case 'W': opt.window = parse_long(optarg, 1, 100000, "WINDOW"); break;
        case 'T': opt.setup_timeout = parse_seconds(optarg, "setup deadline"); break;
        case OPT_PID: opt.server_pid = parse_long(optarg, 1, 1L << 30, "PID"); break;
        case OPT_HOLD: opt.hold = true; break;
        case OPT_REMOTE: opt.allow_remote = true; break;
        case 'h': fputs(USAGE, stdout); exit(0);
        default: usage_error("unknown option");
        }
    }
    if (optind != argc)
        usage_error("unexpected argument");
    if (!opt.port)
        usage_error("-p PORT is required");
    if (opt.hold)
        opt.conns = 0;
    else if (opt.conns < 1)
        usage_error("need at least one active connection (or --hold)");
    if (!opt.hold && opt.duration <= 0)
        usage_error("DURATION must be more than 0");
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

static void resolve(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", opt.host, gai_strerror(rc));
        exit(1);
    }
    if (!opt.allow_remote && !is_loopback(res->ai_addr)) {
        fprintf(stderr, "loadgen: %s is not a loopback address "
                        "(use --allow-non-loopback to load another machine)\n",
                opt.host);
        exit(1);
    }
    memcpy(&server_addr, res->ai_addr, res->ai_addrlen);
    server_addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void raise_fd_limit(long needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)needed > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %ld connections need %ld descriptors, the limit is %llu "
                        "(raise the hard limit: ulimit -Hn)\n",
                nconns, needed, (unsigned long long)rl.rlim_cur);
        exit(1);
    }
}

/* ---- Main loop ---------------------------------------------------------- */

static void run_until(int64_t deadline, bool until_set_up)
{
    struct epoll_event events[EVENT_BATCH];
    for (;;) {
        if (until_set_up && pending == 0 && next_open >= nconns)
            return;
        int64_t left = deadline - now_ns();
        if (left <= 0)
            return;
        int timeout = (int)((left + 999999) / 1000000);
        int n = epoll_wait(epfd, events, EVENT_BATCH, timeout);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            fatal("epoll_wait", errno);
        }
        for (int i = 0; i < n; i++)
            on_event(events[i].data.ptr, events[i].events);
        if (until_set_up)
            open_more();
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    resolve();
    nconns = opt.conns + opt.idle;
    raise_fd_limit(nconns + 16);

    /* Any fixed pseudo-random bytes will do (xorshift32). */
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PATTERN_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)x;
    }
    for (size_t i = PATTERN_PERIOD; i < sizeof pattern; i++)
        pattern[i] = pattern[i - PATTERN_PERIOD];

    conns = calloc((size_t)(nconns ? nconns : 1), sizeof *conns);
    int64_t *stamps = calloc((size_t)(opt.conns ? opt.conns : 1) * (size_t)opt.inflight,
                             sizeof *stamps);
    if (!conns || !stamps)
        fatal("out of memory", 0);
    /* The active connections come first, so they get the lowest descriptors. */
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].id = (uint32_t)i;
        conns[i].active = i < opt.conns;
        if (conns[i].active)
            conns[i].stamps = stamps + i * opt.inflight;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1)
        fatal("epoll_create1", errno);

    /* Setting up. */
    int64_t t_setup = now_ns();
    open_more();
    run_until(t_setup + (int64_t)(opt.setup_timeout * 1e9), true);
    for (long i = 0; i < nconns; i++) /* whatever is not set up by now never will be */
        if (conns[i].state == CONNECTING || conns[i].state == PROBING)
            fail(&conns[i], E_TIMEOUT);
    for (long i = next_open; i < nconns; i++)
        errors[E_TIMEOUT]++;
    double setup_s = (double)(now_ns() - t_setup) / 1e9;
    uint64_t nerrors = 0;

    if (opt.hold) {
        long hwm = server_status_kib("VmHWM"), rss = server_status_kib("VmRSS");
        for (int k = 0; k < E_KINDS; k++)
            nerrors += errors[k];
        printf("mode=hold idle=%ld established=%ld setup_s=%.3f vmhwm_kib=%ld vmrss_kib=%ld "
               "errors=%" PRIu64,
               opt.idle, established, setup_s, hwm, rss, nerrors);
        for (int k = 0; k < E_KINDS; k++)
            printf(" err_%s=%" PRIu64, err_name[k], errors[k]);
        putchar('\n');
        return 0;
    }

    /* Warming up: every active connection gets its P messages. */
    phase = WARMUP;
    int64_t t = now_ns();
    for (long i = 0; i < opt.conns; i++) {
        struct conn *c = &conns[i];
        if (c->state != READY)
            continue;
        for (long k = 0; k < opt.inflight; k++)
            issue(c, t);
        flush_writes(c);
    }
    run_until(t + (int64_t)(opt.warmup * 1e9), false);

    /* Measuring. */
    phase = MEASURE;
    uint64_t done0 = total_done, bytes0 = total_bytes;
    find_ksoftirqd();
    int64_t steal0 = steal_ns(), soft0 = ksoftirqd_ns(), other0 = other_threads(true);
    int64_t cpu0 = server_cpu_ns(), own0 = own_cpu_ns(), t0 = now_ns();
    run_until(t0 + (int64_t)(opt.duration * 1e9), false);
    int64_t t1 = now_ns(), cpu1 = server_cpu_ns(), own1 = own_cpu_ns(), steal1 = steal_ns(),
            soft1 = ksoftirqd_ns(), other1 = other0 >= 0 ? other_threads(false) : -1;
    phase = DONE;

    double secs = (double)(t1 - t0) / 1e9;
    uint64_t msgs = total_done - done0, bytes = total_bytes - bytes0;
    long alive = 0;
    for (long i = 0; i < opt.conns; i++)
        alive += conns[i].state == READY;
    for (int k = 0; k < E_KINDS; k++)
        nerrors += errors[k];

    printf("mode=load conns=%ld idle=%ld size=%ld inflight=%ld warmup=%.3f duration=%.3f "
           "setup_s=%.3f established=%ld alive=%ld msgs=%" PRIu64 " msgs_per_s=%.0f "
           "mib_per_s=%.2f p50_us=%.1f p99_us=%.1f",
           opt.conns, opt.idle, opt.size, opt.inflight, opt.warmup, secs, setup_s, established,
           alive, msgs, (double)msgs / secs, (double)bytes / secs / (1024.0 * 1024.0),
           hist_percentile(50) / 1e3, hist_percentile(99) / 1e3);
    if (cpu0 >= 0 && cpu1 >= cpu0)
        printf(" srv_cpu_pct=%.1f cpu_us_per_msg=%.3f", (double)(cpu1 - cpu0) / 1e7 / secs,
               msgs ? (double)(cpu1 - cpu0) / 1e3 / (double)msgs : -1.0);
    else
        printf(" srv_cpu_pct=NA cpu_us_per_msg=NA");
    printf(" lg_cpu_pct=%.1f", (double)(own1 - own0) / 1e7 / secs);
    /* Time the hypervisor ran something else on our CPUs: a run with much of
     * it was disturbed from outside the machine. */
    if (other1 >= 0)
        printf(" other_cpu_pct=%.1f", (double)other1 / 1e7 / secs);
    else
        printf(" other_cpu_pct=NA");
    if (soft0 >= 0 && soft1 >= soft0)
        printf(" ksoftirqd_pct=%.1f", (double)(soft1 - soft0) / 1e7 / secs);
    else
        printf(" ksoftirqd_pct=NA");
    if (steal0 >= 0 && steal1 >= steal0)
        printf(" steal_pct=%.1f", (double)(steal1 - steal0) / 1e7 / secs);
    else
        printf(" steal_pct=NA");
    printf(" errors=%" PRIu64, nerrors);
    for (int k = 0; k < E_KINDS; k++)
        printf(" err_%s=%" PRIu64, err_name[k], errors[k]);
    putchar('\n');
    return 0;
}
