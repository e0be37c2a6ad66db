/*
 * event-echo: an echo server on libevent, a peer the benchmarks compare the
 * chapters with (bench/README.md). It keeps the chapters' command line and
 * ready line (-H, -p, -q, -v; "listening on ADDR:PORT"; exit 0 on SIGTERM)
 * and their rules: every byte echoed, half-close honoured, unsent output per
 * connection capped at OUTPUT_CAP (reading stops there until it drains).
 *
 * It uses libevent's event loop and an evbuffer for the output, not
 * bufferevents: in libevent 2.1 a bufferevent never reads more than 4 KiB at
 * a time (EVBUFFER_MAX_READ) and re-arms its write event with epoll_ctl after
 * every write, which would make libevent look slower than it need be. Here a
 * read takes up to 64 KiB and goes straight back with send(); only what the
 * kernel does not take waits in the evbuffer, and only then is the write
 * event armed. That is the fast way to use libevent, so the comparison is fair.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <arpa/inet.h>
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
#include <unistd.h>

#include "peer.h"

enum {
    BUFFER_SIZE = 64 * 1024, /* most one read moves, like the chapters */
    OUTPUT_CAP = 64 * 1024,  /* most unsent output a connection may have */
};

struct conn {
    evutil_socket_t fd;
    struct event *read_event, *write_event;
    struct evbuffer *out;     /* received, not yet sent back */
    struct conn *prev, *next; /* every open connection, to close them at exit */
    bool reading, writing, eof;
    char peer[64];
};

static struct event_base *base;
static struct evconnlistener *listener;
static struct event *resume_timer;
static struct conn *conns;
static int verbosity = 1; /* 0 quiet, 1 normal, 2 verbose (-q, -v) */
static char buffer[BUFFER_SIZE];



static void close_conn(struct conn *c)
{
    if (verbosity >= 1) {
        printf("closed connection from %s\n", c->peer);
        fflush(stdout);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->read_event);
    event_free(c->write_event);
    evbuffer_free(c->out);
    evutil_closesocket(c->fd);
    free(c);
}

/* Arms or disarms the two events to match the state: read unless at the cap
 * or after EOF, write while output waits. */
static void update_events(struct conn *c)
{
    size_t queued = evbuffer_get_length(c->out);
    bool want_read = !c->eof && queued < OUTPUT_CAP, want_write = queued > 0;
    if (want_read != c->reading) {
        c->reading = want_read;
        if (want_read)
            event_add(c->read_event, NULL);
        else
            event_del(c->read_event);
    }
    if (want_write != c->writing) {
        c->writing = want_write;
        if (want_write)
            event_add(c->write_event, NULL);
        else
            event_del(c->write_event);
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    int n = evbuffer_write(c->out, c->fd);
    if (n == -1 && errno != EAGAIN && errno != EINTR) {
        close_conn(c);
        return;
    }
    if (c->eof && evbuffer_get_length(c->out) == 0) {
        close_conn(c); /* everything echoed after the client's EOF */
        return;
    }
    update_events(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    ssize_t n = recv(c->fd, buffer, sizeof buffer, 0);
    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR)
            close_conn(c);
        return;
    }
    if (n == 0) {
        c->eof = true;
        if (evbuffer_get_length(c->out) == 0)
            close_conn(c);
        else
            update_events(c);
        return;
    }
    if (verbosity >= 2) {
        printf("echoed %zd bytes to %s\n", n, c->peer);
        fflush(stdout);
    }
    ssize_t sent = 0;
    if (evbuffer_get_length(c->out) == 0) { /* nothing queued: send at once */
        sent = send(c->fd, buffer, (size_t)n, MSG_NOSIGNAL);
        if (sent == -1) {
            if (errno != EAGAIN && errno != EINTR) {
                close_conn(c);
                return;
            }
            sent = 0;
        }
    }
    if (sent < n) {
        evbuffer_add(c->out, buffer + sent, (size_t)(n - sent));
        update_events(c);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)salen;
    (void)arg;
    struct conn *c = calloc(1, sizeof *c);
    if (c) {
        c->fd = fd;
        c->out = evbuffer_new();
        c->read_event = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, c);
        c->write_event = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    }
    if (!c || !c->out || !c->read_event || !c->write_event) {
        if (c) {
            if (c->out)
                evbuffer_free(c->out);
            if (c->read_event)
                event_free(c->read_event);
            if (c->write_event)
                event_free(c->write_event);
            free(c);
        }
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    peer_format_address(sa, c->peer, sizeof c->peer);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    update_events(c);
    if (verbosity >= 1) {
        printf("accepted connection from %s\n", c->peer);
        fflush(stdout);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    evconnlistener_enable(listener);
}

/* Out of descriptors (EMFILE, ENFILE): stop accepting for 100 ms instead of
 * spinning on a listening socket that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    fprintf(stderr, "event-echo: accept: %s\n", evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    struct timeval pause = {0, 100 * 1000};
    evtimer_add(resume_timer, &pause);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    struct peer_options options = peer_start(argc, argv, "event-echo");
    const char *host = options.host, *port = options.port;
    verbosity = options.verbosity;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "event-echo: %s: %s\n", host, gai_strerror(rc));
        return 1;
    }
    base = event_base_new();
    if (!base) {
        fprintf(stderr, "event-echo: event_base_new failed\n");
        return 1;
    }
    listener = evconnlistener_new_bind(base, on_accept, NULL,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, SOMAXCONN,
                                       res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!listener) {
        fprintf(stderr, "event-echo: listen on %s:%s: %s\n", host, port, strerror(errno));
        return 1;
    }
    evconnlistener_set_error_cb(listener, on_accept_error);
    resume_timer = evtimer_new(base, on_resume, NULL);

    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[80];
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&ss, &len);
    peer_format_address((struct sockaddr *)&ss, addr, sizeof addr);

    struct event *sigint_event = evsignal_new(base, SIGINT, on_signal, NULL);
    struct event *sigterm_event = evsignal_new(base, SIGTERM, on_signal, NULL);
    evsignal_add(sigint_event, NULL);
    evsignal_add(sigterm_event, NULL);

    printf("listening on %s\n", addr);
    fflush(stdout);
    event_base_dispatch(base);

    printf("shutting down\n");
    fflush(stdout);
    while (conns)
        close_conn(conns);
    evconnlistener_free(listener);
    event_free(resume_timer);
    event_free(sigint_event);
    event_free(sigterm_event);
    event_base_free(base);
    return 0;
}
