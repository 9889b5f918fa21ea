/* Admission control and DRR in one data path; see fairq.h.
 *
 * Each step mirrors a Python method (named in the comments) statement for
 * statement, in the same floating-point order: the tests run the same
 * schedules through both and compare every decision. */
#include <stdint.h>
#include <float.h>
#include <stdlib.h>

#include "fast/fairq.h"

#define NIL (-1)

struct tenant {
    double weight, quantum, deficit, work; /* work: the admission account */
    int64_t head, tail;                     /* FIFO of item handles */
    uint32_t cap, count;
    uint8_t exists, active;
};

enum { ITEM_FREE, ITEM_QUEUED, ITEM_RUNNING };

struct item {
    double cost, est, upper, deadline;
    int64_t next; /* FIFO link while queued, free-list link while free */
    uint32_t tenant;
    uint32_t state; /* ITEM_*: a handle is only acted on in the state it must be in */
};

/* A deque of tenant ids (Python's collections.deque of flows). */
struct tdeque {
    uint32_t *v;
    uint32_t head, n, cap;
};

struct dp_fq {
    uint32_t max_tenants, max_items, flags;
    double quantum, servers, queued, inflight, active_weight;
    int64_t n;     /* AdmissionController.n */
    uint64_t len;  /* queued requests (TenantFlows._len) */
    int64_t free_head;
    struct tenant *t;
    struct item *it;
    struct tdeque old, new_;
};

static int dq_init(struct tdeque *d, uint32_t cap)
{
    d->v = calloc(cap, sizeof *d->v);
    d->head = d->n = 0;
    d->cap = cap;
    return d->v != NULL;
}
static inline uint32_t dq_front(const struct tdeque *d) { return d->v[d->head]; }
static inline void dq_push(struct tdeque *d, uint32_t x) { d->v[(d->head + d->n++) % d->cap] = x; }
static inline void dq_pop(struct tdeque *d)
{
    d->head = (d->head + 1) % d->cap;
    d->n--;
}

dp_fq *dp_fq_create(uint32_t max_tenants, uint32_t max_items, double quantum, uint32_t flags)
{
    if (max_tenants == 0 || max_items == 0 || max_items > (1u << 30) || !(quantum > 0.0))
        return NULL;
    dp_fq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->max_tenants = max_tenants;
    q->max_items = max_items;
    q->flags = flags;
    q->quantum = quantum;
    q->servers = 1.0;
    q->t = calloc(max_tenants, sizeof *q->t);
    q->it = calloc(max_items, sizeof *q->it);
    if (!q->t || !q->it || !dq_init(&q->old, max_tenants) || !dq_init(&q->new_, max_tenants)) {
        dp_fq_destroy(q);
        return NULL;
    }
    for (uint32_t i = 0; i < max_items; i++)
        q->it[i].next = i + 1 < max_items ? (int64_t)i + 1 : NIL;
    q->free_head = 0;
    return q;
}

void dp_fq_destroy(dp_fq *q)
{
    if (!q)
        return;
    free(q->t);
    free(q->it);
    free(q->old.v);
    free(q->new_.v);
    free(q);
}

/* TenantFlows.add_tenant / DRRScheduler.set_weight */
int dp_fq_tenant(dp_fq *q, uint32_t t, double weight, uint32_t capacity)
{
    if (t >= q->max_tenants || !(weight > 0.0 && weight <= DBL_MAX) || capacity == 0)
        return DP_FQ_EINVAL;
    struct tenant *f = &q->t[t];
    if (f->exists && f->count)
        q->active_weight += weight - f->weight;
    f->weight = weight;
    f->quantum = q->quantum * weight;
    f->cap = capacity;
    if (!f->exists) {
        f->exists = 1;
        f->head = f->tail = NIL;
    }
    return 0;
}

int dp_fq_set_servers(dp_fq *q, double servers)
{
    if (!(servers > 0.0))
        return DP_FQ_EINVAL;
    q->servers = servers;
    return 0;
}

/* The account's work less est; sums of floats drift, so an emptied
 * account reads exactly 0 (AdmissionController.dequeued/dropped). */
static inline void take_work(struct tenant *f, double est)
{
    double left = f->work - est;
    f->work = left > 1e-9 * est ? left : 0.0;
}

/* AdmissionController.dropped */
static void acct_dropped(dp_fq *q, struct tenant *f, double est)
{
    take_work(f, est);
    q->queued -= est;
    if (!--q->n)
        q->queued = q->inflight = 0.0;
}

int64_t dp_fq_submit(dp_fq *q, uint32_t t, double cost, double est, double upper, double deadline, double now,
                     int decide, double *finish)
{
    if (t >= q->max_tenants || !q->t[t].exists || !(cost >= 0.0))
        return DP_FQ_EINVAL;
    struct tenant *f = &q->t[t];
    if (decide) { /* AdmissionController.try_admit (fair) */
        double q_i = f->work, fin;
        if ((double)q->n < q->servers) {
            fin = now + upper;
        } else {
            double W = q_i > 0.0 ? q->active_weight : q->active_weight + f->weight;
            fin = now + ((q_i + est) * W / f->weight - est + q->inflight) / q->servers + upper;
        }
        if (fin > deadline) {
            *finish = fin;
            return DP_FQ_REFUSED;
        }
        f->work = q_i + est;
    } else { /* AdmissionController.account_queued */
        f->work += est;
    }
    q->queued += est;
    q->n += 1;
    /* DRRScheduler.enqueue; a full queue is refused (REJECT_NEW) */
    if (f->count >= f->cap || q->free_head == NIL) {
        acct_dropped(q, f, est);
        return f->count >= f->cap ? DP_FQ_FULL : DP_FQ_NOMEM;
    }
    int64_t h = q->free_head;
    struct item *it = &q->it[h];
    q->free_head = it->next;
    it->cost = cost;
    it->est = est;
    it->upper = upper;
    it->deadline = deadline;
    it->tenant = t;
    it->state = ITEM_QUEUED;
    it->next = NIL;
    if (f->tail == NIL)
        f->head = h;
    else
        q->it[f->tail].next = h;
    f->tail = h;
    q->len++;
    if (f->count++ == 0)
        q->active_weight += f->weight;
    if (!f->active) {
        f->active = 1;
        if (q->flags & DP_FQ_F_SPARSE) {
            f->deficit = f->quantum;
            dq_push(&q->new_, t);
        } else {
            if (!q->old.n)
                f->deficit = f->quantum;
            dq_push(&q->old, t);
        }
    }
    return h;
}

static int64_t pop_head(dp_fq *q, struct tenant *f)
{
    int64_t h = f->head;
    f->head = q->it[h].next;
    if (f->head == NIL)
        f->tail = NIL;
    f->count--;
    q->len--;
    return h;
}

static inline void leave(struct tenant *f)
{
    f->deficit = 0.0;
    f->active = 0;
}

static inline void credit_old_head(dp_fq *q)
{
    if (q->old.n) {
        struct tenant *h = &q->t[dq_front(&q->old)];
        h->deficit += h->quantum;
    }
}

/* Serves f's head if f's deficit covers its cost: its handle, else NIL.
 * The head of both of DRRScheduler's loops. */
static int64_t serve(dp_fq *q, struct tenant *f)
{
    double c = q->it[f->head].cost;
    if (!(c <= f->deficit))
        return NIL;
    f->deficit -= c;
    int64_t h = pop_head(q, f);
    if (!f->count)
        q->active_weight -= f->weight;
    return h;
}

/* DRRScheduler._dequeue_new */
static int64_t dequeue_new(dp_fq *q)
{
    while (q->new_.n) {
        uint32_t id = dq_front(&q->new_);
        struct tenant *f = &q->t[id];
        if (f->count) {
            int64_t h = serve(q, f);
            if (h != NIL) {
                if (!f->count) {
                    dq_pop(&q->new_);
                    if (q->old.n)
                        dq_push(&q->old, id); /* parked until its turn */
                    else
                        leave(f);
                }
                return h;
            }
        }
        dq_pop(&q->new_);
        if (!f->count && !q->old.n) {
            leave(f);
            continue;
        }
        if (!q->old.n)
            f->deficit += f->quantum;
        dq_push(&q->old, id);
    }
    return NIL;
}

/* DRRScheduler.dequeue */
static int64_t dequeue(dp_fq *q)
{
    if (q->new_.n) {
        int64_t h = dequeue_new(q);
        if (h != NIL)
            return h;
    }
    while (q->old.n) {
        uint32_t id = dq_front(&q->old);
        struct tenant *f = &q->t[id];
        if (!f->count) {
            leave(f);
            dq_pop(&q->old);
            credit_old_head(q);
            continue;
        }
        int64_t h = serve(q, f);
        if (h != NIL) {
            if (!f->count) { /* an emptied tenant leaves the round, banking nothing */
                leave(f);
                dq_pop(&q->old);
                credit_old_head(q);
            }
            return h;
        }
        dq_pop(&q->old); /* rotate(-1) */
        dq_push(&q->old, id);
        credit_old_head(q);
    }
    return NIL;
}

static void free_item(dp_fq *q, int64_t h)
{
    q->it[h].state = ITEM_FREE;
    q->it[h].next = q->free_head;
    q->free_head = h;
}

int64_t dp_fq_next(dp_fq *q, double now, double ahead, int shed, int64_t *gone)
{
    int64_t h = dequeue(q);
    if (h == NIL)
        return DP_FQ_EMPTY;
    struct item *it = &q->it[h];
    struct tenant *f = &q->t[it->tenant];
    if (shed && now + ahead + it->upper > it->deadline) {
        if (f->active) /* DRRScheduler.refund */
            f->deficit += it->cost;
        acct_dropped(q, f, it->est);
        free_item(q, h);
        /* One at a time: the caller reports it (its callback may submit
         * again) before anything else is dequeued, as the Python path does. */
        *gone = h;
        return DP_FQ_AGAIN;
    }
    /* AdmissionController.dequeued */
    take_work(f, it->est);
    q->queued -= it->est;
    q->inflight += it->est;
    it->state = ITEM_RUNNING;
    return h;
}

/* AdmissionController.completed */
int dp_fq_done(dp_fq *q, int64_t handle)
{
    if (handle < 0 || handle >= (int64_t)q->max_items || q->it[handle].state != ITEM_RUNNING)
        return DP_FQ_EINVAL;
    double est = q->it[handle].est;
    if (--q->n)
        q->inflight -= est;
    else
        q->queued = q->inflight = 0.0;
    free_item(q, handle);
    return 0;
}

uint32_t dp_fq_backlog(const dp_fq *q, uint32_t t) { return t < q->max_tenants ? q->t[t].count : 0; }
uint64_t dp_fq_len(const dp_fq *q) { return q->len; }
double dp_fq_active_weight(const dp_fq *q) { return q->active_weight; }
double dp_fq_work(const dp_fq *q, uint32_t t) { return t < q->max_tenants ? q->t[t].work : 0.0; }
double dp_fq_queued(const dp_fq *q) { return q->queued; }
double dp_fq_inflight(const dp_fq *q) { return q->inflight; }
int64_t dp_fq_n(const dp_fq *q) { return q->n; }
