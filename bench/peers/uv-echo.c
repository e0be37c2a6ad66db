/*
 * uv-echo: an echo server on libuv, a peer the benchmarks compare the
 * chapters with (bench/README.md). It keeps the chapters' command line and
 * ready line (-H, -p, -q, -v; "listening on ADDR:PORT"; exit 0 on SIGTERM)
 * and their rules: every byte echoed, half-close honoured, unsent output per
 * connection capped at OUTPUT_CAP (reading stops there until it drains).
 *
 * The fast path costs no allocation: every read lands in one buffer shared by
 * all connections (libuv calls on_alloc, reads and calls on_read for one
 * connection at a time, and on_read is done with the bytes when it returns),
 * and goes straight back with uv_try_write(). Only what the kernel does not
 * take at once is copied into a write request, and that is what the cap
 * counts. An idle connection costs its struct conn and libuv's handle.
 */
#define _GNU_SOURCE

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "peer.h"

enum {
    BUFFER_SIZE = 64 * 1024, /* most one read takes, like the chapters */
    OUTPUT_CAP = 64 * 1024,  /* most unsent output a connection may have */
};

struct conn {
    uv_tcp_t tcp; /* first, so a uv_handle_t * is a struct conn * */
    size_t queued; /* bytes in write requests not yet written */
    bool reading, eof, closing;
    char peer[64];
};

struct write_req {
    uv_write_t req;
    size_t len;
    char data[]; /* the bytes to write */
};

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_signal_t sigint_watcher, sigterm_watcher;
static int verbosity = 1; /* 0 quiet, 1 normal, 2 verbose (-q, -v) */
static char buffer[BUFFER_SIZE];



static void on_closed(uv_handle_t *handle)
{
    struct conn *c = (struct conn *)handle;
    if (verbosity >= 1) {
        printf("closed connection from %s\n", c->peer);
        fflush(stdout);
    }
    free(c);
}

static void close_conn(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)handle;
    *buf = uv_buf_init(buffer, sizeof buffer);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_conn((struct conn *)req->handle);
    free(req);
}

/* After the client's EOF and once every byte has gone: close. uv_shutdown()
 * waits for the queued writes itself. */
static void finish(struct conn *c)
{
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        close_conn(c);
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct conn *c = (struct conn *)req->handle;
    c->queued -= w->len;
    free(w);
    if (status < 0) {
        close_conn(c);
        return;
    }
    /* Below the cap again: read again (backpressure released). */
    if (!c->reading && !c->eof && !c->closing && c->queued < OUTPUT_CAP) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)stream;
    if (nread == UV_EOF) {
        c->eof = true;
        c->reading = false;
        uv_read_stop(stream);
        finish(c);
        return;
    }
    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (nread == 0)
        return;
    if (verbosity >= 2) {
        printf("echoed %zd bytes to %s\n", nread, c->peer);
        fflush(stdout);
    }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int sent = uv_try_write(stream, &out, 1); /* UV_EAGAIN while writes are queued */
    if (sent == nread)
        return;
    if (sent < 0 && sent != UV_EAGAIN) {
        close_conn(c);
        return;
    }
    size_t done = sent > 0 ? (size_t)sent : 0, left = (size_t)nread - done;
    struct write_req *w = malloc(sizeof *w + left);
    if (!w) {
        close_conn(c);
        return;
    }
    memcpy(w->data, buf->base + done, left);
    w->len = left;
    uv_buf_t rest = uv_buf_init(w->data, (unsigned)left);
    if (uv_write(&w->req, stream, &rest, 1, on_written) != 0) {
        free(w);
        close_conn(c);
        return;
    }
    c->queued += left;
    if (c->queued >= OUTPUT_CAP) {
        c->reading = false;
        uv_read_stop(stream);
    }
}

static void free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return; /* libuv keeps a spare descriptor for EMFILE and recovers */
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, free_handle);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        peer_format_address((struct sockaddr *)&ss, c->peer, sizeof c->peer);
    if (verbosity >= 1) {
        printf("accepted connection from %s\n", c->peer);
        fflush(stdout);
    }
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_any(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (uv_is_closing(handle))
        return;
    if (handle->type == UV_TCP && handle != (uv_handle_t *)&listener)
        close_conn((struct conn *)handle);
    else
        uv_close(handle, NULL);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    (void)handle;
    (void)signum;
    printf("shutting down\n");
    fflush(stdout);
    uv_walk(loop, close_any, NULL); /* the loop ends when every handle is closed */
}

int main(int argc, char **argv)
{
    struct peer_options options = peer_start(argc, argv, "uv-echo");
    const char *host = options.host, *port = options.port;
    verbosity = options.verbosity;

    loop = uv_default_loop();
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(loop, &gai, NULL, host, port, &hints);
    if (rc != 0) {
        fprintf(stderr, "uv-echo: %s: %s\n", host, uv_strerror(rc));
        return 1;
    }
    uv_tcp_init(loop, &listener);
    rc = uv_tcp_bind(&listener, gai.addrinfo->ai_addr, 0);
    uv_freeaddrinfo(gai.addrinfo);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&listener, SOMAXCONN, on_connection);
    if (rc != 0) {
        fprintf(stderr, "uv-echo: listen on %s:%s: %s\n", host, port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char addr[80];
    uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len);
    peer_format_address((struct sockaddr *)&ss, addr, sizeof addr);

    uv_signal_init(loop, &sigint_watcher);
    uv_signal_start(&sigint_watcher, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm_watcher);
    uv_signal_start(&sigterm_watcher, on_signal, SIGTERM);

    printf("listening on %s\n", addr);
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
