/* dataplane ring: a single-producer/single-consumer ring of variable-length
 * messages in shared memory.  This header is the shim's stable ABI and is
 * parsed by cffi's cdef, so it holds plain declarations only.
 *
 * Return convention (every int-returning call): >= 0 is success (a length or
 * a count), < 0 is one of the DP_E* codes below.  DP_ESYS means errno is set.
 * Timeouts are in nanoseconds: 0 = try once, < 0 = wait forever.
 */

#define DP_RING_VERSION 1

#define DP_EAGAIN    -1   /* would block: ring full (send) or empty (recv) */
#define DP_ETIMEDOUT -2   /* the timeout expired */
#define DP_EMSGSIZE  -3   /* message larger than max_message or the buffer */
#define DP_EPEERGONE -4   /* the other side closed or died */
#define DP_ECORRUPT  -5   /* segment header or a record is invalid */
#define DP_EVERSION  -6   /* segment has another layout version */
#define DP_ESYS      -7   /* a system call failed: see errno */
#define DP_EINVAL    -8   /* bad argument */
#define DP_ESTATE    -9   /* call not valid now (e.g. no reservation open) */
#define DP_EROLE     -10  /* another process already holds this end */

typedef struct dp_ring dp_ring;

/* Lifecycle.  Names are shm names without the leading '/'. */
int dp_ring_create(const char *name, uint64_t capacity, uint64_t max_message, dp_ring **out);
int dp_ring_attach(const char *name, dp_ring **out);
/* A ring over caller-owned memory (e.g. memory registered for RDMA).  With
 * init != 0 the header is written; otherwise it is validated. */
int dp_ring_open_mem(void *mem, uint64_t size, int init, uint64_t capacity,
                     uint64_t max_message, dp_ring **out);
void dp_ring_close(dp_ring *r);
int dp_ring_unlink(const char *name);
uint64_t dp_ring_segment_size(uint64_t capacity);

/* Introspection. */
uint64_t dp_ring_capacity(const dp_ring *r);
uint64_t dp_ring_max_message(const dp_ring *r);
void *dp_ring_base(const dp_ring *r);
uint64_t dp_ring_size(const dp_ring *r);
uint64_t dp_ring_used(const dp_ring *r);        /* committed, unreleased bytes */
int dp_ring_owner_pid(const dp_ring *r);
int dp_ring_peer_alive(dp_ring *r);             /* 1 alive, 0 gone, DP_EAGAIN if no peer yet */
int dp_ring_peer_local(dp_ring *r);             /* 1 if the other end is this process (or this handle) */
/* Declare the peer gone (a transport saw its connection drop); wakes waiters. */
void dp_ring_mark_peer_gone(dp_ring *r);

/* Segment layout, for peers that write into the ring remotely (RDMA). */
#define DP_LAYOUT_HEAD_OFFSET 0   /* byte offset of the producer index */
#define DP_LAYOUT_TAIL_OFFSET 1   /* byte offset of the consumer index */
#define DP_LAYOUT_DATA_OFFSET 2   /* byte offset of the data area */
#define DP_LAYOUT_RECORD_HEADER 3 /* bytes of a record's header */
#define DP_LAYOUT_ALIGN 4         /* records are padded to this */
#define DP_LAYOUT_PAD_FLAG 5      /* flags bit of a padding record */
uint64_t dp_ring_layout(int field);
/* Waiting policy of this handle: spin for spin_ns, then sleep on a futex.
 * spin_ns < 0 busy-polls forever (lowest latency, burns a core). */
void dp_ring_set_spin(dp_ring *r, int64_t spin_ns);
int64_t dp_ring_spin(const dp_ring *r);

/* Producer. */
int dp_ring_send(dp_ring *r, const char *data, uint32_t len, int64_t timeout_ns);
int dp_ring_reserve(dp_ring *r, uint32_t len, int64_t timeout_ns, char **ptr);
int dp_ring_commit(dp_ring *r, uint32_t len);
int dp_ring_abort(dp_ring *r);
/* Bulk: all n messages or none.  Burst: as many as fit (>= 1 once one fits
 * within the timeout).  Both return the number sent. */
int dp_ring_send_bulk(dp_ring *r, const char *buf, const uint32_t *lens, uint32_t n, int64_t timeout_ns);
int dp_ring_send_burst(dp_ring *r, const char *buf, const uint32_t *lens, uint32_t n, int64_t timeout_ns);
/* n fixed-size records laid out back to back in buf (e.g. a NumPy array). */
int dp_ring_send_records(dp_ring *r, const char *buf, uint32_t rec_size, uint32_t n, int64_t timeout_ns);

/* Consumer.  peek returns the length of the next message and points *ptr at
 * it inside the ring; it stays valid until dp_ring_release. */
int dp_ring_peek(dp_ring *r, int64_t timeout_ns, char **ptr);
int dp_ring_release(dp_ring *r);
int dp_ring_recv(dp_ring *r, char *buf, uint32_t cap, int64_t timeout_ns);
/* Copies up to max_n messages back to back into buf (cap bytes), their
 * lengths into lens; returns the count, waiting for the first one. */
int dp_ring_recv_burst(dp_ring *r, char *buf, uint64_t cap, uint32_t *lens, uint32_t max_n, int64_t timeout_ns);
/* Fixed-size records: a message of another size is DP_EMSGSIZE and stays. */
int dp_ring_recv_records(dp_ring *r, char *buf, uint32_t rec_size, uint32_t max_n, int64_t timeout_ns);

/* Benchmarks run inside the shim, no Python in the loop. */
uint64_t dp_now_ns(void);
/* A cheap timestamp for timing round trips (the TSC on x86, as perftest
 * uses; dp_now_ns elsewhere): calibrate against dp_now_ns over the run.
 * Where the clock is slow to read (an emulated guest: ~5 us), the TSC is not. */
uint64_t dp_bench_ticks(void);
int dp_bench_pingpong(dp_ring *tx, dp_ring *rx, uint32_t size, uint64_t iters, int initiator, uint64_t *rtt_ns);
/* The hardware's floor for the same exchange: two processes bouncing one
 * shared 8-byte word (no ring), the initiator recording round trips. */
int dp_bench_cacheline(uint64_t *word, uint64_t iters, int initiator, uint64_t *rtt_ns);
