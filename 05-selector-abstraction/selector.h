/*
 * selector.h: Python's `selectors` module, in C.
 *
 * One API over select(), poll() and epoll: register a descriptor with the
 * events it is waiting for and a pointer of your own (the key's data), wait,
 * and get back (key, events) pairs for the descriptors that are ready. The
 * program above it never knows which mechanism runs underneath.
 *
 *   Python                               C
 *   sel = selectors.DefaultSelector()    sel = selector_open(NULL)
 *   sel.register(fd, EVENT_READ, data)   selector_register(sel, fd, SELECTOR_READ, data)
 *   sel.modify(fd, events, data)         selector_modify(sel, fd, events, data)
 *   sel.unregister(fd)                   selector_unregister(sel, fd)
 *   sel.get_key(fd)                      selector_get_key(sel, fd, &key)
 *   for key, events in sel.select(t):    selector_select(sel, t_ms);
 *                                        while (selector_next(sel, &event)) ...
 *   sel.close()                          selector_close(sel)
 *
 * Every function that can fail returns -1 (or NULL) and sets errno, and
 * leaves the keys as they were: a failed call never leaves half a key.
 * The selector works on descriptor numbers; it never opens, closes or reads
 * a descriptor itself. One thread at a time.
 *
 * Which backends a program gets depends on how the library is compiled:
 * epoll only with -DHAVE_EPOLL (Linux); without it the default is poll.
 * The chapter's README says which files and flags to build it with.
 */
#ifndef SELECTOR_H
#define SELECTOR_H

#include <stdbool.h>

/* What a descriptor can be waited for. A hang-up or an error is reported
 * as one of these, and the recv() or send() that follows finds out what
 * happened. A key that asks for READ always hears of it, as READ. A key
 * that asks for WRITE alone hears of it as WRITE on poll and epoll, which
 * report a hang-up whatever was asked; on select only if the kernel counts
 * the descriptor writable or in error too, as Linux does for a socket
 * whose peer has gone and for a pipe whose reader has gone, but not for
 * the read end of a pipe whose writer has gone (Linux's select() counts
 * that hang-up as readable only). Ask for READ to hear of every hang-up. */
enum {
    SELECTOR_READ = 1 << 0,  /* bytes to read, end-of-file, a client to accept */
    SELECTOR_WRITE = 1 << 1, /* room to write */
};

/* A registered descriptor: what it waits for, and a pointer of yours
 * (a callback, a connection: whatever the program needs when it is ready).
 * Functions hand out copies; the selector keeps the original. */
struct selector_key {
    int fd;
    unsigned events; /* SELECTOR_READ, SELECTOR_WRITE or both, never 0 */
    void *data;
};

/* One ready descriptor: its key, and which of the key's events happened. */
struct selector_event {
    struct selector_key key;
    unsigned events; /* never 0, never more than key.events */
};

struct selector; /* opaque: its table and the backend's state */

/* The backends compiled in, best first: selector_backends(0) is the
 * default. Returns NULL past the last. */
const char *selector_backends(int index);

/* Opens a selector on the backend called NAME ("epoll", "poll",
 * "select"), or on the default when NAME is NULL. Returns NULL with errno
 * EINVAL for an unknown name, or the backend's own errno (EMFILE, ENOMEM,
 * ...) if it cannot start. */
struct selector *selector_open(const char *name);

/* The name of the backend this selector runs on. */
const char *selector_name(const struct selector *selector);

/* Starts watching FD for EVENTS, with DATA in its key. Fails with:
 *   EINVAL  EVENTS is 0 or has bits other than SELECTOR_READ|SELECTOR_WRITE
 *   EBADF   FD is negative, or the kernel says it is not open
 *   EEXIST  FD has a key already (only then: on epoll a watch left over
 *           from a close without unregister is taken over, not refused)
 *   ERANGE  FD is beyond what the backend can watch (select: FD_SETSIZE;
 *           checked before whether FD is open)
 *   ENOMEM, or whatever else the kernel's answer was (epoll_ctl(2)).
 * On failure FD is not registered. */
int selector_register(struct selector *selector, int fd, unsigned events, void *data);

/* Changes what FD waits for, and its data. Makes no system call when
 * EVENTS are the ones it has (so changing the data alone is free). Fails
 * with EINVAL (EVENTS as above), EBADF (FD negative), ENOENT (FD has no
 * key), or the kernel's errno; on failure the key is as it was.
 *
 * After a close() without unregister the answer is the backend's: select
 * and poll ask the kernel nothing and succeed (the key then watches
 * whatever has FD's number now); epoll fails with the kernel's EBADF (the
 * number is free) or ENOENT (a new descriptor has it) while the key stays
 * (selector_get_key() finds it). Either way: selector_unregister(FD),
 * which always removes the key, then register the new descriptor anew. */
int selector_modify(struct selector *selector, int fd, unsigned events, void *data);

/* Stops watching FD. Call it before close(FD): the number may come back
 * at the next accept() or open(), for a different socket. Still works if
 * FD was closed already. An event of FD that is still waiting in the
 * current batch is dropped, so it can never reach a new key that reuses
 * the number. Fails only with EBADF (FD negative) or ENOENT (FD not
 * registered).
 *
 * epoll, unlike select() and poll(), watches the open file, not the number:
 * if FD was closed while a copy of it lives on (dup(), a child after
 * fork()), the kernel keeps reporting that file under FD's number, and
 * only an unregister before the close can stop it. Its events are dropped
 * while FD has no key; once a new descriptor is registered on the number,
 * they reach the new key, beside the new descriptor's own (FD may then
 * come twice a batch). */
int selector_unregister(struct selector *selector, int fd);

/* Copies FD's key into *KEY. Fails with EBADF or ENOENT, as above. */
int selector_get_key(const struct selector *selector, int fd, struct selector_key *key);

/* Waits until at least one registered descriptor is ready, or until
 * TIMEOUT_MS milliseconds have passed: -1 (any negative) waits for ever,
 * 0 not at all.
 * Returns how many descriptors the backend found ready (selector_next()
 * hands out at most that many pairs), 0 when the time ran out or a signal
 * interrupted the wait (unlike Python, which waits again), or -1 with
 * errno on a real error. A batch may hold fewer than are ready: epoll
 * hands out at most 512 a wait, and the rest at the next waits (select
 * and poll report all at once). Starts a new batch, even when it fails:
 * events of the previous one not taken yet are dropped (they are reported
 * again if still true; every backend is level-triggered). */
int selector_select(struct selector *selector, int timeout_ms);

/* Takes the next (key, events) pair of the batch into *EVENT; returns
 * false when there are no more. It reads the key as it is now, so it
 * copes with callbacks that change the table while you walk the batch: a
 * descriptor unregistered since selector_select() is skipped, and events
 * a modify() has turned off are left out. A key widened by a modify()
 * gets only what the wait found (the events it was watched for then, or a
 * hang-up): the new ones come at the next selector_select(). A key
 * registered since the wait gets nothing of this batch. A descriptor
 * comes at most once a batch. Register, modify and unregister freely
 * between two calls; selector_close() only once you are done with the
 * batch. */
bool selector_next(struct selector *selector, struct selector_event *event);

/* Releases the selector and its backend. Registered descriptors stay open:
 * they are yours. A NULL selector is ignored. */
void selector_close(struct selector *selector);

#endif
