/*
 * selector_backend.h: what a backend implements. Not for programs that use
 * the selector (they include selector.h); for selector.c and one file a
 * backend: backend_select.c, backend_poll.c, backend_epoll.c.
 *
 * A backend is four functions around one kernel mechanism. selector.c does
 * everything else -- the key table, every check of the arguments, the
 * batch and its same-batch rules -- so a backend only ever hears about a
 * change that is valid, and only when something really changes.
 *
 * To add one (say kqueue, for the BSDs and macOS): write backend_kqueue.c
 * defining a `const struct selector_backend backend_kqueue` like
 * the three here, and add it to the table at the top of selector.c.
 */
#ifndef SELECTOR_BACKEND_H
#define SELECTOR_BACKEND_H

#include <stddef.h>

/* One ready descriptor, as the kernel reported it: SELECTOR_READ and/or
 * SELECTOR_WRITE. A hang-up or an error is reported as both where the
 * kernel says "hang-up" or "error" (poll, epoll); select() says only
 * readable or writable, and the select backend passes that on. selector.c
 * keeps only what the key asked for. */
struct selector_ready {
    int fd;
    unsigned events;
};

struct selector_backend {
    const char *name;

    /* Returns the backend's own state, or NULL with errno set. */
    void *(*open)(void);

    /* Releases what open() made. */
    void (*close)(void *state);

    /* Makes the kernel watch FD for EVENTS instead of OLD_EVENTS. OLD_EVENTS
     * 0: FD is new. EVENTS 0: stop watching FD, which may have been closed
     * already (that is not an error). Returns 0, or -1 with errno; after a
     * failure the kernel still watches FD for OLD_EVENTS. */
    int (*watch)(void *state, int fd, unsigned old_events, unsigned events);

    /* Waits up to TIMEOUT_MS (-1: for ever) and writes at most MAX ready
     * descriptors into READY. MAX is at least the number of descriptors
     * watched, so a backend that scans can report all it finds. Returns how
     * many it wrote, or -1 with errno (EINTR included). */
    int (*wait)(void *state, int timeout_ms, struct selector_ready *ready, int max);
};

/* For selector.c and the backends alike: grows TABLE, an array of
 * *CAPACITY entries of ENTRY_SIZE bytes indexed by descriptor, so that
 * entry INDEX exists, and updates *CAPACITY. New entries are zero. Returns
 * the table, perhaps moved; or NULL (errno ENOMEM), leaving it as it was. */
void *selector_grow_table(void *table, int *capacity, int index, size_t entry_size);

extern const struct selector_backend backend_select;
extern const struct selector_backend backend_poll;
#ifdef HAVE_EPOLL
extern const struct selector_backend backend_epoll;
#endif

#endif
