/* dataplane fairq: the per-request data path of the control plane's
 * admission control and Deficit Round Robin, for Gateway(native=True).
 * The policy stays in Python (dataplane/control/): weights, quantum, the
 * servers admission plans with, deadlines, what to do with a refusal.  This
 * is the same arithmetic as AdmissionController and DRRScheduler, in the same
 * order of operations, so both paths make bit-identical decisions (tested).
 * It never sleeps, so it is built with the GIL kept (native/fast/).
 *
 * Tenants are small integers, requests are handles (indices the caller maps
 * to its objects).  Return codes: >= 0 a handle or a count, < 0 DP_FQ_*.
 * Part of the shim's stable ABI; plain declarations for cffi's cdef.
 */

#define DP_FQ_EMPTY -1      /* dp_fq_next: nothing queued */
#define DP_FQ_REFUSED -2    /* dp_fq_submit: predicted to miss its deadline */
#define DP_FQ_FULL -3       /* dp_fq_submit: the tenant's queue is full */
#define DP_FQ_EINVAL -4     /* bad tenant, weight, cost or capacity */
#define DP_FQ_NOMEM -5      /* no free request handle */
#define DP_FQ_AGAIN -6      /* dp_fq_next: one was shed, report it and call again */

#define DP_FQ_F_SPARSE 1    /* newly backlogged tenants first (RFC 8290) */

typedef struct dp_fq dp_fq;

/* Room for max_tenants tenants and max_items queued or running requests. */
dp_fq *dp_fq_create(uint32_t max_tenants, uint32_t max_items, double quantum, uint32_t flags);
void dp_fq_destroy(dp_fq *q);

/* Adds tenant t (weight > 0, capacity >= 1), or changes its weight and
 * capacity: the new weight applies from its next turn. */
int dp_fq_tenant(dp_fq *q, uint32_t t, double weight, uint32_t capacity);
/* Servers admission plans with (> 0). */
int dp_fq_set_servers(dp_fq *q, double servers);

/* Admission (when decide != 0) and enqueue in one call.  Returns the
 * request's handle; DP_FQ_REFUSED with the predicted finish in *finish;
 * DP_FQ_FULL after undoing the admission's accounts, as the Python path
 * does.  cost: finite >= 0 (the caller validates); est/upper: the mean and
 * upper service estimates. */
int64_t dp_fq_submit(dp_fq *q, uint32_t t, double cost, double est, double upper, double deadline, double now,
                     int decide, double *finish);

/* The next request in DRR order, accounted as dispatched, or DP_FQ_EMPTY.
 * When shed != 0, a request that cannot finish by its deadline
 * (now + ahead + upper > deadline; ahead: what the worker already holds)
 * is shed instead: refunded, accounted as dropped, its handle freed and
 * written to *gone, and DP_FQ_AGAIN returned, so the caller reports it
 * (its callbacks may submit again) before anything else is dequeued. */
int64_t dp_fq_next(dp_fq *q, double now, double ahead, int shed, int64_t *gone);
/* A dispatched request finished; its handle is free again.  DP_FQ_EINVAL
 * (and nothing changed) for a handle that is not running. */
int dp_fq_done(dp_fq *q, int64_t handle);

/* Introspection. */
uint32_t dp_fq_backlog(const dp_fq *q, uint32_t t);
uint64_t dp_fq_len(const dp_fq *q);
double dp_fq_active_weight(const dp_fq *q);
double dp_fq_work(const dp_fq *q, uint32_t t);   /* the tenant's queued estimate */
double dp_fq_queued(const dp_fq *q);
double dp_fq_inflight(const dp_fq *q);
int64_t dp_fq_n(const dp_fq *q);                 /* requests queued or running */
