/*
 * backend_poll.c: the poll() backend, chapter 03's mechanism.
 *
 * poll() takes an array of (descriptor, events) entries, as many as we
 * like. The array stays dense -- every entry a watched descriptor -- so
 * that poll() never looks at a gap, and a second array, indexed by
 * descriptor, says where each one's entry is, so that a change finds it at
 * once. Removing an entry moves the last one into its place. POSIX.
 */
#define _POSIX_C_SOURCE 200809L

#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>

struct poll_state {
    struct pollfd *entries; /* what poll() is given: COUNT entries in use */
    int count;
    int capacity;
    /* position[fd] is the index of FD's entry plus one; 0: none. Plus one
     * so that calloc()'s zeroes mean "none". */
    int *position;
    int position_capacity;
};

static void *poll_open(void)
{
    return calloc(1, sizeof(struct poll_state));
}

static void poll_close(void *opaque)
{
    struct poll_state *state = opaque;
    free(state->entries);
    free(state->position);
    free(state);
}

static short poll_events(unsigned events)
{
    return (short)(((events & SELECTOR_READ) ? POLLIN : 0) |
                   ((events & SELECTOR_WRITE) ? POLLOUT : 0));
}

/* Room for one more entry, and a position for FD. */
static int make_room(struct poll_state *state, int fd)
{
    if (state->count == state->capacity) {
        if (state->capacity > INT_MAX / 2) {
            errno = ENOMEM;
            return -1;
        }
        int capacity = state->capacity > 0 ? state->capacity * 2 : 64;
        struct pollfd *entries = realloc(state->entries, (size_t)capacity * sizeof *entries);
        if (entries == NULL)
            return -1;
        state->entries = entries;
        state->capacity = capacity;
    }
    int *position = selector_grow_table(state->position, &state->position_capacity, fd,
                                        sizeof *position);
    if (position == NULL)
        return -1;
    state->position = position;
    return 0;
}

static int add_entry(struct poll_state *state, int fd, unsigned events)
{
    /* poll() would report a closed descriptor as POLLNVAL at every wait:
     * ask now, as epoll_ctl() would, so that the mistake shows at once. */
    if (fcntl(fd, F_GETFD) == -1)
        return -1;
    if (make_room(state, fd) == -1)
        return -1;
    state->entries[state->count] = (struct pollfd){.fd = fd, .events = poll_events(events)};
    state->position[fd] = ++state->count;
    return 0;
}

static void remove_entry(struct poll_state *state, int fd)
{
    int index = state->position[fd] - 1;
    struct pollfd last = state->entries[--state->count];
    state->entries[index] = last;
    state->position[last.fd] = index + 1;
    state->position[fd] = 0;
}

static int poll_watch(void *opaque, int fd, unsigned old_events, unsigned events)
{
    struct poll_state *state = opaque;
    if (old_events == 0)
        return add_entry(state, fd, events);
    if (events == 0)
        remove_entry(state, fd);
    else
        state->entries[state->position[fd] - 1].events = poll_events(events);
    return 0;
}

static int poll_wait(void *opaque, int timeout_ms, struct selector_ready *ready, int max)
{
    struct poll_state *state = opaque;
    int found = poll(state->entries, (nfds_t)state->count, timeout_ms < 0 ? -1 : timeout_ms);
    if (found <= 0)
        return found;
    /* poll() says how many entries have news, not which: look at each.
     * POLLHUP, POLLERR and POLLNVAL come whatever we asked for; they are
     * reported as both events, and the next recv() or send() says which. */
    int count = 0;
    for (int i = 0; i < state->count && count < max; i++) {
        short revents = state->entries[i].revents;
        if (revents == 0)
            continue;
        unsigned events = 0;
        if (revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
            events |= SELECTOR_READ;
        if (revents & (POLLOUT | POLLHUP | POLLERR | POLLNVAL))
            events |= SELECTOR_WRITE;
        ready[count++] = (struct selector_ready){state->entries[i].fd, events};
    }
    return count;
}

const struct selector_backend backend_poll = {
    .name = "poll",
    .open = poll_open,
    .close = poll_close,
    .watch = poll_watch,
    .wait = poll_wait,
};
