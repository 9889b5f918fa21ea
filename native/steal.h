/* dataplane steal: per-core bounded request queues in one shared segment,
 * fed by a single dispatcher and drained by their owner and by thieves.
 * This header is part of the shim's stable ABI and is parsed by cffi's cdef,
 * so it holds plain declarations only.  It uses dp_ring from ring.h (cffi
 * reads the headers in name order, so ring.h comes first).
 *
 * Return codes are ring.h's DP_E* (>= 0 success, < 0 error).  Timeouts are
 * in nanoseconds: 0 = try once, < 0 = wait forever.
 */

#define DP_STEAL_VERSION 1
#define DP_STEAL_MAX_QUEUES 1024     /* one queue per worker */
#define DP_STEAL_MAX_SLOTS 1048576   /* slots per queue, a power of two */
#define DP_STEAL_MAX_REQUEST 1048576 /* bytes of inline request payload */
#define DP_STEAL_RESPONSE_HEADER 16  /* {u64 id, u32 status, u32 worker} */

/* Segment flags. */
#define DP_STEAL_F_STEAL 1           /* idle workers take from any queue */

/* Response status words (the ring record's header). */
#define DP_STEAL_OK 0
#define DP_STEAL_ERROR 1             /* payload: the handler's error text */

/* Per-worker counters for dp_steal_counter. */
#define DP_STEAL_C_TAKEN 0           /* requests this worker took */
#define DP_STEAL_C_STOLEN 1          /* ... of which from another queue */
#define DP_STEAL_C_SLEEPS 2          /* times it slept on its futex */
#define DP_STEAL_C_RESPONDED 3       /* responses it sent */

typedef struct dp_steal dp_steal;

/* What dp_steal_take hands out.  The payload lies at `offset` bytes from
 * the segment base and stays valid until the worker responds. */
typedef struct {
    uint64_t id;
    uint64_t pos;
    uint32_t queue;
    uint32_t len;
    uint64_t offset;
    uint32_t stolen;
    uint32_t flow;
} dp_steal_item;

/* Lifecycle.  The caller maps the memory (e.g. an mmap of /dev/shm);
 * init != 0 writes the header (the creating process becomes the
 * dispatcher), init == 0 validates it. */
uint64_t dp_steal_segment_size(uint32_t nqueues, uint32_t slots, uint32_t max_request);
int dp_steal_open_mem(void *mem, uint64_t size, int init, uint32_t nqueues, uint32_t slots,
                      uint32_t max_request, uint32_t flags, dp_steal **out);
void dp_steal_close(dp_steal *s);

uint32_t dp_steal_nqueues(const dp_steal *s);
uint32_t dp_steal_slots(const dp_steal *s);
uint32_t dp_steal_max_request(const dp_steal *s);
uint32_t dp_steal_flags(const dp_steal *s);
/* Waiting policy of this handle: spin for spin_ns before sleeping. */
void dp_steal_set_spin(dp_steal *s, int64_t spin_ns);

/* Dispatcher (the single producer of every queue). */
int dp_steal_push(dp_steal *s, uint32_t queue, uint64_t id, uint32_t flow, const char *data, uint32_t len,
                  int64_t timeout_ns);
uint64_t dp_steal_depth(const dp_steal *s, uint32_t queue);  /* pushed, not yet taken */
/* Waits until one of the n rings holds a message (1), or the timeout (0). */
int dp_steal_wait_results(dp_steal *s, dp_ring **rings, uint32_t n, int64_t timeout_ns);
/* Writes the indices of the rings (of n) holding a message into ready[]
 * (room for n) and returns how many: one call instead of one per ring. */
uint32_t dp_steal_ready(dp_ring **rings, uint32_t n, uint32_t *ready);
/* 1 alive, 0 dead, DP_EAGAIN not registered yet. */
int dp_steal_worker_alive(dp_steal *s, uint32_t worker);
/* After a worker died: releases the slots it held (their ids into ids[],
 * returns how many), lets every worker take from its queue, wakes them. */
int dp_steal_reap(dp_steal *s, uint32_t worker, uint64_t *ids, uint32_t max_ids);
int dp_steal_is_dead(const dp_steal *s, uint32_t worker);
/* No more requests: workers drain what they may take, then take fails with
 * DP_EPEERGONE. */
void dp_steal_shutdown(dp_steal *s);
uint64_t dp_steal_counter(const dp_steal *s, uint32_t worker, int which);

/* Worker.  register claims the worker's line (DP_EROLE if another live
 * process holds it).  take claims the next request: own queue first, then
 * (with DP_STEAL_F_STEAL, or from dead workers' queues) the others.
 * worker == nqueues is the dispatcher itself, draining queues no live
 * worker will. */
int dp_steal_register(dp_steal *s, uint32_t worker);
int dp_steal_take(dp_steal *s, uint32_t worker, int64_t timeout_ns, dp_steal_item *out);
/* Frees the slot of the request taken last; its payload is gone. */
int dp_steal_release(dp_steal *s);
/* Sends {id, status, worker} + data on the response ring (waiting for
 * room), then releases the slot and wakes the dispatcher if it sleeps.
 * DP_EMSGSIZE leaves the request held, so an error can be sent instead. */
int dp_steal_respond(dp_steal *s, dp_ring *ring, uint32_t status, const char *data, uint32_t len);

/* Shim-side loops with no Python in them (tests and benchmarks).  produce
 * pushes ids first_id.. to `queue` (or round-robin over all queues when
 * queue >= nqueues) with payloads derived from the id; consume takes and
 * releases until idle for idle_ns, checking every payload, and writes the
 * ids it took.  consume returns the count, or DP_ECORRUPT on a torn read. */
int64_t dp_steal_bench_produce(dp_steal *s, uint32_t queue, uint64_t first_id, uint64_t n, uint32_t len,
                               int64_t timeout_ns);
int64_t dp_steal_bench_consume(dp_steal *s, uint32_t worker, uint64_t *ids, uint64_t max_ids, int64_t idle_ns);
