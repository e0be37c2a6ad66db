/*
 * backend_epoll.c: the epoll backend, chapter 04's mechanism. Linux only.
 *
 * The kernel keeps the watch list (epoll_ctl() changes it) and a ready
 * list, so a wait costs in the number of ready descriptors, not of watched
 * ones. Level-triggered, like the other backends: a descriptor is reported
 * for as long as it is ready.
 */
#define _POSIX_C_SOURCE 200809L

#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The most events one epoll_wait() returns. The kernel keeps the rest for
 * the next call, and hands out its ready list in turn, so a small array
 * is fair to every descriptor. */
enum { MAX_EVENTS = 512 };

struct epoll_state {
    int epoll_fd;
    struct epoll_event events[MAX_EVENTS];
};

static void *epoll_open(void)
{
    struct epoll_state *state = malloc(sizeof *state);
    if (state == NULL)
        return NULL;
    /* CLOEXEC: a program that runs another must not hand it our instance. */
    state->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (state->epoll_fd == -1) {
        free(state);
        return NULL;
    }
    return state;
}

static void epoll_close(void *opaque)
{
    struct epoll_state *state = opaque;
    close(state->epoll_fd);
    free(state);
}

static int epoll_watch(void *opaque, int fd, unsigned old_events, unsigned events)
{
    struct epoll_state *state = opaque;
    struct epoll_event event = {
        .events = ((events & SELECTOR_READ) ? EPOLLIN : 0) |
                  ((events & SELECTOR_WRITE) ? EPOLLOUT : 0),
        .data.fd = fd,
    };
    if (events == 0) {
        /* close() already took a closed descriptor out of the instance;
         * epoll_ctl() then says EBADF (or ENOENT, if the number was reused
         * by a descriptor we never added): nothing is left to undo. */
        if (epoll_ctl(state->epoll_fd, EPOLL_CTL_DEL, fd, &event) == -1 &&
            errno != EBADF && errno != ENOENT)
            return -1;
        return 0;
    }
    if (old_events != 0)
        return epoll_ctl(state->epoll_fd, EPOLL_CTL_MOD, fd, &event);
    if (epoll_ctl(state->epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0)
        return 0;
    /* EEXIST for a descriptor selector.c has no key for: it was closed
     * without unregister while a copy kept its file open (dup(), fork()),
     * so the DEL failed, and now FD names that same file again. The kernel
     * still watches it: take that watch over, as libuv does. */
    if (errno != EEXIST)
        return -1;
    return epoll_ctl(state->epoll_fd, EPOLL_CTL_MOD, fd, &event);
}

static int epoll_wait_ready(void *opaque, int timeout_ms, struct selector_ready *ready, int max)
{
    struct epoll_state *state = opaque;
    int found = epoll_wait(state->epoll_fd, state->events, max < MAX_EVENTS ? max : MAX_EVENTS,
                           timeout_ms < 0 ? -1 : timeout_ms);
    /* EPOLLHUP and EPOLLERR come whatever we asked for: reported as both
     * events, and the next recv() or send() says which. */
    for (int i = 0; i < found; i++) {
        uint32_t kernel = state->events[i].events;
        unsigned events = 0;
        if (kernel & (EPOLLIN | EPOLLHUP | EPOLLERR))
            events |= SELECTOR_READ;
        if (kernel & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            events |= SELECTOR_WRITE;
        ready[i] = (struct selector_ready){state->events[i].data.fd, events};
    }
    return found;
}

const struct selector_backend backend_epoll = {
    .name = "epoll",
    .open = epoll_open,
    .close = epoll_close,
    .watch = epoll_watch,
    .wait = epoll_wait_ready,
};
