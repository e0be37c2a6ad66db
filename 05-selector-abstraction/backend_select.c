/*
 * backend_select.c: the select() backend, chapter 02's mechanism.
 *
 * It keeps two fd_sets, the descriptors waiting to read and to write, and
 * hands select() copies of them on every wait (select() overwrites what it
 * is given with what is ready). An fd_set is a bitmap of FD_SETSIZE bits:
 * a descriptor of FD_SETSIZE or more does not fit, and writing it into one
 * writes past its end, so this backend refuses such a descriptor.
 * POSIX: it builds on every Unix.
 */
#define _POSIX_C_SOURCE 200809L

#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/select.h>

struct select_state {
    fd_set reading;
    fd_set writing;
    int highest_fd; /* the highest descriptor in either set, or -1 */
};

static void *select_open(void)
{
    struct select_state *state = malloc(sizeof *state);
    if (state == NULL)
        return NULL;
    FD_ZERO(&state->reading);
    FD_ZERO(&state->writing);
    state->highest_fd = -1;
    return state;
}

static void select_close(void *state)
{
    free(state);
}

static void put_in_set(fd_set *set, int fd, bool wanted)
{
    if (wanted)
        FD_SET(fd, set);
    else
        FD_CLR(fd, set);
}

static int select_watch(void *opaque, int fd, unsigned old_events, unsigned events)
{
    struct select_state *state = opaque;
    if (old_events == 0) {
        if (fd >= FD_SETSIZE) {
            errno = ERANGE;
            return -1;
        }
        /* select() only finds out about a closed descriptor when it waits
         * (EBADF, for every descriptor at once): ask now, as epoll_ctl()
         * would, so that the mistake is the caller's and shows at once. */
        if (fcntl(fd, F_GETFD) == -1)
            return -1;
    }
    put_in_set(&state->reading, fd, events & SELECTOR_READ);
    put_in_set(&state->writing, fd, events & SELECTOR_WRITE);
    if (events != 0 && fd > state->highest_fd)
        state->highest_fd = fd;
    /* select() looks at every descriptor up to the highest: keep it low. */
    while (state->highest_fd >= 0 && !FD_ISSET(state->highest_fd, &state->reading) &&
           !FD_ISSET(state->highest_fd, &state->writing))
        state->highest_fd--;
    return 0;
}

static int select_wait(void *opaque, int timeout_ms, struct selector_ready *ready, int max)
{
    struct select_state *state = opaque;
    fd_set readable = state->reading;
    fd_set writable = state->writing;
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int found = select(state->highest_fd + 1, &readable, &writable, NULL,
                       timeout_ms < 0 ? NULL : &timeout);
    if (found <= 0)
        return found;
    /* select() says how many bits it set, not where: look at each. A
     * descriptor at end-of-file, reset or in error is readable; a socket
     * reset or in error is writable too, if asked, but the read end of a
     * pipe whose writer has gone is not (selector.h says so). The next
     * recv() or send() says which. */
    int count = 0;
    for (int fd = 0; fd <= state->highest_fd && count < max; fd++) {
        unsigned events = 0;
        if (FD_ISSET(fd, &readable))
            events |= SELECTOR_READ;
        if (FD_ISSET(fd, &writable))
            events |= SELECTOR_WRITE;
        if (events != 0)
            ready[count++] = (struct selector_ready){fd, events};
    }
    return count;
}

const struct selector_backend backend_select = {
    .name = "select",
    .open = select_open,
    .close = select_close,
    .watch = select_watch,
    .wait = select_wait,
};
