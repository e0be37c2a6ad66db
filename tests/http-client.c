#define _GNU_SOURCE
/*
 * http-client.c - the raw HTTP client the http build's check drives a
 * learner's server with (exercises/http/check.bats).
 *
 *   http-client [-H HOST] -p PORT [-t TIMEOUT_MS] [-c CUTS | -e EVERY | -1 | -a]
 *               [-g GAP_MS] [-n COUNT] [-w] [-o FILE] [-s BYTES [-r]]  < REQUESTS
 *
 * Sends the bytes of stdin, exactly as they are, on one connection, and
 * reads the responses. It parses only what it must to find where each
 * response ends: the status line, Content-Length and Connection.
 *
 *   -c CUTS     send in pieces, cut at these offsets (comma-separated,
 *               increasing): -c 5 sends bytes 0-4, then the rest
 *   -e EVERY    send in pieces of EVERY bytes (-e 1: a byte at a time)
 *   -1          one request at a time: each only once the previous
 *               response is in (keep-alive, without pipelining)
 *   -a          every split: the exchange in one piece, then again, on a
 *               new connection each time, cut after byte 1, 2, ... in
 *               turn; prints the whole's output, then "splits=N differ=0",
 *               or the first split whose output differs, and its output
 *   -g GAP_MS   between two pieces, wait GAP_MS, reading what comes
 *               (default 10; pieces sent at once merge in the kernel)
 *   -n COUNT    the responses to expect (default: the requests in stdin,
 *               counted by their blank lines)
 *   -w          then wait until the server closes the connection
 *   -o FILE     write the responses' bodies, one after another, to FILE
 *   -s BYTES    stop reading once BYTES of responses are in, print
 *               "holding received=N", and keep the connection open until
 *               SIGTERM; with -r, reset it (RST) instead and exit
 *   -t          the deadline of the whole exchange (default 10000)
 *
 * Output, on stdout, a line per response, then a last line:
 *   response=I status=S length=L connection=close|keep-alive|- [allow=GET,HEAD]
 *   responses=N closed=0|1 timeout=0|1 sent=B extra=E malformed=0|1 bodies=H
 * closed: the server closed or reset the connection; sent: bytes of stdin
 * sent; extra: bytes after the last whole response; malformed: a response
 * that could not be parsed (the reason on stderr); bodies: a hash of the
 * bodies (FNV-1a, 64 bits), to compare two runs without -o. The length is the
 * response's Content-Length: for a HEAD request, no body is read.
 * Exit status: 0 if COUNT responses came before the deadline, none
 * malformed (and with -w, the server closed); 1 if not; 2 on a usage error.
 *
 * The responses of a HEAD request have no body: which requests are HEAD is
 * read from stdin, each request starting after the previous blank line.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PIECES = 1 << 16, MAX_REQUESTS = 1 << 16, RESPONSE_HEAD_MAX = 16384 };

struct options {
    const char *host, *port;
    int64_t timeout_ms, gap_ms;
    size_t cuts[MAX_PIECES];
    size_t ncuts;
    size_t every;
    bool one_at_a_time, wait_close, reset, every_split;
    long expect; /* -1: count the requests */
    const char *bodies;
    long long stop_after; /* -1: read everything */
};

/* What was sent: the input, its pieces, and each request's method. */
struct input {
    char *bytes;
    size_t length;
    size_t ends[MAX_PIECES + 1]; /* piece k is bytes [ends[k-1], ends[k]) */
    size_t npieces;
    bool is_head[MAX_REQUESTS]; /* request i was a HEAD */
    size_t nrequests;
};

/* A response being read. */
struct reader {
    char head[RESPONSE_HEAD_MAX];
    size_t head_length;
    bool in_body;
    long long body_left;
    size_t responses;
    long long received;
    size_t partial; /* bytes of the response not complete yet */
    uint64_t hash;  /* of the bodies: FNV-1a */
    bool malformed;
    FILE *bodies;
    FILE *out; /* where the lines go */
};

static void fail(const char *what)
{
    fprintf(stderr, "http-client: %s: %s\n", what, strerror(errno));
}

static int64_t now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void usage(void)
{
    fputs("usage: http-client [-H HOST] -p PORT [-t TIMEOUT_MS] [-c CUTS | -e EVERY | -1 | -a]\n"
          "                   [-g GAP_MS] [-n COUNT] [-w] [-o FILE] [-s BYTES [-r]] < REQUESTS\n",
          stderr);
    exit(2);
}

static long long number(const char *text, long long max)
{
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || value > max)
        usage();
    return value;
}

static void parse_cuts(char *text, struct options *o)
{
    for (char *cut = strtok(text, ","); cut != NULL; cut = strtok(NULL, ",")) {
        if (o->ncuts == MAX_PIECES)
            usage();
        o->cuts[o->ncuts] = (size_t)number(cut, LLONG_MAX);
        if (o->cuts[o->ncuts] == 0 || (o->ncuts > 0 && o->cuts[o->ncuts] <= o->cuts[o->ncuts - 1]))
            usage();
        o->ncuts++;
    }
}

static void parse_options(int argc, char **argv, struct options *o)
{
    int opt;
    while ((opt = getopt(argc, argv, "H:p:t:c:e:1ag:n:wo:s:r")) != -1) {
        switch (opt) {
        case 'H': o->host = optarg; break;
        case 'p': o->port = optarg; break;
        case 't': o->timeout_ms = number(optarg, INT_MAX); break;
        case 'c': parse_cuts(optarg, o); break;
        case 'e': o->every = (size_t)number(optarg, INT_MAX); break;
        case '1': o->one_at_a_time = true; break;
        case 'a': o->every_split = true; break;
        case 'g': o->gap_ms = number(optarg, INT_MAX); break;
        case 'n': o->expect = (long)number(optarg, MAX_REQUESTS); break;
        case 'w': o->wait_close = true; break;
        case 'o': o->bodies = optarg; break;
        case 's': o->stop_after = number(optarg, LLONG_MAX); break;
        case 'r': o->reset = true; break;
        default: usage();
        }
    }
    if (optind != argc || o->port == NULL)
        usage();
}

/* All of stdin. */
static void read_input(struct input *in)
{
    size_t size = 1 << 16;
    in->bytes = malloc(size);
    for (;;) {
        if (in->bytes == NULL) {
            fail("malloc");
            exit(1);
        }
        ssize_t n = read(STDIN_FILENO, in->bytes + in->length, size - in->length);
        if (n == 0)
            return;
        if (n < 0 && errno != EINTR) {
            fail("read stdin");
            exit(1);
        }
        in->length += n > 0 ? (size_t)n : 0;
        if (in->length == size)
            in->bytes = realloc(in->bytes, size *= 2);
    }
}

/* Where each request ends (after its blank line), and which are HEAD. */
static void find_requests(struct input *in, size_t *request_ends)
{
    size_t start = 0;
    for (size_t i = 3; i < in->length && in->nrequests < MAX_REQUESTS; i++) {
        if (memcmp(in->bytes + i - 3, "\r\n\r\n", 4) != 0)
            continue;
        in->is_head[in->nrequests] = strncmp(in->bytes + start, "HEAD ", 5) == 0;
        request_ends[in->nrequests++] = i + 1;
        start = i + 1;
    }
}

/* The pieces: cut where -c, -e or -1 say, the last one ending at the end. */
static void cut_pieces(struct input *in, const struct options *o, const size_t *request_ends)
{
    size_t cut = 0;
    for (size_t k = 0; in->npieces < MAX_PIECES; k++) {
        if (o->one_at_a_time)
            cut = k < in->nrequests ? request_ends[k] : in->length;
        else if (o->every > 0)
            cut += o->every;
        else
            cut = k < o->ncuts ? o->cuts[k] : in->length;
        if (cut >= in->length)
            break;
        in->ends[in->npieces++] = cut;
    }
    in->ends[in->npieces++] = in->length;
}

static int connect_to(const struct options *o)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *addresses;
    int rc = getaddrinfo(o->host, o->port, &hints, &addresses);
    if (rc != 0) {
        fprintf(stderr, "http-client: %s: %s\n", o->host, gai_strerror(rc));
        exit(1);
    }
    int fd = -1;
    for (struct addrinfo *a = addresses; a != NULL && fd == -1; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd == -1) {
            fail("socket");
            exit(1);
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS)
            break;
        fail("connect");
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd == -1)
        exit(1);
    return fd;
}

/* The value of header NAME in the response head, or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t length = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, length) == 0 && line[2 + length] == ':')
            return line + 3 + length + strspn(line + 3 + length, " \t");
    }
    return NULL;
}

static void malformed(struct reader *r, const char *why)
{
    fprintf(stderr, "http-client: response %zu: %s\n", r->responses + 1, why);
    r->malformed = true;
}

/* A whole response head is in r->head: print its line, and learn how
 * long its body is. */
static void parse_response_head(struct reader *r, const struct input *in)
{
    int status;
    char rest;
    if (sscanf(r->head, "HTTP/1.%*1[01] %3d%c", &status, &rest) != 2 || rest != ' ') {
        malformed(r, "no status line \"HTTP/1.x NNN reason\"");
        return;
    }
    const char *length = header(r->head, "Content-Length");
    const char *connection = header(r->head, "Connection");
    char *end;
    long long content_length = length == NULL ? -1 : strtoll(length, &end, 10);
    if (length == NULL || end == length || (*end != '\r' && *end != ' ') || content_length < 0) {
        malformed(r, "no valid Content-Length");
        return;
    }
    bool head_request = r->responses < in->nrequests && in->is_head[r->responses];
    r->body_left = head_request || status == 204 || status == 304 ? 0 : content_length;
    r->in_body = true;
    fprintf(r->out, "response=%zu status=%d length=%lld connection=%.*s", r->responses + 1,
            status, content_length, connection == NULL ? 1 : (int)strcspn(connection, "\r"),
            connection == NULL ? "-" : connection);
    const char *allow = header(r->head, "Allow");
    if (allow != NULL) { /* its methods, without the spaces */
        fputs(" allow=", r->out);
        for (; *allow != '\r'; allow++)
            if (*allow != ' ' && *allow != '\t')
                fputc(*allow, r->out);
    }
    fputc('\n', r->out);
    fflush(r->out);
}

/* A response is all in: the next begins. */
static void complete(struct reader *r)
{
    r->in_body = false;
    r->head_length = 0;
    r->partial = 0;
    r->responses++;
}

/* Feeds received bytes to the parser. */
static void take(struct reader *r, const struct input *in, const char *bytes, size_t n)
{
    r->received += (long long)n;
    while (n > 0 && !r->malformed) {
        if (r->in_body) {
            size_t part = (long long)n < r->body_left ? n : (size_t)r->body_left;
            if (r->bodies != NULL && part > 0 && fwrite(bytes, 1, part, r->bodies) != part) {
                fail("write bodies");
                exit(1);
            }
            for (size_t i = 0; i < part; i++)
                r->hash = (r->hash ^ (unsigned char)bytes[i]) * UINT64_C(0x100000001b3);
            r->body_left -= (long long)part;
            r->partial += part;
            bytes += part;
            n -= part;
            if (r->body_left == 0)
                complete(r);
            continue;
        }
        r->head[r->head_length++] = *bytes++;
        r->partial++;
        n--;
        if (r->head_length >= 4 && memcmp(r->head + r->head_length - 4, "\r\n\r\n", 4) == 0) {
            r->head[r->head_length] = '\0';
            parse_response_head(r, in);
            if (r->in_body && r->body_left == 0)
                complete(r);
        } else if (r->head_length == RESPONSE_HEAD_MAX - 1) {
            malformed(r, "a response head over 16 KiB, or no blank line");
        }
    }
}

/* Ends with an RST: a close with SO_LINGER set to 0. */
static void reset_and_exit(int fd, long long received)
{
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) == -1)
        fail("setsockopt SO_LINGER");
    close(fd);
    printf("reset received=%lld\n", received);
    exit(0);
}

/* -s: stop reading, say so, and hold the connection (or reset it). */
static void stop_reading(int fd, const struct options *o, long long received)
{
    if (o->reset)
        reset_and_exit(fd, received);
    printf("holding received=%lld\n", received);
    fflush(stdout);
    for (;;)
        pause(); /* SIGTERM's default action ends us */
}

/* One exchange, on a connection of its own: IN's pieces sent, the
 * responses read into R, described on R->out. Returns the exit status. */
static int exchange(const struct options *o, const struct input *in, size_t expect,
                    struct reader *r)
{
    int fd = connect_to(o);
    int64_t deadline = now_ms() + o->timeout_ms, next_piece_at = 0;
    size_t sent = 0, piece = 0;
    bool closed = false, timeout = false, can_send = true;
    char buffer[65536];
    while (!closed && (r->responses < expect || o->wait_close)) {
        /* Send while the piece lasts; between pieces, wait for the gap to
         * pass (and with -1, for the previous response). */
        bool may_send = can_send && sent < in->length && now_ms() >= next_piece_at &&
                        (!o->one_at_a_time || r->responses >= piece);
        int64_t wake = deadline;
        if (can_send && sent < in->length && !may_send && next_piece_at < wake &&
            next_piece_at > now_ms())
            wake = next_piece_at;
        int wait = (int)(wake - now_ms());
        if (now_ms() >= deadline) {
            timeout = true;
            break;
        }
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (may_send ? POLLOUT : 0))};
        if (poll(&p, 1, wait < 0 ? 0 : wait) == -1 && errno != EINTR) {
            fail("poll");
            exit(1);
        }
        if (p.revents & POLLOUT) {
            ssize_t n = send(fd, in->bytes + sent, in->ends[piece] - sent, MSG_NOSIGNAL);
            if (n == -1 && errno != EAGAIN && errno != EINTR) {
                can_send = false; /* closed or reset: read what is left */
                p.revents |= POLLIN;
            } else if (n > 0 && (sent += (size_t)n) == in->ends[piece]) {
                piece++;
                next_piece_at = now_ms() + o->gap_ms;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            size_t want = sizeof buffer;
            if (o->stop_after >= 0 && (long long)want > o->stop_after - r->received)
                want = (size_t)(o->stop_after - r->received);
            ssize_t n = want == 0 ? 0 : recv(fd, buffer, want, 0);
            if (want == 0)
                stop_reading(fd, o, r->received);
            if (n > 0)
                take(r, in, buffer, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                closed = true;
            if (r->malformed)
                break;
            if (o->stop_after >= 0 && r->received >= o->stop_after)
                stop_reading(fd, o, r->received);
        }
    }
    fprintf(r->out,
            "responses=%zu closed=%d timeout=%d sent=%zu extra=%zu malformed=%d bodies=%016llx\n",
            r->responses, closed, timeout, sent, r->partial, r->malformed,
            (unsigned long long)r->hash);
    fflush(r->out);
    close(fd);
    return r->responses == expect && !timeout && !r->malformed && (closed || !o->wait_close)
               ? 0
               : 1;
}

/* A fresh reader, writing its lines to OUT and the bodies to BODIES. */
static void reset_reader(struct reader *r, FILE *out, FILE *bodies)
{
    memset(r, 0, sizeof *r);
    r->hash = UINT64_C(0xcbf29ce484222325);
    r->out = out;
    r->bodies = bodies;
}

/* -a: the exchange in one piece, then cut after each byte in turn, each on
 * a new connection; the output of every split must be the whole's. One
 * process for them all: a hundred processes started one after another are
 * slow on a busy machine. Returns the exit status. */
static int every_split(const struct options *o, struct input *in, size_t expect,
                       struct reader *r, FILE *bodies)
{
    char *whole = NULL, *split = NULL;
    size_t whole_size = 0, split_size = 0;
    FILE *out = open_memstream(&whole, &whole_size);
    if (out == NULL) {
        fail("open_memstream");
        return 1;
    }
    reset_reader(r, out, bodies);
    in->ends[0] = in->length;
    in->npieces = 1;
    int status = exchange(o, in, expect, r);
    fclose(out);
    fputs(whole, stdout);
    for (size_t cut = 1; status == 0 && cut < in->length; cut++) {
        if ((out = open_memstream(&split, &split_size)) == NULL) {
            fail("open_memstream");
            return 1;
        }
        reset_reader(r, out, NULL);
        in->ends[0] = cut;
        in->ends[1] = in->length;
        in->npieces = 2;
        exchange(o, in, expect, r);
        fclose(out);
        if (strcmp(split, whole) != 0) {
            printf("split after byte %zu of %zu differs:\n%s", cut, in->length, split);
            status = 1;
        }
        free(split);
        split = NULL;
    }
    if (status == 0)
        printf("splits=%zu differ=0\n", in->length - 1);
    free(whole);
    return status;
}

int main(int argc, char **argv)
{
    static struct options o = {.host = "127.0.0.1", .timeout_ms = 10000, .gap_ms = 10,
                               .expect = -1, .stop_after = -1};
    static struct input in;
    static struct reader r;
    static size_t request_ends[MAX_REQUESTS];
    parse_options(argc, argv, &o);
    read_input(&in);
    find_requests(&in, request_ends);
    cut_pieces(&in, &o, request_ends);
    size_t expect = o.expect >= 0 ? (size_t)o.expect : in.nrequests;
    FILE *bodies = NULL;
    if (o.bodies != NULL && (bodies = fopen(o.bodies, "w")) == NULL) {
        fail(o.bodies);
        return 1;
    }
    int status;
    if (o.every_split) {
        status = every_split(&o, &in, expect, &r, bodies);
    } else {
        reset_reader(&r, stdout, bodies);
        status = exchange(&o, &in, expect, &r);
    }
    if (bodies != NULL && fclose(bodies) != 0)
        fail("close bodies");
    return status;
}
