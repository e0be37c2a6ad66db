/*
 * uring.h - the smallest io_uring layer this chapter needs, on the kernel's
 * own interface: io_uring_setup() and io_uring_enter() through syscall(2),
 * the two rings mapped with mmap(). liburing does the same and much more
 * (README.md: "What liburing would do").
 *
 * Two queues shared with the kernel:
 *  - the submission queue (SQ): we fill an entry (SQE) describing a request
 *    -- receive on this socket into that buffer, say -- and move the tail;
 *  - the completion queue (CQ): the kernel adds an entry (CQE) for each
 *    request that is done, carrying our user_data and the result (what the
 *    system call would have returned, or -errno), and we move the head.
 * io_uring_enter() hands the kernel the new SQEs and, if asked, waits for
 * CQEs: one system call for both.
 */
#ifndef URING_H
#define URING_H

#include <linux/io_uring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uring {
    int fd;
    /* The submission queue: the kernel's head and our tail, in shared memory. */
    unsigned *sq_head, *sq_tail, sq_mask, sq_entries;
    struct io_uring_sqe *sqes;
    /* The completion queue: our head and the kernel's tail. */
    unsigned *cq_head, *cq_tail, cq_mask, cq_entries;
    struct io_uring_cqe *cqes;
    /* What to unmap at the end. */
    void *rings, *sqe_map;
    size_t rings_size, sqe_map_size;
};

/* Sets up a ring with room for sq_entries requests being submitted and
 * cq_entries completions not yet read. On failure returns false and points
 * *reason at a sentence saying why (errno is kept). */
bool uring_open(struct uring *ring, unsigned sq_entries, unsigned cq_entries,
                const char **reason);
void uring_close(struct uring *ring);

/* Asks the kernel which operations (IORING_OP_...) it knows: returns the
 * index in ops of the first it does not, count if it knows them all, or -1
 * and errno if it cannot say (before Linux 5.6). */
int uring_first_unsupported(const struct uring *ring, const uint8_t *ops, int count);

/* The next free SQE, zeroed, or NULL while the SQ is full (uring_submit()
 * then makes room). It goes to the kernel at the next submit. */
struct io_uring_sqe *uring_get_sqe(struct uring *ring);

/* Hands the kernel every SQE filled since the last call and, if wait is
 * true, sleeps until at least one completion is there. -1 and errno on
 * failure (EINTR: a signal, such as SIGSTOP/SIGCONT, came first). */
int uring_submit(struct uring *ring, bool wait);

/* The oldest completion not yet seen, or NULL; uring_seen() releases it. */
struct io_uring_cqe *uring_peek(struct uring *ring);
void uring_seen(struct uring *ring);

/* Registers a ring of provided buffers (group group_id): the receive of a
 * request with IOSQE_BUFFER_SELECT takes the next buffer from it only when
 * bytes arrive. entries is a power of two. -1 and errno on failure. */
struct io_uring_buf *uring_register_buffer_ring(struct uring *ring, unsigned entries,
                                                uint16_t group_id);
/* Gives buffer id (len bytes at addr) to the kernel, at the ring's tail. */
void uring_provide_buffer(struct io_uring_buf *buffers, unsigned entries,
                          void *addr, unsigned len, uint16_t id);

#endif
