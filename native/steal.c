/* dataplane steal: per-core work-stealing request queues in shared memory.
 *
 * One segment holds, for each of n workers, a bounded queue of fixed-size
 * slots (a request descriptor plus its inline payload).  The dispatcher is
 * the single producer of every queue; the owner and any thief consume.
 *
 * Every slot carries one 64-bit state word that names the queue position it
 * belongs to, its status and (when claimed) the claiming worker:
 *
 *     EMPTY(p)      free, the producer may write position p into it
 *     FULL(p)       position p is published
 *     CLAIMED(p,w)  worker w took position p and is still using the payload
 *
 * and moves EMPTY(p) -> FULL(p) -> CLAIMED(p,w) -> EMPTY(p + slots).
 * Exactly-once follows from the middle step being a CAS on a value that
 * names the position: of all the consumers that saw FULL(p), one CAS wins,
 * and a consumer holding a stale FULL(p) cannot succeed later, because the
 * slot's next FULL names p + slots (no ABA; positions are kept modulo 2^48
 * and compared by signed distance, so a stale observer would have to sleep
 * through 2^48 requests on that one queue).  The shared head index is only a hint that lets
 * consumers find the next position fast; anyone who sees the slot at head
 * already claimed or recycled moves head on, so a consumer that dies (or is
 * preempted) between its claim and its head update blocks nobody.
 *
 * Keeping the slot CLAIMED while the handler runs gives the handler a
 * zero-copy view that the producer cannot overwrite, and records in shared
 * memory which request a worker was running when it died: the dispatcher
 * finds CLAIMED(*, dead) and fails exactly that request.
 *
 * Orderings: the producer writes the payload, then stores FULL with
 * release; the claiming CAS is acquire, so the consumer sees the payload.
 * The consumer's release (CLAIMED -> EMPTY, release) orders its last read of
 * the payload before the producer's acquire load of EMPTY and its rewrite.
 * Sleep/wake uses the Dekker pattern of ring.c: the sleeper stores its flag,
 * fences, re-checks the queues; the waker publishes, fences, reads the flag.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal/atomics.h"
#include "internal/osdep.h"
#include "ring.h"
#include "steal.h"

#define ST_MAGIC 0x4c41455453504454ULL /* "TDPSTEAL" */
#define LINE 128
#define SLOT_HDR 64u
#define PAGE 4096u
#define DEFAULT_SPIN_NS 50000LL
#define SLEEP_SLICE_NS 10000000LL  /* a sleeper re-checks at least this often */
#define CHECK_NS 100000000LL       /* how often a sleeper checks the dispatcher */
#define FULL_POLL_NS 20000L        /* a producer facing a full queue polls this often */

/* State word: position (48 bits) | owner (14 bits) | status (2 bits). */
#define S_EMPTY 0u
#define S_FULL 1u
#define S_CLAIMED 2u
#define POS_BITS 48
#define POS_MASK ((1ULL << POS_BITS) - 1)
#define OWNER_MASK 0x3fffu
#define MK(pos, owner, st) ((((uint64_t)(pos)&POS_MASK) << 16) | ((uint64_t)((owner)&OWNER_MASK) << 2) | (st))
#define ST_POS(s) ((s) >> 16)
#define ST_OWNER(s) ((uint32_t)(((s) >> 2) & OWNER_MASK))
#define ST_STATUS(s) ((uint32_t)((s)&3u))

_Static_assert(DP_STEAL_MAX_QUEUES < OWNER_MASK, "owner ids (workers and the dispatcher) fit the state word");

struct meta {
    uint64_t magic;
    uint32_t version;
    uint32_t nqueues;
    uint32_t slots;
    uint32_t max_request;
    uint32_t slot_size;
    uint32_t flags;
    uint64_t hdr_bytes;
    uint64_t size;
};

struct ctl {
    uint32_t shutdown;
    uint32_t disp_sleeping;
    uint32_t result_seq; /* futex word of the dispatcher */
    int32_t disp_pid;
    uint64_t disp_start;
};

/* The producer's line and the consumers' line of a queue are apart so the
 * dispatcher's tail store does not steal the line thieves CAS on. */
struct qprod {
    uint64_t tail;
};
struct qcons {
    uint64_t head;
    uint32_t orphan; /* its worker died: everyone may take from it */
};

/* Read by the dispatcher on every push: kept apart from the counters the
 * worker bumps on every request. */
struct wwake {
    uint32_t sleeping;
    uint32_t futex;
    uint32_t busy;
    uint32_t dead;
    int32_t pid;
    uint32_t pad;
    uint64_t starttime;
};
struct wstat {
    uint64_t c[4];
};

struct slot {
    uint64_t state;
    uint64_t id;
    uint32_t len;
    uint32_t flow;
};

_Static_assert(sizeof(struct meta) <= LINE && sizeof(struct ctl) <= LINE && sizeof(struct wwake) <= LINE &&
                   sizeof(struct wstat) <= LINE && sizeof(struct slot) <= SLOT_HDR,
               "header structs fit their lines");

struct dp_steal {
    char *base;
    struct meta *m;
    struct ctl *c;
    uint32_t nq, slots, mask, slot_size, max_req, flags;
    uint64_t size;
    int32_t pid;
    uint64_t starttime;
    int64_t spin_ns;
    uint32_t me; /* registered worker, or UINT32_MAX */
    /* the request this handle holds */
    int held;
    uint32_t held_q, held_owner;
    uint64_t held_pos, held_id;
    uint64_t next_check;
};

/* ------------------------------------------------------------ helpers -- */

static inline struct qprod *qprod(const dp_steal *s, uint32_t q)
{
    return (struct qprod *)(s->base + 2 * LINE + (uint64_t)q * 2 * LINE);
}
static inline struct qcons *qcons(const dp_steal *s, uint32_t q)
{
    return (struct qcons *)(s->base + 2 * LINE + (uint64_t)q * 2 * LINE + LINE);
}
static inline struct wwake *wwake(const dp_steal *s, uint32_t w)
{
    return (struct wwake *)(s->base + 2 * LINE + (uint64_t)s->nq * 2 * LINE + (uint64_t)w * 2 * LINE);
}
static inline struct wstat *wstat(const dp_steal *s, uint32_t w)
{
    return (struct wstat *)(s->base + 2 * LINE + (uint64_t)s->nq * 2 * LINE + (uint64_t)w * 2 * LINE + LINE);
}
static inline struct slot *slot_at(const dp_steal *s, uint32_t q, uint64_t pos)
{
    return (struct slot *)(s->base + s->m->hdr_bytes + ((uint64_t)q * s->slots + (pos & s->mask)) * s->slot_size);
}
static inline void bump(struct wstat *w, int which)
{
    STORE_RLX(&w->c[which], LOAD_RLX(&w->c[which]) + 1); /* single writer */
}

/* Signed distance between two 48-bit positions. */
static inline int64_t pos_diff(uint64_t a, uint64_t b) { return (int64_t)((a - b) << 16) >> 16; }

/* --------------------------------------------------------- lifecycle -- */

static uint64_t hdr_bytes_for(uint32_t nq) { return ((2ull + 4ull * nq) * LINE + PAGE - 1) / PAGE * PAGE; }
static uint32_t slot_size_for(uint32_t max_request) { return SLOT_HDR + ((max_request + 63u) & ~63u); }

static int valid_geometry(uint32_t nq, uint32_t slots, uint32_t max_request)
{
    return nq >= 1 && nq <= DP_STEAL_MAX_QUEUES && slots >= 2 && slots <= DP_STEAL_MAX_SLOTS &&
           (slots & (slots - 1)) == 0 && max_request <= DP_STEAL_MAX_REQUEST;
}

uint64_t dp_steal_segment_size(uint32_t nqueues, uint32_t slots, uint32_t max_request)
{
    if (!valid_geometry(nqueues, slots, max_request))
        return 0;
    return hdr_bytes_for(nqueues) + (uint64_t)nqueues * slots * slot_size_for(max_request);
}

static uint64_t my_starttime(void)
{
    char st;
    uint64_t start = 0;
    dp_osdep_proc_stat((int)getpid(), &st, &start);
    return start;
}

static int validate(const void *mem, uint64_t size)
{
    const struct meta *m = mem;
    if (size < PAGE || LOAD_ACQ(&m->magic) != ST_MAGIC)
        return DP_ECORRUPT;
    if (m->version != DP_STEAL_VERSION)
        return DP_EVERSION;
    if (!valid_geometry(m->nqueues, m->slots, m->max_request) || m->slot_size != slot_size_for(m->max_request) ||
        m->hdr_bytes != hdr_bytes_for(m->nqueues) || m->size != size ||
        size != dp_steal_segment_size(m->nqueues, m->slots, m->max_request))
        return DP_ECORRUPT;
    return 0;
}

int dp_steal_open_mem(void *mem, uint64_t size, int init, uint32_t nqueues, uint32_t slots, uint32_t max_request,
                      uint32_t flags, dp_steal **out)
{
    if (!mem || !out || ((uintptr_t)mem & 63))
        return DP_EINVAL;
    if (init) {
        if (!valid_geometry(nqueues, slots, max_request) || size != dp_steal_segment_size(nqueues, slots, max_request))
            return DP_EINVAL;
        struct meta *m = mem;
        uint64_t hb = hdr_bytes_for(nqueues);
        memset(mem, 0, hb);
        m->version = DP_STEAL_VERSION;
        m->nqueues = nqueues;
        m->slots = slots;
        m->max_request = max_request;
        m->slot_size = slot_size_for(max_request);
        m->flags = flags;
        m->hdr_bytes = hb;
        m->size = size;
        uint32_t ss = m->slot_size;
        for (uint64_t q = 0; q < nqueues; q++)
            for (uint64_t i = 0; i < slots; i++) {
                struct slot *sl = (struct slot *)((char *)mem + hb + (q * slots + i) * ss);
                memset(sl, 0, SLOT_HDR);
                sl->state = MK(i, 0, S_EMPTY);
            }
        struct ctl *c = (struct ctl *)((char *)mem + LINE);
        c->disp_pid = (int32_t)getpid();
        c->disp_start = my_starttime();
        STORE_REL(&m->magic, ST_MAGIC); /* last: attachers check it */
    } else {
        int rc = validate(mem, size);
        if (rc)
            return rc;
    }
    dp_steal *s = calloc(1, sizeof *s);
    if (!s) {
        errno = ENOMEM;
        return DP_ESYS;
    }
    s->base = mem;
    s->m = mem;
    s->c = (struct ctl *)((char *)mem + LINE);
    s->nq = s->m->nqueues;
    s->slots = s->m->slots;
    s->mask = s->slots - 1;
    s->slot_size = s->m->slot_size;
    s->max_req = s->m->max_request;
    s->flags = s->m->flags;
    s->size = size;
    s->pid = (int32_t)getpid();
    s->spin_ns = DEFAULT_SPIN_NS;
    s->me = UINT32_MAX;
    *out = s;
    return 0;
}

void dp_steal_close(dp_steal *s) { free(s); }

uint32_t dp_steal_nqueues(const dp_steal *s) { return s->nq; }
uint32_t dp_steal_slots(const dp_steal *s) { return s->slots; }
uint32_t dp_steal_max_request(const dp_steal *s) { return s->max_req; }
uint32_t dp_steal_flags(const dp_steal *s) { return s->flags; }
void dp_steal_set_spin(dp_steal *s, int64_t spin_ns) { s->spin_ns = spin_ns; }

/* -------------------------------------------------------- dispatcher -- */

/* Wakes whoever should run what was just pushed on q: the owner if it
 * sleeps; with stealing, a sleeping thief when the owner is busy or has a
 * backlog, unless some thief is awake and idle (it will find the work). */
static void wake_for(dp_steal *s, uint32_t q, uint64_t depth)
{
    FENCE();
    struct wwake *o = wwake(s, q);
    if (LOAD_RLX(&o->sleeping)) {
        dp_osdep_futex_wake(&o->futex);
        return;
    }
    int orphan = LOAD_RLX(&o->dead) != 0;
    if (!orphan && (!(s->flags & DP_STEAL_F_STEAL) || (!LOAD_RLX(&o->busy) && depth <= 1)))
        return;
    struct wwake *cand = NULL;
    for (uint32_t i = 1; i < s->nq; i++) {
        struct wwake *w = wwake(s, (q + i) % s->nq);
        if (LOAD_RLX(&w->dead) || !LOAD_RLX(&w->pid))
            continue;
        if (LOAD_RLX(&w->sleeping)) {
            if (!cand)
                cand = w;
        } else if (!LOAD_RLX(&w->busy)) {
            return;
        }
    }
    if (cand)
        dp_osdep_futex_wake(&cand->futex);
}

int dp_steal_push(dp_steal *s, uint32_t q, uint64_t id, uint32_t flow, const char *data, uint32_t len,
                  int64_t timeout_ns)
{
    if (UNLIKELY(q >= s->nq))
        return DP_EINVAL;
    if (UNLIKELY(len > s->max_req))
        return DP_EMSGSIZE;
    struct qprod *p = qprod(s, q);
    uint64_t t = LOAD_RLX(&p->tail);
    struct slot *sl = slot_at(s, q, t);
    uint64_t want = MK(t, 0, S_EMPTY);
    if (UNLIKELY(LOAD_ACQ(&sl->state) != want)) {
        /* Full: the slot still holds position t - slots.  Workers do not
         * signal freed slots (that would cost every request a fence), so
         * the rare full queue is polled. */
        if (timeout_ns == 0)
            return DP_EAGAIN;
        uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : dp_osdep_now_ns() + (uint64_t)timeout_ns;
        uint64_t spin_until = dp_osdep_now_ns() + (uint64_t)(s->spin_ns > 0 ? s->spin_ns : 0);
        while (LOAD_ACQ(&sl->state) != want) {
            uint64_t n = dp_osdep_now_ns();
            if (n >= deadline)
                return DP_ETIMEDOUT;
            if (n >= spin_until) {
                struct timespec ts = {0, FULL_POLL_NS};
                nanosleep(&ts, NULL);
            } else {
                CPU_RELAX();
            }
        }
    }
    sl->id = id;
    sl->len = len;
    sl->flow = flow;
    memcpy((char *)sl + SLOT_HDR, data, len);
    STORE_REL(&sl->state, MK(t, 0, S_FULL));
    STORE_REL(&p->tail, t + 1);
    wake_for(s, q, t + 1 - LOAD_RLX(&qcons(s, q)->head));
    return 0;
}

uint64_t dp_steal_depth(const dp_steal *s, uint32_t q)
{
    if (q >= s->nq)
        return 0;
    uint64_t h = LOAD_ACQ(&qcons(s, q)->head), t = LOAD_ACQ(&qprod(s, q)->tail);
    return t > h ? t - h : 0;
}

static int any_result(dp_ring **rings, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (rings[i] && dp_ring_used(rings[i]))
            return 1;
    return 0;
}

uint32_t dp_steal_ready(dp_ring **rings, uint32_t n, uint32_t *ready)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (rings[i] && dp_ring_used(rings[i]))
            ready[k++] = i;
    return k;
}

int dp_steal_wait_results(dp_steal *s, dp_ring **rings, uint32_t n, int64_t timeout_ns)
{
    if (any_result(rings, n))
        return 1;
    if (timeout_ns == 0)
        return 0;
    uint64_t t0 = dp_osdep_now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : t0 + (uint64_t)timeout_ns;
    uint64_t spin_until = s->spin_ns < 0 ? UINT64_MAX : t0 + (uint64_t)s->spin_ns;
    for (uint32_t i = 1;; i++) {
        if (any_result(rings, n))
            return 1;
        if ((i & 63) == 0) {
            uint64_t t = dp_osdep_now_ns();
            if (t >= deadline)
                return 0;
            if (t >= spin_until) {
                uint32_t seq = LOAD_ACQ(&s->c->result_seq);
                __atomic_store_n(&s->c->disp_sleeping, 1, __ATOMIC_SEQ_CST);
                FENCE();
                if (!any_result(rings, n)) {
                    int64_t slice = (int64_t)(deadline - t);
                    dp_osdep_futex_wait(&s->c->result_seq, seq, slice > SLEEP_SLICE_NS ? SLEEP_SLICE_NS : slice);
                }
                STORE_RLX(&s->c->disp_sleeping, 0);
            }
        }
        CPU_RELAX();
    }
}

int dp_steal_worker_alive(dp_steal *s, uint32_t w)
{
    if (w >= s->nq)
        return DP_EINVAL;
    struct wwake *o = wwake(s, w);
    if (LOAD_ACQ(&o->dead))
        return 0;
    int32_t pid = LOAD_ACQ(&o->pid);
    if (!pid)
        return DP_EAGAIN;
    return dp_osdep_pid_alive(pid, LOAD_ACQ(&o->starttime));
}

int dp_steal_is_dead(const dp_steal *s, uint32_t w) { return w < s->nq && LOAD_ACQ(&wwake(s, w)->dead) ? 1 : 0; }

static void wake_all(dp_steal *s)
{
    for (uint32_t w = 0; w < s->nq; w++)
        dp_osdep_futex_wake(&wwake(s, w)->futex);
}

int dp_steal_reap(dp_steal *s, uint32_t w, uint64_t *ids, uint32_t max_ids)
{
    if (w >= s->nq)
        return DP_EINVAL;
    STORE_REL(&wwake(s, w)->dead, 1);
    STORE_REL(&qcons(s, w)->orphan, 1);
    FENCE();
    int n = 0;
    for (uint32_t q = 0; q < s->nq; q++)
        for (uint64_t i = 0; i < s->slots; i++) {
            struct slot *sl = slot_at(s, q, i);
            uint64_t st = LOAD_ACQ(&sl->state);
            if (ST_STATUS(st) != S_CLAIMED || ST_OWNER(st) != w)
                continue;
            uint64_t id = sl->id;
            if (__atomic_compare_exchange_n(&sl->state, &st, MK(ST_POS(st) + s->slots, 0, S_EMPTY), 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                if ((uint32_t)n < max_ids && ids)
                    ids[n] = id;
                n++;
            }
        }
    wake_all(s);
    return n;
}

void dp_steal_shutdown(dp_steal *s)
{
    STORE_REL(&s->c->shutdown, 1);
    FENCE();
    wake_all(s);
}

uint64_t dp_steal_counter(const dp_steal *s, uint32_t w, int which)
{
    if (w >= s->nq || which < 0 || which > DP_STEAL_C_RESPONDED)
        return 0;
    return LOAD_RLX(&wstat(s, w)->c[which]);
}

/* ------------------------------------------------------------ worker -- */

int dp_steal_register(dp_steal *s, uint32_t w)
{
    if (w >= s->nq)
        return DP_EINVAL;
    struct wwake *o = wwake(s, w);
    if (LOAD_ACQ(&o->dead))
        return DP_ESTATE;
    if (!s->starttime)
        s->starttime = my_starttime();
    int32_t cur = LOAD_ACQ(&o->pid);
    for (;;) {
        if (cur == s->pid)
            break;
        if (cur && dp_osdep_pid_alive(cur, LOAD_ACQ(&o->starttime)))
            return DP_EROLE;
        if (__atomic_compare_exchange_n(&o->pid, &cur, s->pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            break;
    }
    STORE_REL(&o->starttime, s->starttime);
    s->me = w;
    return 0;
}

/* One attempt on queue q as consumer `me`: 1 claimed, 0 empty. */
static int try_queue(dp_steal *s, uint32_t q, uint32_t me, dp_steal_item *out)
{
    struct qcons *c = qcons(s, q);
    for (uint32_t guard = 0; guard < 4 * s->slots + 64; guard++) {
        uint64_t h = LOAD_ACQ(&c->head);
        struct slot *sl = slot_at(s, q, h);
        uint64_t st = LOAD_ACQ(&sl->state);
        int64_t d = pos_diff(ST_POS(st), h & POS_MASK);
        if (d == 0) {
            uint32_t status = ST_STATUS(st);
            if (status == S_FULL) {
                if (__atomic_compare_exchange_n(&sl->state, &st, MK(h, me, S_CLAIMED), 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE)) {
                    /* A failed CAS writes the current head into its
                     * expected value: use a copy, h is our position. */
                    uint64_t expect = h;
                    __atomic_compare_exchange_n(&c->head, &expect, h + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
                    out->id = sl->id;
                    out->len = sl->len;
                    out->flow = sl->flow;
                    out->pos = h;
                    out->queue = q;
                    out->offset = (uint64_t)((char *)sl + SLOT_HDR - s->base);
                    out->stolen = q != me;
                    s->held = 1; /* even if corrupt: the caller can still release it */
                    s->held_q = q;
                    s->held_pos = h;
                    s->held_id = out->id;
                    s->held_owner = me;
                    return UNLIKELY(out->len > s->max_req) ? DP_ECORRUPT : 1;
                }
                continue; /* another consumer won it */
            }
            if (status != S_CLAIMED)
                return 0; /* EMPTY(h): not produced yet */
        } else if (d < 0) {
            return 0; /* the slot still holds the previous lap, so h is not produced */
        }
        /* Position h is already claimed or recycled: head is stale. */
        __atomic_compare_exchange_n(&c->head, &h, h + 1, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
    return DP_ECORRUPT;
}

/* Own queue first; then the others, starting after our own so that thieves
 * spread over victims, if stealing is on or their worker is dead. */
static int try_all(dp_steal *s, uint32_t me, dp_steal_item *out)
{
    int rc;
    if (me < s->nq && (rc = try_queue(s, me, me, out)) != 0)
        return rc;
    int steal = (s->flags & DP_STEAL_F_STEAL) || me >= s->nq;
    for (uint32_t i = 1; i <= s->nq; i++) {
        uint32_t q = (me + i) % (s->nq + (me >= s->nq));
        if (q >= s->nq || q == me)
            continue;
        if (!steal && !LOAD_ACQ(&qcons(s, q)->orphan))
            continue;
        if ((rc = try_queue(s, q, me, out)) != 0)
            return rc;
    }
    return 0;
}

static int dispatcher_gone(dp_steal *s)
{
    return !dp_osdep_pid_alive(LOAD_ACQ(&s->c->disp_pid), LOAD_ACQ(&s->c->disp_start));
}

static void took(dp_steal *s, uint32_t me, const dp_steal_item *it)
{
    if (me < s->nq) {
        STORE_RLX(&wwake(s, me)->busy, 1);
        struct wstat *st = wstat(s, me);
        bump(st, DP_STEAL_C_TAKEN);
        if (it->stolen)
            bump(st, DP_STEAL_C_STOLEN);
    }
}

int dp_steal_take(dp_steal *s, uint32_t me, int64_t timeout_ns, dp_steal_item *out)
{
    if (me > s->nq || !out)
        return DP_EINVAL;
    if (me < s->nq && s->me != me)
        return DP_ESTATE; /* register first */
    if (s->held)
        return DP_ESTATE; /* respond to (or release) the last one first */
    if (me < s->nq)
        STORE_RLX(&wwake(s, me)->busy, 0);
    int rc = try_all(s, me, out);
    if (rc)
        goto done;
    if (timeout_ns == 0 || me == s->nq)
        return LOAD_ACQ(&s->c->shutdown) ? DP_EPEERGONE : DP_EAGAIN;

    struct wwake *w = wwake(s, me);
    uint64_t t0 = dp_osdep_now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : t0 + (uint64_t)timeout_ns;
    uint64_t spin_until = s->spin_ns < 0 ? UINT64_MAX : t0 + (uint64_t)s->spin_ns;
    for (uint32_t i = 1;; i++) {
        if ((rc = try_all(s, me, out)) != 0)
            goto done;
        if ((i & 63) == 0) {
            uint64_t t = dp_osdep_now_ns();
            if (LOAD_ACQ(&s->c->shutdown)) {
                if ((rc = try_all(s, me, out)) != 0)
                    goto done;
                return DP_EPEERGONE;
            }
            if (t >= deadline)
                return DP_ETIMEDOUT;
            if (t >= s->next_check) {
                s->next_check = t + CHECK_NS;
                if (dispatcher_gone(s))
                    return DP_EPEERGONE;
            }
            if (t >= spin_until) {
                uint32_t seq = LOAD_ACQ(&w->futex);
                __atomic_store_n(&w->sleeping, 1, __ATOMIC_SEQ_CST);
                FENCE();
                if ((rc = try_all(s, me, out)) != 0 || LOAD_ACQ(&s->c->shutdown)) {
                    STORE_RLX(&w->sleeping, 0);
                    if (rc)
                        goto done;
                    continue;
                }
                uint64_t until = deadline < s->next_check ? deadline : s->next_check;
                int64_t slice = until > t ? (int64_t)(until - t) : 0;
                if (slice > SLEEP_SLICE_NS)
                    slice = SLEEP_SLICE_NS;
                if (slice > 0) {
                    dp_osdep_futex_wait(&w->futex, seq, slice);
                    bump(wstat(s, me), DP_STEAL_C_SLEEPS);
                }
                STORE_RLX(&w->sleeping, 0);
            }
        }
        CPU_RELAX();
    }
done:
    if (rc < 0)
        return rc;
    took(s, me, out);
    return 0;
}

int dp_steal_release(dp_steal *s)
{
    if (!s->held)
        return DP_ESTATE;
    s->held = 0;
    struct slot *sl = slot_at(s, s->held_q, s->held_pos);
    uint64_t st = MK(s->held_pos, s->held_owner, S_CLAIMED);
    /* Fails only if the dispatcher reaped us as dead: the slot is not ours. */
    if (!__atomic_compare_exchange_n(&sl->state, &st, MK(s->held_pos + s->slots, 0, S_EMPTY), 0, __ATOMIC_RELEASE,
                                     __ATOMIC_RELAXED))
        return DP_ESTATE;
    return 0;
}

int dp_steal_respond(dp_steal *s, dp_ring *ring, uint32_t status, const char *data, uint32_t len)
{
    if (!s->held)
        return DP_ESTATE;
    if (!ring || len > UINT32_MAX - DP_STEAL_RESPONSE_HEADER)
        return DP_EINVAL;
    char *p;
    uint32_t total = DP_STEAL_RESPONSE_HEADER + len;
    int rc = dp_ring_reserve(ring, total, 0, &p);
    /* A full ring: the dispatcher is slow or gone.  Wait in slices so a
     * dead dispatcher is noticed even before it ever read from the ring. */
    while (rc == DP_EAGAIN || rc == DP_ETIMEDOUT) {
        if (dispatcher_gone(s))
            return DP_EPEERGONE;
        rc = dp_ring_reserve(ring, total, 50000000LL, &p);
    }
    if (rc)
        return rc;
    uint64_t id = s->held_id;
    uint32_t hdr32[2] = {status, s->held_owner};
    memcpy(p, &id, 8);
    memcpy(p + 8, hdr32, 8);
    if (len)
        memcpy(p + DP_STEAL_RESPONSE_HEADER, data, len);
    if ((rc = dp_ring_commit(ring, total)) != 0)
        return rc;
    rc = dp_steal_release(s);
    if (s->held_owner < s->nq)
        bump(wstat(s, s->held_owner), DP_STEAL_C_RESPONDED);
    FENCE();
    if (LOAD_RLX(&s->c->disp_sleeping))
        dp_osdep_futex_wake(&s->c->result_seq);
    return rc;
}

/* -------------------------------------------------------- benchmarks -- */

static void fill_payload(char *buf, uint32_t len, uint64_t id)
{
    for (uint32_t k = 0; k < len; k++)
        buf[k] = (char)((id >> (8 * (k & 7))) ^ (k * 131u));
}

int64_t dp_steal_bench_produce(dp_steal *s, uint32_t q, uint64_t first_id, uint64_t n, uint32_t len,
                               int64_t timeout_ns)
{
    if (len > s->max_req)
        return DP_EMSGSIZE;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        errno = ENOMEM;
        return DP_ESYS;
    }
    int64_t rc = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t id = first_id + i;
        fill_payload(buf, len, id);
        rc = dp_steal_push(s, q < s->nq ? q : (uint32_t)(i % s->nq), id, (uint32_t)id, buf, len, timeout_ns);
        if (rc < 0)
            break;
    }
    free(buf);
    return rc < 0 ? rc : (int64_t)n;
}

int64_t dp_steal_bench_consume(dp_steal *s, uint32_t me, uint64_t *ids, uint64_t max_ids, int64_t idle_ns)
{
    dp_steal_item it;
    char expect[256];
    uint64_t n = 0;
    while (n < max_ids) {
        int rc = dp_steal_take(s, me, idle_ns, &it);
        if (rc == DP_ETIMEDOUT || rc == DP_EPEERGONE || rc == DP_EAGAIN)
            break;
        if (rc < 0)
            return rc;
        uint32_t chk = it.len < sizeof expect ? it.len : (uint32_t)sizeof expect;
        fill_payload(expect, chk, it.id);
        int bad = memcmp(s->base + it.offset, expect, chk) != 0 || it.flow != (uint32_t)it.id;
        if ((rc = dp_steal_release(s)) < 0)
            return rc;
        if (bad)
            return DP_ECORRUPT;
        ids[n++] = it.id;
    }
    return (int64_t)n;
}
