#define _GNU_SOURCE
/*
 * chat-client.c - the test client of the chat build exercise
 * (exercises/chat/): it speaks the chat protocol the exercise states, and
 * checks what a chat server sends back.
 *
 *   chat-client [-H HOST] -p PORT [-t TIMEOUT_MS] script
 *   chat-client [-H HOST] -p PORT [-t TIMEOUT_MS] crowd [-c CONNS] [-n LINES]
 *               [-s SLOW] [-w WINDOW] [-e END_MS]
 *
 * -t is the deadline of the whole command (default 10000 ms). -H, -p and -t
 * may also follow the command.
 *
 * script: steps from stdin, one a line; connections are named A to Z:
 *   A> TEXT    send TEXT on A as it is: nothing added; \n, \\ and \xHH
 *              stand for a newline, a backslash and any byte
 *   A< TEXT    the next line A receives (without its "\n") is TEXT; {B}
 *              stands for B's address as the server names it (the same
 *              escapes as above)
 *   A.         A receives end-of-file or a reset next
 *   A!         close A
 * Before the first step, every connection the script names is opened, in
 * the order the script first names them, and each waits for the server's
 * greeting, "welcome ADDR:PORT", naming its own address: from then on the
 * server relays to it every line it reads.
 *   -> "ok steps=N", exit 0; or "failed at step N (STEP): WHAT", exit 1
 *
 * crowd: SLOW (0) clients that connect with a tiny receive buffer and never
 * read after their greeting, then CONNS (100) active clients, each sending
 * LINES (10) lines in writes of random sizes (lines split across writes,
 * several in one write) while reading everything. Each active client must
 * get every other active client's lines, each once, in the order they were
 * sent, prefixed with the sender's address, and none of its own. No client
 * sends while any active client could have more than WINDOW (256) lines on
 * their way to it: an active client that reads keeps the server's queue
 * for it short, whatever the load. Once they are done (or the deadline has
 * passed), each slow client is read until the server closes it, for at
 * most END_MS (5000) more: by then a server that drops slow clients has.
 *   -> ok=K wrong=W missing=M dropped=D   (K active clients got all their
 *      lines right, W got a wrong one -- the first is described on stderr,
 *      M ran out of time or were closed; D slow clients were closed)
 *      exit 0 iff K == CONNS
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

enum {
    NAME_SIZE = 64,        /* "[IPv6]:port" */
    LINE_SIZE = 64 * 1024, /* the longest line a script may expect */
    NAMED = 26,            /* script connections A to Z */
};

struct options {
    const char *host, *port;
    long long timeout_ms;
    size_t conns, lines, slow, window, end_ms;
};

/* ---- Small helpers ------------------------------------------------------- */

static void fail(const char *what)
{
    fprintf(stderr, "chat-client: %s: %s\n", what, strerror(errno));
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A poll() timeout until DEADLINE: 0 once it has passed. */
static int ms_until(long long deadline)
{
    long long left = deadline - now_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static bool parse_size(const char *text, size_t *out)
{
    char *end;
    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value > SIZE_MAX)
        return false;
    *out = (size_t)value;
    return true;
}

/* "127.0.0.1:5000" or "[::1]:5000": how the chat server names a client. */
static void socket_name(int fd, char *text)
{
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    char host[INET6_ADDRSTRLEN] = "?";
    if (getsockname(fd, (struct sockaddr *)&address, &length) == -1) {
        fail("getsockname");
        exit(1);
    }
    if (address.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(text, NAME_SIZE, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&address;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host);
        snprintf(text, NAME_SIZE, "%s:%u", host, (unsigned)ntohs(in4->sin_port));
    }
}

/* ---- A connection and its received bytes --------------------------------- */

struct conn {
    int fd;
    char name[NAME_SIZE];
    char *in; /* received, not yet taken as lines */
    size_t in_length, in_capacity;
    bool ended; /* end-of-file or reset came */
};

/* Connects to the server, with SO_RCVBUF and TCP_MAXSEG made small first
 * when TINY: a client that never reads then holds little in the kernel, so
 * the server's own queue for it fills soon. Returns false on failure. */
static bool conn_open(struct conn *c, const struct options *o, bool tiny)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *addresses;
    int status = getaddrinfo(o->host, o->port, &hints, &addresses);
    if (status != 0) {
        fprintf(stderr, "chat-client: %s: %s\n", o->host, gai_strerror(status));
        return false;
    }
    *c = (struct conn){.fd = -1};
    for (struct addrinfo *a = addresses; a != NULL && c->fd == -1; a = a->ai_next) {
        c->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (c->fd == -1)
            continue;
        int small = 1, segment = 536, on = 1;
        if (tiny && (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == -1 ||
                     setsockopt(c->fd, IPPROTO_TCP, TCP_MAXSEG, &segment, sizeof segment) == -1))
            fail("setsockopt");
        if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
            fail("setsockopt TCP_NODELAY");
        if (connect(c->fd, a->ai_addr, a->ai_addrlen) == -1) {
            fail("connect");
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (c->fd == -1)
        return false;
    socket_name(c->fd, c->name);
    return true;
}

static void conn_close(struct conn *c)
{
    if (c->fd != -1 && close(c->fd) == -1)
        fail("close");
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->in_length = c->in_capacity = 0;
}

/* One recv() into c->in, without waiting. Returns false on a failure of
 * ours (no memory); an end or a reset sets c->ended. */
static bool conn_receive(struct conn *c)
{
    if (c->in_capacity - c->in_length < 4096) {
        size_t capacity = c->in_capacity < 8192 ? 8192 : 2 * c->in_capacity;
        char *grown = realloc(c->in, capacity);
        if (grown == NULL) {
            fail("realloc");
            return false;
        }
        c->in = grown;
        c->in_capacity = capacity;
    }
    ssize_t n = recv(c->fd, c->in + c->in_length, c->in_capacity - c->in_length, MSG_DONTWAIT);
    if (n > 0)
        c->in_length += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        c->ended = true;
    return true;
}

/* Takes the first whole line of c->in into LINE (without its "\n", NUL
 * added; at most LINE_SIZE - 1 bytes kept). Returns its length, or -1 if
 * no whole line has come yet. */
static ssize_t conn_take_line(struct conn *c, char *line)
{
    char *newline = c->in_length > 0 ? memchr(c->in, '\n', c->in_length) : NULL;
    if (newline == NULL)
        return -1;
    size_t length = (size_t)(newline - c->in);
    size_t kept = length < LINE_SIZE - 1 ? length : LINE_SIZE - 1;
    memcpy(line, c->in, kept);
    line[kept] = '\0';
    c->in_length -= length + 1;
    memmove(c->in, newline + 1, c->in_length);
    return (ssize_t)kept;
}

/* Waits until C has a whole line, or has ended, or DEADLINE. Returns the
 * line's length, -1 (ended) or -2 (out of time or a failure). */
static ssize_t conn_wait_line(struct conn *c, char *line, long long deadline)
{
    for (;;) {
        ssize_t length = conn_take_line(c, line);
        if (length >= 0)
            return length;
        if (c->ended)
            return -1;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int ready = poll(&p, 1, ms_until(deadline));
        if (ready == -1 && errno != EINTR) {
            fail("poll");
            return -2;
        }
        if (ready == 0)
            return -2;
        if (ready > 0 && !conn_receive(c))
            return -2;
    }
}

/* Sends all of BYTES on C by DEADLINE. */
static bool conn_send_all(struct conn *c, const char *bytes, size_t length, long long deadline)
{
    while (length > 0) {
        ssize_t n = send(c->fd, bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0) {
            bytes += n;
            length -= (size_t)n;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        struct pollfd p = {.fd = c->fd, .events = POLLOUT};
        if (poll(&p, 1, ms_until(deadline)) == 0)
            return false;
    }
    return true;
}

/* Waits for the greeting: "welcome " and C's own name. */
static bool conn_greeted(struct conn *c, long long deadline, char *why)
{
    static char line[LINE_SIZE];
    ssize_t length = conn_wait_line(c, line, deadline);
    if (length < 0) {
        snprintf(why, LINE_SIZE, "no greeting (\"welcome %s\") came: %s", c->name,
                 length == -1 ? "the server closed the connection" : "timed out");
        return false;
    }
    if (strncmp(line, "welcome ", 8) != 0 || strcmp(line + 8, c->name) != 0) {
        snprintf(why, LINE_SIZE, "the greeting is \"%.200s\", not \"welcome %s\"", line, c->name);
        return false;
    }
    return true;
}

/* ---- script -------------------------------------------------------------- */

/* Turns the escapes of TEXT into bytes in OUT, {X} into X's name when
 * NAMES is given. Returns the length, or -1 if it does not fit or names a
 * connection not opened yet. */
static ssize_t unescape(const char *text, char *out, size_t size, struct conn *names)
{
    size_t length = 0;
    while (*text != '\0') {
        char piece[NAME_SIZE];
        size_t piece_length = 1;
        piece[0] = *text++;
        if (piece[0] == '\\' && *text == 'n') {
            piece[0] = '\n';
            text++;
        } else if (piece[0] == '\\' && *text == '\\') {
            text++;
        } else if (piece[0] == '\\' && *text == 'x' && text[1] && text[2]) {
            char hex[3] = {text[1], text[2], '\0'};
            piece[0] = (char)strtol(hex, NULL, 16);
            text += 3;
        } else if (piece[0] == '{' && names != NULL && text[0] >= 'A' && text[0] <= 'Z' &&
                   text[1] == '}') {
            struct conn *named = &names[text[0] - 'A'];
            if (named->fd == -1)
                return -1;
            piece_length = strlen(named->name);
            memcpy(piece, named->name, piece_length);
            text += 2;
        }
        if (length + piece_length > size)
            return -1;
        memcpy(out + length, piece, piece_length);
        length += piece_length;
    }
    return (ssize_t)length;
}

/* Runs one step. Returns false with WHY set if it failed. */
static bool run_step(struct conn *conns, const char *step, long long deadline, char *why)
{
    static char bytes[LINE_SIZE], line[LINE_SIZE];
    struct conn *c = &conns[step[0] - 'A'];
    char action = step[1];
    if (c->fd == -1) {
        snprintf(why, LINE_SIZE, "%c is closed already", step[0]);
        return false;
    }
    if (action == '!') {
        conn_close(c);
        return true;
    }
    if (action == '.') {
        ssize_t length = conn_wait_line(c, line, deadline);
        if (length == -1)
            return true;
        snprintf(why, LINE_SIZE, "%c: %s", step[0],
                 length == -2 ? "the server did not close the connection in time"
                              : "a line came instead of the end:");
        if (length >= 0)
            snprintf(why + strlen(why), 512, " \"%.400s\"", line);
        return false;
    }
    ssize_t length = unescape(step + 3, bytes, sizeof bytes - 1, action == '<' ? conns : NULL);
    if (length < 0) {
        snprintf(why, LINE_SIZE, "bad step (too long, or names a connection not open yet)");
        return false;
    }
    if (action == '>') {
        if (conn_send_all(c, bytes, (size_t)length, deadline))
            return true;
        snprintf(why, LINE_SIZE, "%c: could not send: %s", step[0],
                 errno == 0 ? "timed out" : strerror(errno));
        return false;
    }
    bytes[length] = '\0';
    ssize_t got = conn_wait_line(c, line, deadline);
    if (got >= 0 && (size_t)got == (size_t)length && memcmp(line, bytes, (size_t)length) == 0)
        return true;
    if (got >= 0)
        snprintf(why, LINE_SIZE, "%c expected \"%.400s\" but got \"%.400s\"", step[0], bytes, line);
    else
        snprintf(why, LINE_SIZE, "%c expected \"%.400s\" but %s", step[0], bytes,
                 got == -1 ? "the server closed the connection" : "nothing came in time");
    return false;
}

static bool valid_step(const char *step)
{
    return step[0] >= 'A' && step[0] <= 'Z' &&
           (((step[1] == '>' || step[1] == '<') && step[2] == ' ') ||
            ((step[1] == '.' || step[1] == '!') && step[2] == '\0'));
}

/* Reads every step of the script from stdin into STEPS (NUL-separated).
 * Returns how many, or -1 (with a message) on a bad one. */
static ssize_t read_script(char *steps, size_t size)
{
    size_t used = 0, count = 0;
    while (fgets(steps + used, (int)(size - used), stdin) != NULL) {
        char *step = steps + used;
        step[strcspn(step, "\n")] = '\0';
        count++;
        if (!valid_step(step)) {
            printf("failed at step %zu (%.200s): not a step\n", count, step);
            return -1;
        }
        used += strlen(step) + 1;
        if (size - used < 2) {
            printf("failed: the script is too long\n");
            return -1;
        }
    }
    return (ssize_t)count;
}

/* Opens every connection the steps name, each greeted, in order. */
static bool open_named(struct conn *conns, const struct options *o, const char *steps,
                       size_t count, long long deadline)
{
    static char why[LINE_SIZE];
    for (size_t i = 0; i < count; i++, steps += strlen(steps) + 1) {
        struct conn *c = &conns[steps[0] - 'A'];
        if (c->fd != -1)
            continue;
        if (!conn_open(c, o, false) || !conn_greeted(c, deadline, why)) {
            printf("failed to open %c: %s\n", steps[0], c->fd == -1 ? "cannot connect" : why);
            return false;
        }
    }
    return true;
}

static int cmd_script(const struct options *o)
{
    static char steps[1 << 20], why[LINE_SIZE];
    struct conn conns[NAMED];
    long long deadline = now_ms() + o->timeout_ms;
    ssize_t count = read_script(steps, sizeof steps);
    if (count < 0)
        return 2;
    for (int i = 0; i < NAMED; i++)
        conns[i] = (struct conn){.fd = -1};
    bool ok = open_named(conns, o, steps, (size_t)count, deadline);
    const char *step = steps;
    for (size_t i = 0; ok && i < (size_t)count; i++, step += strlen(step) + 1) {
        ok = run_step(conns, step, deadline, why);
        if (!ok)
            printf("failed at step %zu (%.200s): %s\n", i + 1, step, why);
    }
    if (ok)
        printf("ok steps=%zd\n", count);
    for (int i = 0; i < NAMED; i++)
        conn_close(&conns[i]);
    return ok ? 0 : 1;
}

/* ---- crowd --------------------------------------------------------------- */

/* Line J of active client I: "I J " and a filler that depends on both. */
static size_t crowd_line(size_t i, size_t j, char *out)
{
    int length = snprintf(out, 64, "%zu %zu ", i, j);
    size_t filler = (i * 31 + j * 17) % 48;
    memset(out + length, 'a' + (int)((i + j) % 26), filler);
    return (size_t)length + filler;
}

struct active {
    struct conn c;
    char out[4096]; /* the next lines to send ... */
    size_t out_length, out_done;
    size_t lines_queued;  /* ... lines put in `out` so far */
    size_t lines_sent;    /* lines whose last byte has gone */
    size_t lines_got;     /* right lines received */
    bool wrong;
};

struct crowd {
    const struct options *o;
    struct active *actives;
    struct conn *slow;
    uint32_t *next_from; /* next_from[r * conns + s]: next line r expects of s */
    int32_t *by_port;    /* port -> active index, or -1 */
    size_t lines_sent;   /* by all active clients */
    uint64_t random;
    bool told; /* the first wrong line has been described */
};

static uint64_t next_random(struct crowd *k)
{
    k->random ^= k->random << 13;
    k->random ^= k->random >> 7;
    k->random ^= k->random << 17;
    return k->random;
}

/* Receiver R is wrong: describe the first such line on stderr. */
static void crowd_wrong(struct crowd *k, size_t r, const char *what, const char *line)
{
    if (!k->actives[r].wrong && !k->told) {
        fprintf(stderr, "chat-client: client %zu (%s) %s: \"%.300s\"\n", r,
                k->actives[r].c.name, what, line);
        k->told = true;
    }
    k->actives[r].wrong = true;
}

/* Checks one line received by active client R. */
static void crowd_check(struct crowd *k, size_t r, const char *line)
{
    const char *colon = strstr(line, ": ");
    size_t address_length = colon != NULL ? (size_t)(colon - line) : 0;
    const char *port = colon != NULL ? memrchr(line, ':', address_length) : NULL;
    if (port == NULL || address_length >= NAME_SIZE) {
        crowd_wrong(k, r, "got a line with no \"ADDR:PORT: \" prefix", line);
        return;
    }
    long number = strtol(port + 1, NULL, 10);
    int32_t sender = number > 0 && number < 65536 ? k->by_port[number] : -1;
    if (sender < 0 || strncmp(k->actives[sender].c.name, line, address_length) != 0 ||
        k->actives[sender].c.name[address_length] != '\0') {
        crowd_wrong(k, r, "got a line from a sender it does not know", line);
        return;
    }
    if ((size_t)sender == r) {
        crowd_wrong(k, r, "got its own line back", line);
        return;
    }
    char expected[128];
    uint32_t *next = &k->next_from[r * k->o->conns + (size_t)sender];
    size_t length = crowd_line((size_t)sender, *next, expected);
    if (*next >= k->o->lines) {
        crowd_wrong(k, r, "got a line more than its sender sent", line);
        return;
    }
    if (strlen(colon + 2) != length || memcmp(colon + 2, expected, length) != 0) {
        crowd_wrong(k, r, "got a line out of order, changed, or after a lost one", line);
        return;
    }
    (*next)++;
    k->actives[r].lines_got++;
}

static bool crowd_done(const struct crowd *k, size_t r)
{
    const struct active *a = &k->actives[r];
    return a->wrong || a->c.ended || a->lines_got == (k->o->conns - 1) * k->o->lines;
}

/* How many lines may still go out now: none while some active client
 * could have WINDOW lines on their way to it. */
static size_t crowd_allowance(const struct crowd *k)
{
    size_t least = SIZE_MAX;
    for (size_t r = 0; r < k->o->conns; r++) {
        const struct active *a = &k->actives[r];
        if (crowd_done(k, r))
            continue;
        size_t base = a->lines_got + a->lines_sent;
        least = base < least ? base : least;
    }
    if (least == SIZE_MAX || k->lines_sent - least >= k->o->window)
        return 0;
    return k->o->window - (k->lines_sent - least);
}

/* Sends the next piece of A's lines: random in size, so that lines are
 * split across writes, and several go in one. At most ALLOWANCE lines
 * end in it. Returns how many did. */
static size_t crowd_send(struct crowd *k, struct active *a, size_t index, size_t allowance)
{
    while (a->out_length - a->out_done < 256 && a->lines_queued < k->o->lines) {
        if (a->out_done > 0) {
            memmove(a->out, a->out + a->out_done, a->out_length - a->out_done);
            a->out_length -= a->out_done;
            a->out_done = 0;
        }
        a->out_length += crowd_line(index, a->lines_queued++, a->out + a->out_length);
        a->out[a->out_length++] = '\n';
    }
    size_t piece = 1 + next_random(k) % 160, ends = 0, i;
    for (i = a->out_done; i < a->out_length && i - a->out_done < piece; i++) {
        if (a->out[i] == '\n' && ++ends == allowance) {
            i++;
            break;
        }
    }
    piece = i - a->out_done;
    if (piece == 0)
        return 0;
    ssize_t n = send(a->c.fd, a->out + a->out_done, piece, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
        if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            a->c.ended = true;
        return 0;
    }
    size_t done = 0;
    for (ssize_t b = 0; b < n; b++)
        done += a->out[a->out_done + (size_t)b] == '\n';
    a->out_done += (size_t)n;
    a->lines_sent += done;
    return done;
}

/* Reads what has come for active client R and checks each line. */
static bool crowd_receive(struct crowd *k, size_t r)
{
    static char line[LINE_SIZE];
    struct active *a = &k->actives[r];
    if (!conn_receive(&a->c))
        return false;
    while (conn_take_line(&a->c, line) >= 0)
        crowd_check(k, r, line);
    return true;
}

/* One poll() over the active clients: read, and send within the window. */
static bool crowd_turn(struct crowd *k, struct pollfd *polls, long long deadline)
{
    size_t n = k->o->conns, allowance = crowd_allowance(k);
    for (size_t r = 0; r < n; r++) {
        struct active *a = &k->actives[r];
        bool more = a->lines_sent < k->o->lines;
        polls[r] = (struct pollfd){.fd = crowd_done(k, r) && !more ? -1 : a->c.fd,
                                   .events = POLLIN | (more && allowance > 0 ? POLLOUT : 0)};
    }
    int ready = poll(polls, n, ms_until(deadline));
    if (ready == -1 && errno != EINTR) {
        fail("poll");
        return false;
    }
    for (size_t r = 0; r < n && ready > 0; r++) {
        if (polls[r].revents & (POLLIN | POLLHUP | POLLERR) && !crowd_receive(k, r))
            return false;
        if ((polls[r].revents & POLLOUT) && allowance > 0) {
            size_t sent = crowd_send(k, &k->actives[r], r, allowance);
            k->lines_sent += sent;
            allowance -= sent;
        }
    }
    return true;
}

/* Reads slow client C until the server closes it, or DEADLINE. */
static bool crowd_drain(struct conn *c, long long deadline)
{
    char bytes[65536];
    for (;;) {
        ssize_t n = recv(c->fd, bytes, sizeof bytes, MSG_DONTWAIT);
        if (n == 0 || (n == -1 && errno == ECONNRESET))
            return true;
        if (n > 0 || errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, ms_until(deadline)) <= 0)
            return false;
    }
}

/* Opens the slow clients, then the active ones; each greeted. */
static bool crowd_open(struct crowd *k, long long deadline)
{
    static char why[LINE_SIZE];
    for (size_t i = 0; i < k->o->slow + k->o->conns; i++) {
        bool slow = i < k->o->slow;
        struct conn *c = slow ? &k->slow[i] : &k->actives[i - k->o->slow].c;
        if (!conn_open(c, k->o, slow) || !conn_greeted(c, deadline, why)) {
            if (c->fd != -1)
                fprintf(stderr, "chat-client: client %zu: %s\n", i, why);
            return false;
        }
        if (!slow) {
            long port = strtol(strrchr(c->name, ':') + 1, NULL, 10);
            k->by_port[port] = (int32_t)(i - k->o->slow);
        }
    }
    return true;
}

static int cmd_crowd(const struct options *o)
{
    size_t n = o->conns;
    struct crowd k = {.o = o, .random = 0x9e3779b97f4a7c15u};
    k.actives = calloc(n, sizeof *k.actives);
    k.slow = calloc(o->slow + 1, sizeof *k.slow);
    k.next_from = calloc(n * n, sizeof *k.next_from);
    k.by_port = malloc(65536 * sizeof *k.by_port);
    struct pollfd *polls = calloc(n, sizeof *polls);
    if (!k.actives || !k.slow || !k.next_from || !k.by_port || !polls) {
        fail("calloc");
        return 1;
    }
    for (size_t i = 0; i < 65536; i++)
        k.by_port[i] = -1;
    for (size_t i = 0; i < n; i++)
        k.actives[i].c.fd = -1;
    for (size_t i = 0; i < o->slow; i++)
        k.slow[i].fd = -1;

    long long deadline = now_ms() + o->timeout_ms;
    bool ok = crowd_open(&k, deadline);
    for (;;) {
        size_t finished = 0;
        for (size_t r = 0; r < n; r++)
            finished += crowd_done(&k, r);
        if (!ok || finished == n || ms_until(deadline) == 0)
            break;
        ok = crowd_turn(&k, polls, deadline);
    }
    size_t right = 0, wrong = 0, dropped = 0;
    for (size_t r = 0; r < n; r++) {
        right += !k.actives[r].wrong && k.actives[r].lines_got == (n - 1) * o->lines;
        wrong += k.actives[r].wrong;
    }
    long long end = now_ms() + (long long)o->end_ms;
    for (size_t i = 0; i < o->slow; i++)
        dropped += k.slow[i].fd != -1 && crowd_drain(&k.slow[i], end);
    printf("ok=%zu wrong=%zu missing=%zu dropped=%zu\n", right, wrong, n - right - wrong, dropped);
    for (size_t i = 0; i < n; i++)
        conn_close(&k.actives[i].c);
    for (size_t i = 0; i < o->slow; i++)
        conn_close(&k.slow[i]);
    free(k.actives), free(k.slow), free(k.next_from), free(k.by_port), free(polls);
    return right == n ? 0 : 1;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs("usage: chat-client [-H HOST] -p PORT [-t TIMEOUT_MS] script\n"
          "       chat-client [-H HOST] -p PORT [-t TIMEOUT_MS] crowd [-c CONNS] [-n LINES]"
          " [-s SLOW] [-w WINDOW] [-e END_MS]\n",
          out);
}

/* Options of OPTSTRING into *O. Returns false on a usage error. */
static bool parse_options(int argc, char **argv, const char *optstring, struct options *o)
{
    int opt;
    size_t value;
    optind = 0;
    opterr = 0;
    while ((opt = getopt(argc, argv, optstring)) != -1) {
        const char *arg = optarg;
        if (opt == 'H') {
            o->host = arg;
            continue;
        }
        if (opt == '?' || opt == ':' || !parse_size(arg, &value)) {
            fprintf(stderr, "chat-client: bad option -%c\n", opt == '?' ? optopt : opt);
            return false;
        }
        switch (opt) {
        case 'p': o->port = arg; break;
        case 't': o->timeout_ms = (long long)value; break;
        case 'c': o->conns = value; break;
        case 'n': o->lines = value; break;
        case 's': o->slow = value; break;
        case 'w': o->window = value; break;
        case 'e': o->end_ms = value; break;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    struct options o = {.host = "127.0.0.1", .timeout_ms = 10000, .conns = 100, .lines = 10,
                        .window = 256, .end_ms = 5000};
    if (!parse_options(argc, argv, "+H:p:t:", &o) || optind >= argc || o.port == NULL) {
        usage(stderr);
        return 2;
    }
    int first = optind;
    const char *command = argv[first];
    bool crowd = strcmp(command, "crowd") == 0;
    if ((!crowd && strcmp(command, "script") != 0) ||
        !parse_options(argc - first, argv + first, crowd ? "+H:p:t:c:n:s:w:e:" : "+H:p:t:", &o) ||
        first + optind != argc || o.conns < 2 || o.window == 0) {
        usage(stderr);
        return 2;
    }
    /* Room for every connection; and a server that vanishes is a failed
     * check, not a SIGPIPE death (MSG_NOSIGNAL covers sends; this covers
     * the rest). */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) == -1)
            fail("setrlimit");
    }
    signal(SIGPIPE, SIG_IGN);
    int status = crowd ? cmd_crowd(&o) : cmd_script(&o);
    fflush(stdout);
    return status;
}
