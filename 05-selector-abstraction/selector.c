/*
 * selector.c: the part of the selector that is the same for every backend.
 *
 * It keeps the keys, checks every argument before anything changes, and
 * hands the backend only changes that are valid and real. It also owns the
 * batch -- the ready descriptors of the last selector_select() -- and hands
 * it out one pair at a time, so that what a callback does to the table
 * (unregister a descriptor, reuse its number, turn an event off) is seen by
 * every pair that comes after it in the same batch.
 */
#define _POSIX_C_SOURCE 200809L

#include "selector.h"
#include "selector_backend.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Best first: the default is the first. epoll is Linux's; the Makefile
 * defines HAVE_EPOLL where it is there. */
static const struct selector_backend *const backends[] = {
#ifdef HAVE_EPOLL
    &backend_epoll,
#endif
    &backend_poll,
    &backend_select,
};
enum { BACKEND_COUNT = sizeof backends / sizeof backends[0] };

/* One descriptor's entry in the key table. Its number is its index, so
 * the key's fd is not stored: 16 bytes, like a struct selector_key. */
struct slot {
    unsigned events; /* the key's; 0 marks a free entry (a key never has 0) */
    /* Where the descriptor's event waits in the batch, plus one (0: not
     * in a batch yet). Set by selector_select(); it may be left over from
     * an older batch, so it counts only where that entry of the batch is
     * the descriptor's. It lets unregister find the event at once. */
    int pending;
    void *data;
};

struct selector {
    const struct selector_backend *backend;
    void *state; /* the backend's, opaque here */
    /* The keys, indexed by descriptor, as in the chapters before: a
     * descriptor is a small number, so an array beats a hash map. Grows as
     * higher descriptors are registered. */
    struct slot *keys;
    int key_capacity;
    int registered; /* how many entries are in use */
    /* The batch: what the backend's last wait found, and how far
     * selector_next() has got through it. */
    struct selector_ready *batch;
    int batch_capacity;
    int batch_length;
    int batch_next;
};

static const unsigned VALID_EVENTS = SELECTOR_READ | SELECTOR_WRITE;

const char *selector_backends(int index)
{
    return index >= 0 && index < BACKEND_COUNT ? backends[index]->name : NULL;
}

static const struct selector_backend *find_backend(const char *name)
{
    if (name == NULL)
        return backends[0];
    for (int i = 0; i < BACKEND_COUNT; i++) {
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    }
    return NULL;
}

struct selector *selector_open(const char *name)
{
    const struct selector_backend *backend = find_backend(name);
    if (backend == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct selector *selector = calloc(1, sizeof *selector);
    if (selector == NULL)
        return NULL;
    selector->backend = backend;
    selector->state = backend->open();
    if (selector->state == NULL) {
        free(selector);
        return NULL;
    }
    return selector;
}

const char *selector_name(const struct selector *selector)
{
    return selector->backend->name;
}

void selector_close(struct selector *selector)
{
    if (selector == NULL)
        return;
    selector->backend->close(selector->state);
    free(selector->keys);
    free(selector->batch);
    free(selector);
}

/* ---- The key table -------------------------------------------------------- */

/* Whether FD has a key. */
static bool has_key(const struct selector *selector, int fd)
{
    return fd < selector->key_capacity && selector->keys[fd].events != 0;
}

/* The entry of FD's key, or NULL (errno set) if FD has none. */
static struct slot *find_key(const struct selector *selector, int fd)
{
    if (fd < 0) {
        errno = EBADF;
        return NULL;
    }
    if (!has_key(selector, fd)) {
        errno = ENOENT;
        return NULL;
    }
    return &selector->keys[fd];
}

static bool events_are_valid(unsigned events)
{
    if (events == 0 || (events & ~VALID_EVENTS) != 0) {
        errno = EINVAL;
        return false;
    }
    return true;
}

void *selector_grow_table(void *table, int *capacity, int index, size_t entry_size)
{
    if (index < *capacity)
        return table;
    int grown_capacity = *capacity > 0 ? *capacity : 64;
    while (grown_capacity <= index && grown_capacity <= INT_MAX / 2)
        grown_capacity *= 2;
    if (grown_capacity <= index) {
        errno = ENOMEM; /* no table indexed by int holds entry INT_MAX */
        return NULL;
    }
    /* calloc(), not realloc() and memset(): a large block comes from the
     * kernel already zeroed, and its pages cost no memory until an entry
     * on them is used. A table sized for 16,384 descriptors then costs
     * what the descriptors in use need, not all of it. */
    char *grown = calloc((size_t)grown_capacity, entry_size);
    if (grown == NULL)
        return NULL;
    if (*capacity > 0)
        memcpy(grown, table, (size_t)*capacity * entry_size);
    free(table);
    *capacity = grown_capacity;
    return grown;
}

int selector_register(struct selector *selector, int fd, unsigned events, void *data)
{
    if (!events_are_valid(events))
        return -1;
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (has_key(selector, fd)) {
        errno = EEXIST;
        return -1;
    }
    /* The kernel first: if it refuses (the descriptor is not open, or not
     * one it can watch), nothing has changed. */
    if (selector->backend->watch(selector->state, fd, 0, events) == -1)
        return -1;
    struct slot *keys = selector_grow_table(selector->keys, &selector->key_capacity, fd,
                                             sizeof *keys);
    if (keys == NULL) {
        int saved_errno = errno;
        (void)selector->backend->watch(selector->state, fd, events, 0); /* no half-made key */
        errno = saved_errno;
        return -1;
    }
    selector->keys = keys;
    selector->keys[fd].events = events;
    selector->keys[fd].data = data;
    selector->registered++;
    return 0;
}

int selector_modify(struct selector *selector, int fd, unsigned events, void *data)
{
    if (!events_are_valid(events))
        return -1;
    struct slot *key = find_key(selector, fd);
    if (key == NULL)
        return -1;
    /* A server changes a key's data (say, its callback) far more often than
     * what it waits for: only a real change costs a system call. */
    if (events != key->events &&
        selector->backend->watch(selector->state, fd, key->events, events) == -1)
        return -1;
    key->events = events;
    key->data = data;
    return 0;
}

/* Drops what the current batch still holds for FD. Without this, a callback
 * that unregisters and closes FD, and then accepts a client that gets the
 * same number, would have the old descriptor's event delivered to the new
 * client's key. libuv does the same. The key's entry says where the event
 * is (a descriptor comes at most once a batch), so this costs the same
 * however long the batch: thousands of closes in one batch stay linear. */
static void forget_pending_events(struct selector *selector, int fd)
{
    int index = selector->keys[fd].pending - 1;
    /* A place left over from an older batch may hold another descriptor's
     * event now: drop only FD's own. */
    if (index >= selector->batch_next && index < selector->batch_length &&
        selector->batch[index].fd == fd)
        selector->batch[index].events = 0;
}

int selector_unregister(struct selector *selector, int fd)
{
    struct slot *key = find_key(selector, fd);
    if (key == NULL)
        return -1;
    /* The only error the kernel can give here is that FD was closed
     * already, which took it out of the kernel's watch list (unless, on
     * epoll, a copy keeps its file open: see selector.h). Like Python's
     * selectors, the key goes whatever the backend says. */
    (void)selector->backend->watch(selector->state, fd, key->events, 0);
    key->events = 0;
    key->data = NULL;
    selector->registered--;
    forget_pending_events(selector, fd);
    return 0;
}

int selector_get_key(const struct selector *selector, int fd, struct selector_key *key)
{
    const struct slot *found = find_key(selector, fd);
    if (found == NULL)
        return -1;
    *key = (struct selector_key){fd, found->events, found->data};
    return 0;
}

/* ---- Waiting -------------------------------------------------------------- */

/* The batch has room for every registered descriptor, so that a backend
 * that scans (select, poll) reports everything ready at once, and one busy
 * descriptor early in its scan cannot keep later ones waiting. */
static int make_batch_room(struct selector *selector)
{
    int wanted = selector->registered > 0 ? selector->registered : 1;
    if (wanted <= selector->batch_capacity)
        return 0;
    int capacity = selector->batch_capacity > 0 ? selector->batch_capacity : 64;
    while (capacity < wanted)
        capacity = capacity <= INT_MAX / 2 ? capacity * 2 : INT_MAX;
    struct selector_ready *batch = realloc(selector->batch, (size_t)capacity * sizeof *batch);
    if (batch == NULL)
        return -1;
    selector->batch = batch;
    selector->batch_capacity = capacity;
    return 0;
}

/* Tells each key where its event is in the new batch, for unregister. An
 * event of a descriptor that has no key is dropped now: it can only be
 * epoll reporting a file closed without unregister that a copy keeps
 * alive (see selector.h), and a key registered on its number later in the
 * batch must not get it. */
static void note_pending_events(struct selector *selector)
{
    for (int i = 0; i < selector->batch_length; i++) {
        struct selector_ready *ready = &selector->batch[i];
        if (has_key(selector, ready->fd))
            selector->keys[ready->fd].pending = i + 1;
        else
            ready->events = 0;
    }
}

/* The backend's wait, into a new batch. */
static int wait_for_batch(struct selector *selector, int timeout_ms)
{
    selector->batch_length = selector->batch_next = 0;
    if (make_batch_room(selector) == -1)
        return -1;
    int ready = selector->backend->wait(selector->state, timeout_ms, selector->batch,
                                        selector->batch_capacity);
    if (ready == -1)
        /* A signal cut the wait short: nothing is ready, which is no error.
         * The caller sees 0 and decides whether to wait again. */
        return errno == EINTR ? 0 : -1;
    selector->batch_length = ready;
    return ready;
}

int selector_select(struct selector *selector, int timeout_ms)
{
    int ready = wait_for_batch(selector, timeout_ms);
    note_pending_events(selector);
    return ready;
}

bool selector_next(struct selector *selector, struct selector_event *event)
{
    while (selector->batch_next < selector->batch_length) {
        struct selector_ready ready = selector->batch[selector->batch_next++];
        if (ready.events == 0)
            continue; /* forgotten at unregister, or never ours */
        const struct slot *key = &selector->keys[ready.fd];
        /* Only what the key asks for now: an earlier callback may have
         * modified it, and a hang-up comes as both events. */
        unsigned events = ready.events & key->events;
        if (events == 0)
            continue;
        event->key = (struct selector_key){ready.fd, key->events, key->data};
        event->events = events;
        return true;
    }
    return false;
}
