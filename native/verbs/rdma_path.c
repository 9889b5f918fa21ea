/* dataplane RDMA data path (see rdma_path.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include "ring.h"
#include "fast/stage.h"
#include "verbs/rdma_path.h"
#include "internal/atomics.h"

#define POLL_BATCH 16
#define REPOST_BATCH 64

static inline struct ibv_qp *qp_of(dp_rdma *c) { return (struct ibv_qp *)c->qp; }
static inline struct ibv_cq *cq_of(dp_rdma *c) { return (struct ibv_cq *)c->cq; }

/* A failed verbs call (post or poll): keep the first errno for the caller's message. */
static int verbs_failed(dp_rdma *c, int rc)
{
    if (!c->err)
        c->err = rc;
    return DP_ESYS;
}

static int post_recvs(dp_rdma *c)
{
    /* Empty receives: a WRITE_WITH_IMM places its data by RDMA and uses the
     * receive only for its completion. */
    struct ibv_recv_wr wr[REPOST_BATCH], *bad = NULL;
    while (c->rq_posted < c->rq_depth) {
        uint32_t n = c->rq_depth - c->rq_posted;
        if (n > REPOST_BATCH)
            n = REPOST_BATCH;
        memset(wr, 0, sizeof(wr[0]) * n);
        for (uint32_t i = 0; i < n; i++)
            wr[i].next = i + 1 < n ? &wr[i + 1] : NULL;
        int rc = ibv_post_recv(qp_of(c), wr, &bad);
        if (rc)
            return verbs_failed(c, rc);
        c->rq_posted += n;
    }
    return 0;
}

int dp_rdma_start(dp_rdma *c)
{
    if (!c->qp || !c->cq || !c->tx_stage || !c->rx_stage || !c->imm_ends || !c->rx_imm_ends || !c->rq_depth ||
        (c->rq_depth & (c->rq_depth - 1)) || !c->sq_depth ||
        !c->peer_rq || (c->peer_rq & (c->peer_rq - 1)) || !c->cap || (c->cap & (c->cap - 1)) || !c->signal_every ||
        c->signal_every > c->sq_depth)
        return DP_EINVAL;
    return post_recvs(c);
}

/* Retires the outstanding pushes the peer's credit has passed: their
 * receives are consumed and re-posted. */
static inline void retire(dp_rdma *c)
{
    uint64_t tail = LOAD_ACQ(c->tx_tail), mask = c->peer_rq - 1;
    while (c->imm_retired != c->imm_posted && c->imm_ends[c->imm_retired & mask] <= tail)
        c->imm_retired++;
}

int dp_rdma_room(dp_rdma *c)
{
    if (!c->qp)
        return 0;
    if (c->imm_posted - c->imm_retired >= c->peer_rq)
        retire(c);
    return c->imm_posted - c->imm_retired < c->peer_rq;
}

int dp_rdma_poll(dp_rdma *c)
{
    struct ibv_wc wc[POLL_BATCH];
    if (!c->cq || !c->qp)
        return DP_ESTATE; /* closed: the caller cleared qp and cq */
    uint64_t head = *c->rx_head, rmask = c->rq_depth - 1; /* we are its only writer */
    int fresh = 0, got;
    /* Empty the CQ: a caller that finds the ring empty and the peer gone
     * must know that no message it acknowledged is still a completion. */
    do {
        got = ibv_poll_cq(cq_of(c), POLL_BATCH, wc);
        if (got < 0)
            return verbs_failed(c, EIO);
        for (int i = 0; i < got; i++) {
            if (wc[i].status != IBV_WC_SUCCESS) {
                if (!c->wc_status)
                    c->wc_status = (int)wc[i].status;
                continue;
            }
            if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
                head += ntohl(wc[i].imm_data);
                c->rx_imm_ends[(c->imm_seen + (uint64_t)fresh) & rmask] = head;
                fresh++;
                c->rq_posted--;
            } else if (wc[i].wr_id > c->done) {
                c->done = wc[i].wr_id;
            }
        }
    } while (got == POLL_BATCH);
    if (fresh) {
        /* The data of each completed WRITE_WITH_IMM is placed: publish it
         * to our ring's consumer exactly as a local producer would. */
        STORE_REL(c->rx_head, head);
        c->imm_seen += (uint64_t)fresh;
    }
    if (c->wc_status)
        return DP_EPEERGONE;
    if (c->rq_posted <= c->rq_depth / 2 && post_recvs(c) < 0)
        return DP_ESYS;
    return fresh;
}

static inline int sq_room(dp_rdma *c, uint64_t k)
{
    if (c->wqe + k - c->done <= c->sq_depth)
        return 1;
    int rc = dp_rdma_poll(c); /* DP_EPEERGONE exactly when wc_status is set */
    if (rc < 0)
        return rc;
    return c->wqe + k - c->done <= c->sq_depth;
}

static inline int post(dp_rdma *c, struct ibv_send_wr *wr, uint64_t k, int signal)
{
    struct ibv_send_wr *last = wr;
    while (last->next)
        last = last->next;
    if (signal || c->wqe + k - c->last_sig >= c->signal_every) {
        /* Completions are what free send-queue slots: ask for one now and
         * then, and count the rest as done when it arrives (RC completes in
         * order). */
        last->send_flags |= IBV_SEND_SIGNALED;
        last->wr_id = c->wqe + k;
        c->last_sig = c->wqe + k;
    }
    struct ibv_send_wr *bad = NULL;
    int rc = ibv_post_send(qp_of(c), wr, &bad);
    if (rc)
        return verbs_failed(c, rc);
    c->wqe += k;
    return 0;
}

/* An RDMA atomic add on the peer's credit word (its shadow ring's tail). */
static int post_credit_add(dp_rdma *c, uint64_t add, int signal)
{
    int rc = sq_room(c, 1);
    if (rc <= 0)
        return rc < 0 ? rc : DP_EAGAIN;
    struct ibv_sge sge = {.addr = c->slot, .length = 8, .lkey = c->slot_lkey};
    struct ibv_send_wr wr;
    memset(&wr, 0, sizeof(wr));
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_ATOMIC_FETCH_AND_ADD;
    wr.wr.atomic.remote_addr = c->peer_credit;
    wr.wr.atomic.rkey = c->peer_credit_rkey;
    wr.wr.atomic.compare_add = add;
    return post(c, &wr, 1, signal);
}

int dp_rdma_push(dp_rdma *c)
{
    if (!c->qp)
        return DP_ESTATE;
    if (c->wc_status)
        return DP_EPEERGONE;
    uint64_t head = *c->tx_head; /* we are the shadow's producer */
    uint64_t n = head - c->pushed;
    if (!n)
        return 0;
    if (!dp_rdma_room(c))
        return DP_EAGAIN;
    uint64_t mask = (uint64_t)c->cap - 1, o = c->pushed & mask;
    uint64_t k = o + n > c->cap ? 2 : 1;
    int rc = sq_room(c, k);
    if (rc <= 0)
        return rc < 0 ? rc : DP_EAGAIN;
    struct ibv_sge sge[2];
    struct ibv_send_wr wr[2];
    memset(wr, 0, sizeof(wr[0]) * k);
    uint64_t first = k == 2 ? c->cap - o : n;
    for (uint64_t i = 0; i < k; i++) {
        uint64_t off = i ? 0 : o, len = i ? n - first : first;
        sge[i].addr = c->tx_data + off;
        sge[i].length = (uint32_t)len;
        sge[i].lkey = c->tx_lkey;
        wr[i].sg_list = &sge[i];
        wr[i].num_sge = 1;
        wr[i].opcode = IBV_WR_RDMA_WRITE;
        wr[i].send_flags = len <= c->max_inline ? IBV_SEND_INLINE : 0;
        wr[i].wr.rdma.remote_addr = c->peer_data + off;
        wr[i].wr.rdma.rkey = c->peer_rkey;
        wr[i].next = i + 1 < k ? &wr[i + 1] : NULL;
    }
    wr[k - 1].opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr[k - 1].imm_data = htonl((uint32_t)n);
    if ((rc = post(c, wr, k, 0)) < 0)
        return rc;
    c->pushed = head;
    c->imm_ends[c->imm_posted & (c->peer_rq - 1)] = head;
    c->imm_posted++;
    return 0;
}

int dp_rdma_send(dp_rdma *c)
{
    int rc = dp_rdma_push(c); /* usable, and a push that could not post before goes first */
    if (rc < 0)
        return rc;
    if (!dp_rdma_room(c))
        return DP_EAGAIN;
    rc = dp_stage_send(c->tx_stage);
    if (rc < 0)
        return rc;
    rc = dp_rdma_push(c);
    /* The record is in the shadow ring already, so it is sent: 1 tells the
     * caller that its write is not posted yet (send queue full) and that it
     * must push again once completions free a slot. */
    return rc == DP_EAGAIN ? 1 : rc;
}

/* Credit is due after a quarter ring of bytes, or a quarter of our receives'
 * pushes, read: the peer may have that many receives' worth of pushes
 * outstanding at most, so it would otherwise stall. */
static inline int credit_due(dp_rdma *c, uint64_t tail)
{
    /* Count the pushes the consumer has read past, always: each slot of
     * rx_imm_ends is reused once its push is read. */
    uint64_t rmask = c->rq_depth - 1;
    while (c->imm_read != c->imm_seen && c->rx_imm_ends[c->imm_read & rmask] <= tail)
        c->imm_read++;
    return tail - c->credited >= c->credit_bytes || c->imm_read - c->imm_read_credited >= (c->rq_depth + 3) / 4;
}

int dp_rdma_credit(dp_rdma *c, int force)
{
    if (!c->qp)
        return DP_ESTATE;
    if (c->wc_status)
        return DP_EPEERGONE;
    uint64_t tail = LOAD_ACQ(c->rx_tail);
    if (tail == c->credited)
        return 0;
    if (!credit_due(c, tail) && !force)
        return 0;
    /* Credit tells the peer our receives for its pushes up to tail are
     * free again: they must be posted before it is sent. */
    if (c->rq_posted < c->rq_depth && post_recvs(c) < 0)
        return DP_ESYS;
    int rc = post_credit_add(c, tail - c->credited, 0);
    if (rc < 0)
        return rc;
    c->credited = tail;
    c->imm_read_credited = c->imm_read;
    return 0;
}

static int recv_within(dp_rdma *c, int64_t spin_ns)
{
    int64_t deadline = 0;
    for (unsigned i = 0;; i++) {
        int p = dp_rdma_poll(c);
        if (p == DP_ESTATE)
            return p; /* closed: the stages may be gone */
        /* Look into the ring only when something is there (or now and then,
         * for a peer marked gone): an empty ring's poll reads the clock. */
        if (p == 0 && (i & 31) != 0 && LOAD_ACQ(c->rx_head) == LOAD_ACQ(c->rx_tail)) {
            CPU_RELAX();
            continue;
        }
        int r = dp_stage_poll(c->rx_stage);
        if (r == DP_EPEERGONE) {
            /* Marked gone after our poll?  What it acknowledged before
             * going is in the CQ by then: publish it and look again. */
            if ((p = dp_rdma_poll(c)) == DP_ESTATE)
                return p;
            r = dp_stage_poll(c->rx_stage);
        }
        if (r >= 0) {
            int rc = dp_rdma_credit(c, 0); /* when due */
            if (rc < 0 && rc != DP_EAGAIN && rc != DP_EPEERGONE)
                return rc;
            return r;
        }
        if (r != DP_EAGAIN)
            return r;
        if (p < 0)
            return p;
        if (spin_ns <= 0)
            return DP_EAGAIN;
        /* The clock only now and then: in an emulated guest a clock read
         * can cost more than a poll, and it delays noticing the message. */
        if ((i & 31) == 0) {
            int64_t now = (int64_t)dp_now_ns();
            if (!deadline)
                deadline = now + spin_ns;
            else if (now >= deadline)
                return DP_EAGAIN;
        }
        CPU_RELAX();
    }
}

int dp_rdma_recv(dp_rdma *c) { return recv_within(c, c->spin_ns); }

int dp_rdma_try_recv(dp_rdma *c) { return recv_within(c, 0); }

int dp_rdma_flush(dp_rdma *c)
{
    int rc = dp_rdma_push(c); /* 0: nothing left unposted */
    if (rc < 0)
        return rc;
    if (c->done >= c->wqe)
        return 0;
    if (c->last_sig == c->wqe)
        return 0; /* the last WR is signaled already */
    /* Adds 0 to the peer's credit word, signaled: changes nothing, and
     * completes after every WR before it. */
    rc = post_credit_add(c, 0, 1);
    return rc < 0 ? rc : 0;
}

int dp_rdma_arm(dp_rdma *c)
{
    if (!c->cq || !c->qp)
        return DP_ESTATE;
    int rc = ibv_req_notify_cq(cq_of(c), 0);
    if (rc)
        return verbs_failed(c, rc);
    /* What completed before the arming raises no event, and another
     * thread's poll may have published a message already. */
    rc = dp_rdma_poll(c);
    if (rc)
        return rc;
    return LOAD_ACQ(c->rx_head) != LOAD_ACQ(c->rx_tail);
}

int dp_rdma_event_fd(dp_rdma *c)
{
    struct ibv_cq *cq = cq_of(c);
    return cq && cq->channel ? cq->channel->fd : -1;
}

static int safe_read(uintptr_t addr, void *out, size_t n)
{
    struct iovec local = {out, n}, remote = {(void *)addr, n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    return got == (ssize_t)n ? 0 : -1;
}

int dp_rdma_check(uintptr_t qp, uintptr_t cq, uint32_t qp_num, int cqe)
{
    struct ibv_qp q;
    struct ibv_cq c;
    struct ibv_context ctx;
    if (!qp || !cq || qp % 8 || cq % 8)
        return DP_EINVAL;
    if (safe_read(qp, &q, sizeof(q)) || safe_read(cq, &c, sizeof(c)))
        return DP_EINVAL;
    if (q.qp_num != qp_num || q.qp_type != IBV_QPT_RC || (uintptr_t)q.send_cq != cq || (uintptr_t)q.recv_cq != cq ||
        !q.context || q.context != c.context || c.cqe != cqe)
        return DP_EINVAL;
    if (safe_read((uintptr_t)q.context, &ctx, sizeof(ctx)) || !ctx.ops.post_send || !ctx.ops.post_recv || !ctx.ops.poll_cq)
        return DP_EINVAL;
    return 0;
}

uint64_t dp_rdma_abi(int what)
{
    return what == 0 ? sizeof(struct ibv_qp) : sizeof(struct ibv_cq);
}

static int send_spin(dp_rdma *c)
{
    for (;;) {
        int rc = dp_rdma_send(c);
        while (rc == 1) { /* in the shadow, not posted yet */
            int p = dp_rdma_poll(c);
            if (p < 0)
                return p;
            rc = dp_rdma_push(c);
            if (rc == DP_EAGAIN)
                rc = 1;
        }
        if (rc != DP_EAGAIN)
            return rc;
        int p = dp_rdma_poll(c);
        if (p < 0)
            return p;
    }
}

int dp_rdma_bench_pingpong(dp_rdma *c, uint32_t size, uint64_t iters, int initiator, uint64_t *rtt_ticks)
{
    if (size > c->tx_stage->cap)
        return DP_EMSGSIZE;
    memset(c->tx_stage->data, 0, size);
    for (uint64_t i = 0; i < iters; i++) {
        uint64_t t0 = dp_bench_ticks();
        int rc;
        if (initiator) {
            c->tx_stage->len = size;
            if ((rc = send_spin(c)) < 0)
                return rc;
        }
        do
            rc = dp_rdma_recv(c);
        while (rc == DP_EAGAIN);
        if (rc < 0)
            return rc;
        if (!initiator) {
            c->tx_stage->len = size;
            if ((rc = send_spin(c)) < 0)
                return rc;
        } else {
            rtt_ticks[i] = dp_bench_ticks() - t0;
        }
    }
    return 0;
}
