/*
 * uring.c - see uring.h. Read top to bottom: set-up, submitting, reaping,
 * provided buffers.
 *
 * The rings live in memory both sides see, so the order in which the two
 * sides see each other's writes matters: an SQE must be complete before the
 * kernel sees the tail that includes it, and a CQE must not be read before
 * the tail that announces it. The __atomic_store_n(..., __ATOMIC_RELEASE)
 * and __atomic_load_n(..., __ATOMIC_ACQUIRE) below say exactly that, and
 * nothing more; the indexes only ever grow (wrapping at 2^32), and
 * "tail - head" is the number of entries between them.
 */
#define _GNU_SOURCE

#include "uring.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* glibc has no wrappers for these: syscall(2) calls them by number. */
static int io_uring_setup(unsigned entries, struct io_uring_params *params)
{
    return (int)syscall(SYS_io_uring_setup, entries, params);
}

static int io_uring_enter(int fd, unsigned to_submit, unsigned min_complete,
                          unsigned flags)
{
    return (int)syscall(SYS_io_uring_enter, fd, to_submit, min_complete, flags, NULL, 0);
}

static int io_uring_register(int fd, unsigned opcode, void *arg, unsigned count)
{
    return (int)syscall(SYS_io_uring_register, fd, opcode, arg, count);
}

static void *map_ring(int fd, size_t size, off_t offset)
{
    return mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
}

/* Where the kernel put each field of the rings in the shared memory: it
 * says so in params, as offsets. */
static void find_fields(struct uring *ring, const struct io_uring_params *params)
{
    char *sq = ring->rings, *cq = ring->rings;
    ring->sq_head = (unsigned *)(sq + params->sq_off.head);
    ring->sq_tail = (unsigned *)(sq + params->sq_off.tail);
    ring->sq_mask = *(unsigned *)(sq + params->sq_off.ring_mask);
    ring->sq_entries = params->sq_entries;
    /* The SQ is an array of indexes into the SQEs, so that an application
     * may submit them in any order. We always use them in order: entry i
     * names SQE i, once and for all. */
    unsigned *array = (unsigned *)(sq + params->sq_off.array);
    for (unsigned i = 0; i < params->sq_entries; i++)
        array[i] = i;
    ring->cq_head = (unsigned *)(cq + params->cq_off.head);
    ring->cq_tail = (unsigned *)(cq + params->cq_off.tail);
    ring->cq_mask = *(unsigned *)(cq + params->cq_off.ring_mask);
    ring->cq_entries = params->cq_entries;
    ring->cqes = (struct io_uring_cqe *)(cq + params->cq_off.cqes);
}

bool uring_open(struct uring *ring, unsigned sq_entries, unsigned cq_entries,
                const char **reason)
{
    struct io_uring_params params = {0};
    /* CQSIZE: a completion queue bigger than the usual twice the SQ.
     * SUBMIT_ALL: a request that fails at submission still lets the ones
     * after it go in (it completes with its error).
     * COOP_TASKRUN: the kernel finishes a request whose bytes have come
     * in our process ("task work"). By default it interrupts the process
     * to do so at once, even while it runs our own code -- with an
     * interrupt sent to its CPU. With this flag the work waits until we
     * next enter the kernel, which a thread serving its own ring does soon
     * anyway; a process asleep in io_uring_enter() is woken either way.
     * A busy server is interrupted less, and spends less CPU a message:
     * docs/bench-results/06-task-work/ measured it. */
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    params.cq_entries = cq_entries;
    memset(ring, 0, sizeof *ring);
    ring->fd = io_uring_setup(sq_entries, &params);
    if (ring->fd == -1) {
        *reason = "io_uring_setup";
        return false;
    }
    /* NODROP: a completion that finds the CQ full waits in the kernel
     * instead of being lost. SINGLE_MMAP: both rings in one mapping. Both
     * are older than the buffer rings we need anyway; said here, they are
     * checked rather than assumed. */
    int saved;
    if (!(params.features & IORING_FEAT_NODROP) || !(params.features & IORING_FEAT_SINGLE_MMAP)) {
        *reason = "this kernel's io_uring lacks IORING_FEAT_NODROP or IORING_FEAT_SINGLE_MMAP";
        saved = EOPNOTSUPP;
        goto fail;
    }
    size_t sq_size = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    size_t cq_size = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    ring->rings_size = sq_size > cq_size ? sq_size : cq_size;
    ring->rings = map_ring(ring->fd, ring->rings_size, IORING_OFF_SQ_RING);
    if (ring->rings == MAP_FAILED) {
        *reason = "mmap of the rings";
        saved = errno;
        goto fail;
    }
    ring->sqe_map_size = params.sq_entries * sizeof(struct io_uring_sqe);
    ring->sqe_map = map_ring(ring->fd, ring->sqe_map_size, IORING_OFF_SQES);
    if (ring->sqe_map == MAP_FAILED) {
        *reason = "mmap of the SQEs";
        saved = errno;
        munmap(ring->rings, ring->rings_size);
        goto fail;
    }
    ring->sqes = ring->sqe_map;
    find_fields(ring, &params);
    return true;
fail:
    close(ring->fd);
    errno = saved;
    return false;
}

void uring_close(struct uring *ring)
{
    munmap(ring->sqe_map, ring->sqe_map_size);
    munmap(ring->rings, ring->rings_size);
    close(ring->fd);
}

int uring_first_unsupported(const struct uring *ring, const uint8_t *ops, int count)
{
    /* The probe has a flag for every opcode up to IORING_OP_LAST. */
    size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, size);
    if (probe == NULL)
        return -1;
    int i = -1;
    if (io_uring_register(ring->fd, IORING_REGISTER_PROBE, probe, 256) == 0) {
        for (i = 0; i < count; i++) {
            if (ops[i] > probe->last_op || !(probe->ops[ops[i]].flags & IO_URING_OP_SUPPORTED))
                break;
        }
    }
    int saved = errno;
    free(probe);
    errno = saved;
    return i;
}

/* ---- Submitting ------------------------------------------------------------ */

struct io_uring_sqe *uring_get_sqe(struct uring *ring)
{
    /* Only io_uring_enter() moves the kernel's head, and only we call it. */
    unsigned head = __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    unsigned tail = *ring->sq_tail;
    if (tail - head == ring->sq_entries)
        return NULL; /* full: submit first */
    struct io_uring_sqe *sqe = &ring->sqes[tail & ring->sq_mask];
    memset(sqe, 0, sizeof *sqe);
    /* The tail moves now, before the caller fills the SQE in: without a
     * kernel thread polling the queue (IORING_SETUP_SQPOLL, not used
     * here), the kernel reads the SQ only inside io_uring_enter(), which
     * the caller calls once the entry is complete. */
    __atomic_store_n(ring->sq_tail, tail + 1, __ATOMIC_RELEASE);
    return sqe;
}

int uring_submit(struct uring *ring, bool wait)
{
    unsigned to_submit = *ring->sq_tail - __atomic_load_n(ring->sq_head, __ATOMIC_ACQUIRE);
    unsigned flags = wait ? IORING_ENTER_GETEVENTS : 0;
    int result = io_uring_enter(ring->fd, to_submit, wait ? 1 : 0, flags);
    return result < 0 ? -1 : result;
}

/* ---- Reaping --------------------------------------------------------------- */

struct io_uring_cqe *uring_peek(struct uring *ring)
{
    unsigned head = *ring->cq_head;
    if (head == __atomic_load_n(ring->cq_tail, __ATOMIC_ACQUIRE))
        return NULL;
    return &ring->cqes[head & ring->cq_mask];
}

void uring_seen(struct uring *ring)
{
    /* The release: we are done reading the entry before the kernel may
     * reuse it. */
    __atomic_store_n(ring->cq_head, *ring->cq_head + 1, __ATOMIC_RELEASE);
}

/* ---- Provided buffers --------------------------------------------------------- */

/* The ring of buffer descriptions is memory we allocate (page-aligned) and
 * the kernel reads; its tail, which we move, lives in the reserved field of
 * the first entry. */
static uint16_t *buffer_ring_tail(struct io_uring_buf *buffers)
{
    return (uint16_t *)((char *)buffers + offsetof(struct io_uring_buf, resv));
}

struct io_uring_buf *uring_register_buffer_ring(struct uring *ring, unsigned entries,
                                                uint16_t group_id)
{
    size_t size = entries * sizeof(struct io_uring_buf);
    void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED)
        return NULL;
    struct io_uring_buf_reg registration = {0};
    registration.ring_addr = (uint64_t)(uintptr_t)memory;
    registration.ring_entries = entries;
    registration.bgid = group_id;
    if (io_uring_register(ring->fd, IORING_REGISTER_PBUF_RING, &registration, 1) == -1) {
        int saved = errno;
        munmap(memory, size);
        errno = saved;
        return NULL;
    }
    return memory;
}

void uring_provide_buffer(struct io_uring_buf *buffers, unsigned entries,
                          void *addr, unsigned len, uint16_t id)
{
    uint16_t *tail = buffer_ring_tail(buffers);
    uint16_t at = *tail;
    struct io_uring_buf *entry = &buffers[at & (entries - 1)];
    entry->addr = (uint64_t)(uintptr_t)addr;
    entry->len = len;
    entry->bid = id;
    /* Careful: entry 0's resv field is the tail itself, so writing entry 0
     * must leave it alone; we wrote addr, len and bid only. */
    __atomic_store_n(tail, (uint16_t)(at + 1), __ATOMIC_RELEASE);
}
