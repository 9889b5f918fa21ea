/* dataplane RDMA data path: the per-message post and poll of an rdma://
 * channel, in C.  pyverbs sets everything up (device, PD, CQ, QP, MRs, QP
 * state); these calls take the ibv_qp and ibv_cq pyverbs created and do only
 * what happens per message, where each Python statement costs microseconds.
 *
 * Protocol (docs/rdma.md): the sender formats records into a local shadow of
 * the peer's ring and RDMA-WRITEs the new bytes to the same offsets of the
 * peer's data area; the last WRITE of each push carries the byte count as
 * immediate data.  The receiver learns of it from its CQ, only once the data
 * is placed, and moves its ring's head itself: it never sees half a message,
 * whatever order the NIC places bytes in.  Each WRITE_WITH_IMM consumes one
 * posted receive; the sender keeps at most peer_rq of them outstanding,
 * retiring one when the peer's credit (its ring tail) passes the end of the
 * push it closed.  Credit flows back as an RDMA atomic add on the sender's
 * shadow tail.
 *
 * Built into dataplane._native_verbs only where infiniband/verbs.h exists;
 * like native/fast, its calls keep the GIL (they never sleep: waits are
 * bounded spins, and the caller loops).  One dp_rdma per channel; calls on
 * it must not run concurrently (the GIL serialises them).
 * Return codes are ring.h's; DP_EPEERGONE after an error completion (its
 * status in wc_status), DP_ESYS after a failed post (its errno in err).
 */

typedef struct dp_rdma {
    /* Set by the caller before dp_rdma_start. */
    void *qp;                 /* struct ibv_qp *, RC, send_cq == recv_cq == cq */
    void *cq;                 /* struct ibv_cq * */
    dp_stage *tx_stage;       /* the shadow ring's send stage */
    dp_stage *rx_stage;       /* the receive ring's recv stage */
    uint64_t *tx_head;        /* shadow ring's producer index */
    uint64_t *tx_tail;        /* shadow ring's consumer index (the peer adds to it) */
    uint64_t *rx_head;        /* our ring's producer index (we publish it) */
    uint64_t *rx_tail;        /* our ring's consumer index */
    uint64_t *imm_ends;       /* peer_rq words: end position of each outstanding push */
    uint64_t *rx_imm_ends;    /* rq_depth words: end position of each arrived, unread push */
    uint64_t tx_data;         /* shadow data area address */
    uint64_t peer_data;       /* peer's data area address */
    uint64_t peer_credit;     /* peer's shadow tail word */
    uint64_t slot;            /* 8 bytes where atomics return their old value */
    uint32_t tx_lkey, peer_rkey, peer_credit_rkey, slot_lkey;
    uint32_t cap;             /* peer ring capacity (power of two) */
    uint32_t max_inline;
    uint32_t sq_depth;
    uint32_t signal_every;
    uint32_t rq_depth;        /* receives we keep posted (power of two) */
    uint32_t peer_rq;         /* receives the peer keeps posted (power of two) */
    uint64_t credit_bytes;    /* return credit after this many bytes consumed */
    int64_t spin_ns;          /* dp_rdma_recv spins at most this long */
    /* State. */
    uint64_t pushed;          /* shadow head already written to the peer */
    uint64_t wqe;             /* send WRs posted */
    uint64_t done;            /* ... known completed */
    uint64_t last_sig;
    uint64_t credited;        /* our tail last returned to the peer */
    uint64_t imm_posted, imm_retired;
    uint64_t imm_seen;        /* pushes arrived */
    uint64_t imm_read;        /* ... whose bytes the consumer has released */
    uint64_t imm_read_credited;
    uint32_t rq_posted;
    int wc_status;            /* first error completion's status, else 0 */
    int err;                  /* errno of the first failed post, else 0 */
} dp_rdma;

/* Posts the receives; 0 or an error. */
int dp_rdma_start(dp_rdma *c);
/* Stage send into the shadow ring, then push: 0; 1 when the message is in
 * the shadow but its write could not be posted yet (push again after a
 * poll); DP_EAGAIN (no room at the peer: ring or receives; nothing sent);
 * or an error.  Closing the channel clears qp and cq: every call is then
 * DP_ESTATE. */
int dp_rdma_send(dp_rdma *c);
/* Writes what the shadow ring gained since the last push: 0, DP_EAGAIN
 * (send queue or peer receives full: retry after dp_rdma_poll), or an error. */
int dp_rdma_push(dp_rdma *c);
/* 1 when a push may post a WRITE_WITH_IMM now (after retiring what the
 * peer's credit allows), else 0. */
int dp_rdma_room(dp_rdma *c);
/* Empties the CQ: publishes arrived messages, re-posts receives, counts
 * completed sends.  New messages (>= 0) or an error. */
int dp_rdma_poll(dp_rdma *c);
/* dp_rdma_poll and a stage recv, spinning up to spin_ns: the message's
 * length, DP_EAGAIN, DP_EMSGSIZE (too big for the stage) or an error. */
int dp_rdma_recv(dp_rdma *c);
/* dp_rdma_recv without spinning. */
int dp_rdma_try_recv(dp_rdma *c);
/* Returns credit (our tail) when it is due, or always with force: 0 or an error. */
int dp_rdma_credit(dp_rdma *c, int force);
/* Posts a signaled empty WRITE, completed after every WR before it; the
 * caller polls until done >= wqe.  0, DP_EAGAIN (send queue full) or an error. */
int dp_rdma_flush(dp_rdma *c);
/* Sleeping until something completes: dp_rdma_arm arms the CQ (the next
 * completion raises an event on its completion channel) and polls once more
 * (what completed before the arming raises none).  It returns 0 when the
 * caller may sleep: wait for dp_rdma_event_fd to be readable and consume
 * the event (ibv_get_cq_event + ibv_ack_cq_events, through pyverbs).  > 0:
 * messages are there, do not sleep; < 0: an error.  event_fd: the fd, or -1
 * when the CQ has no completion channel. */
int dp_rdma_arm(dp_rdma *c);
int dp_rdma_event_fd(dp_rdma *c);
/* Checks that qp and cq point at live verbs objects with these values
 * (read with process_vm_readv: a wrong address is an error, not a crash).
 * 0, or DP_EINVAL naming nothing (the caller reports). */
int dp_rdma_check(uintptr_t qp, uintptr_t cq, uint32_t qp_num, int cqe);
/* sizeof(struct ibv_qp), sizeof(struct ibv_cq): what dp_rdma_check reads. */
uint64_t dp_rdma_abi(int what);
/* Benchmark: the pingpong loop of an rdma:// channel with no Python in it
 * (size-byte messages through the stages; the initiator records round
 * trips in dp_bench_ticks units).  0 or an error. */
int dp_rdma_bench_pingpong(dp_rdma *c, uint32_t size, uint64_t iters, int initiator, uint64_t *rtt_ticks);
