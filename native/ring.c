/* dataplane ring: SPSC ring of variable-length messages in shared memory.
 *
 * Layout of a segment (see ring.h for the ABI):
 *   page 0   header: immutable line, producer line, consumer line, and one
 *            line per endpoint (pid, start time, closed flag)
 *   page 1.. data area of `capacity` bytes (a power of two)
 * Records are {u32 len, u32 flags} + payload, padded to 8 bytes, and never
 * wrap: when one does not fit before the end, a PAD record fills the rest.
 * head/tail are free-running byte indices; head is stored with release
 * semantics only after the whole record is written, which is what makes a
 * message visible all at once (and a killed producer's reservation never).
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal/atomics.h"
#include "internal/osdep.h"
#include "ring.h"

#define DP_MAGIC 0x474e495250414454ULL /* "TDAPRING" */
#define LINE 128                       /* adjacent-line prefetch pairs lines */
#define HDR_BYTES 4096
#define REC_HDR 8u
#define ALIGN 8u
#define PAD_FLAG 1u
#define CHECK_NS 1000000LL      /* how often a waiter checks the peer is alive */
#define SLEEP_SLICE_NS 10000000LL
#define DEFAULT_SPIN_NS 50000LL /* spin this long before sleeping */

struct endpoint {
    int32_t pid;
    uint32_t closed;
    uint64_t starttime; /* guards against pid reuse */
};

struct seg_hdr {
    union {
        struct {
            uint64_t magic;
            uint32_t version;
            uint32_t hdr_size;
            uint64_t capacity;
            uint64_t max_message;
            int32_t owner_pid;
            uint32_t flags;
        } m;
        char line[LINE];
    } meta;
    /* The producer's line also holds what the producer reads on every send
     * (cons_sleeping), so the hot path touches no consumer-owned line. */
    union {
        struct {
            uint64_t head;
            uint32_t cons_sleeping;
            uint32_t data_futex;
            uint32_t cons_never_sleeps; /* the consumer busy-polls */
        } p;
        char line[LINE];
    } prod;
    union {
        struct {
            uint64_t tail;
            uint32_t prod_sleeping;
            uint32_t space_futex;
            uint32_t prod_never_sleeps; /* the producer busy-polls */
        } c;
        char line[LINE];
    } cons;
    union {
        struct endpoint e;
        char line[LINE];
    } prod_ep;
    union {
        struct endpoint e;
        char line[LINE];
    } cons_ep;
};

_Static_assert(sizeof(struct seg_hdr) <= HDR_BYTES, "header fits its page");

struct rec {
    uint32_t len;
    uint32_t flags;
};

struct dp_ring {
    struct seg_hdr *hdr;
    char *data;
    uint64_t cap, mask, max_msg, map_size;
    int owns_map;
    int is_prod, is_cons;
    int32_t pid;
    /* producer state */
    uint64_t head, tail_cache;
    int reserved;
    uint64_t res_start; /* head at reserve time */
    uint32_t res_len;
    /* consumer state */
    uint64_t tail, head_cache;
    int peeked;
    uint32_t peek_len;
    /* waiting */
    int64_t spin_ns;
    uint64_t want;      /* bytes the producer waits for */
    int peer_gone;      /* set by dp_ring_mark_peer_gone, maybe from another thread */
    uint64_t next_check;
};

/* ------------------------------------------------------------ helpers -- */

uint64_t dp_now_ns(void) { return dp_osdep_now_ns(); }

uint64_t dp_bench_ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#else
    return dp_osdep_now_ns();
#endif
}

static inline uint64_t rec_bytes(uint64_t len) { return (REC_HDR + len + ALIGN - 1) & ~(uint64_t)(ALIGN - 1); }

/* Publishes an index.  The store must be ordered before reading the peer's
 * sleeping flag (the waiter does the mirror image) or a wake-up can be lost;
 * a locked exchange is that full barrier, and cheaper than store + mfence.
 * A peer that busy-polls never sleeps, so a plain release store does: the
 * locked exchange would stall this core until the line came back from the
 * peer polling it, once per message.  (A peer leaving busy-poll mode raises
 * its flag before it first sleeps; a publish racing with that switch can
 * cost it one sleep slice, never a message.) */
static inline void store_and_wake(uint64_t *index, uint64_t value, const uint32_t *never_sleeps, uint32_t *sleeping,
                                  uint32_t *fx)
{
    if (LIKELY(LOAD_RLX(never_sleeps))) {
        STORE_REL(index, value);
        return;
    }
    __atomic_exchange_n(index, value, __ATOMIC_SEQ_CST);
    if (UNLIKELY(LOAD_RLX(sleeping)))
        dp_osdep_futex_wake(fx);
}

/* Tells the peer whether this end's waits can sleep (see store_and_wake). */
static void advertise(dp_ring *r, uint32_t never)
{
    if (r->is_cons)
        __atomic_store_n(&r->hdr->prod.p.cons_never_sleeps, never, __ATOMIC_SEQ_CST);
    if (r->is_prod)
        __atomic_store_n(&r->hdr->cons.c.prod_never_sleeps, never, __ATOMIC_SEQ_CST);
}

static void advertise_spin(dp_ring *r) { advertise(r, r->spin_ns < 0); }

static struct endpoint *peer_ep(dp_ring *r)
{
    if (r->is_cons && !r->is_prod)
        return &r->hdr->prod_ep.e;
    if (r->is_prod && !r->is_cons)
        return &r->hdr->cons_ep.e;
    return NULL; /* both ends in this handle, or neither yet */
}

/* 1 alive, 0 gone, DP_EAGAIN no peer yet. */
static int peer_state(dp_ring *r, int check_pid)
{
    if (LOAD_ACQ(&r->peer_gone))
        return 0;
    struct endpoint *e = peer_ep(r);
    if (!e)
        return 1;
    if (LOAD_ACQ(&e->closed))
        return 0;
    int32_t pid = LOAD_ACQ(&e->pid);
    if (pid == 0)
        return DP_EAGAIN;
    if (!check_pid)
        return 1;
    int alive = dp_osdep_pid_alive(pid, LOAD_RLX(&e->starttime));
    if (alive == 0)
        STORE_REL(&r->peer_gone, 1); /* dead stays dead: later calls need not look again */
    return alive;
}

static int claim(dp_ring *r, struct endpoint *e)
{
    int32_t expect = 0;
    if (!__atomic_compare_exchange_n(&e->pid, &expect, r->pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
        expect != r->pid)
        return DP_EROLE;
    char st;
    uint64_t start = 0;
    dp_osdep_proc_stat(r->pid, &st, &start);
    STORE_REL(&e->starttime, start);
    return 0;
}

static inline int as_producer(dp_ring *r)
{
    if (UNLIKELY(!r->is_prod)) {
        int rc = claim(r, &r->hdr->prod_ep.e);
        if (rc)
            return rc;
        r->is_prod = 1;
        advertise_spin(r);
        r->head = LOAD_ACQ(&r->hdr->prod.p.head);
        r->tail_cache = LOAD_ACQ(&r->hdr->cons.c.tail);
    }
    return 0;
}

static inline int as_consumer(dp_ring *r)
{
    if (UNLIKELY(!r->is_cons)) {
        int rc = claim(r, &r->hdr->cons_ep.e);
        if (rc)
            return rc;
        r->is_cons = 1;
        advertise_spin(r);
        r->tail = LOAD_ACQ(&r->hdr->cons.c.tail);
        r->head_cache = r->tail;
    }
    return 0;
}

/* Waits until cond(r) holds: spins for spin_ns, then sleeps on a futex in
 * slices so that a dead peer is noticed within CHECK_NS + a slice. */
static int wait_until(dp_ring *r, int (*cond)(dp_ring *), uint32_t *fx, uint32_t *sleeping, int64_t timeout_ns)
{
    uint64_t t0 = dp_now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : t0 + (uint64_t)timeout_ns;
    uint64_t spin_until = r->spin_ns < 0 ? UINT64_MAX : t0 + (uint64_t)r->spin_ns;
    uint64_t next_check = t0 + CHECK_NS;
    /* The clock is read every 64 polls; with no spin at all, at once. */
    uint32_t every = r->spin_ns == 0 ? 0 : 63;
    for (uint32_t i = 1;; i++) {
        int c = cond(r);
        if (c)
            return c < 0 ? c : 0;
        if ((i & every) == 0) {
            uint64_t t = dp_now_ns();
            int check = t >= next_check;
            if (peer_state(r, check) == 0)
                return (c = cond(r)) ? (c < 0 ? c : 0) : DP_EPEERGONE;
            if (check)
                next_check = t + CHECK_NS;
            if (t >= deadline)
                return DP_ETIMEDOUT;
            if (t >= spin_until) {
                uint32_t seq = LOAD_ACQ(fx);
                __atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
                FENCE();
                if (!cond(r)) {
                    uint64_t until = next_check < deadline ? next_check : deadline;
                    int64_t slice = until > t ? (int64_t)(until - t) : 0;
                    if (slice > SLEEP_SLICE_NS)
                        slice = SLEEP_SLICE_NS;
                    if (slice > 0)
                        dp_osdep_futex_wait(fx, seq, slice);
                }
                STORE_RLX(sleeping, 0);
            }
        }
        CPU_RELAX();
    }
}

/* --------------------------------------------------------- lifecycle -- */

uint64_t dp_ring_segment_size(uint64_t capacity) { return HDR_BYTES + capacity; }

static int valid_geometry(uint64_t cap, uint64_t max_msg)
{
    return cap >= 64 && (cap & (cap - 1)) == 0 && cap <= (1ull << 40) && max_msg > 0 &&
           max_msg <= UINT32_MAX - 64 && 2 * rec_bytes(max_msg) <= cap;
}

static dp_ring *new_handle(void *mem, uint64_t size, int owns)
{
    dp_ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->hdr = mem;
    r->data = (char *)mem + HDR_BYTES;
    r->cap = r->hdr->meta.m.capacity;
    r->mask = r->cap - 1;
    r->max_msg = r->hdr->meta.m.max_message;
    r->map_size = size;
    r->owns_map = owns;
    r->pid = (int32_t)getpid();
    r->spin_ns = DEFAULT_SPIN_NS;
    return r;
}

static void init_header(void *mem, uint64_t cap, uint64_t max_msg)
{
    struct seg_hdr *h = mem;
    memset(h, 0, HDR_BYTES);
    h->meta.m.version = DP_RING_VERSION;
    h->meta.m.hdr_size = HDR_BYTES;
    h->meta.m.capacity = cap;
    h->meta.m.max_message = max_msg;
    h->meta.m.owner_pid = (int32_t)getpid();
    STORE_REL(&h->meta.m.magic, DP_MAGIC); /* last: attachers wait for it */
}

static int validate(const void *mem, uint64_t size)
{
    const struct seg_hdr *h = mem;
    if (size < HDR_BYTES)
        return DP_ECORRUPT;
    if (LOAD_ACQ(&h->meta.m.magic) != DP_MAGIC)
        return DP_ECORRUPT;
    if (h->meta.m.version != DP_RING_VERSION)
        return DP_EVERSION;
    uint64_t cap = h->meta.m.capacity;
    if (h->meta.m.hdr_size != HDR_BYTES || !valid_geometry(cap, h->meta.m.max_message) || size != HDR_BYTES + cap)
        return DP_ECORRUPT;
    uint64_t head = h->prod.p.head, tail = h->cons.c.tail;
    if ((head | tail) & (ALIGN - 1) || head - tail > cap)
        return DP_ECORRUPT;
    return 0;
}

/* A creator may still be writing the header: give it a moment. */
static int validate_wait(const void *mem, uint64_t size)
{
    int rc = validate(mem, size);
    for (int i = 0; rc == DP_ECORRUPT && i < 100 && LOAD_ACQ(&((const struct seg_hdr *)mem)->meta.m.magic) == 0; i++) {
        usleep(1000);
        rc = validate(mem, size);
    }
    return rc;
}

static int shm_path_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n < 200 && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

int dp_ring_create(const char *name, uint64_t capacity, uint64_t max_message, dp_ring **out)
{
    if (!shm_path_ok(name) || !valid_geometry(capacity, max_message) || !out)
        return DP_EINVAL;
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return DP_ESYS;
    uint64_t size = dp_ring_segment_size(capacity);
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        close(fd);
        shm_unlink(path);
        errno = e;
        return DP_ESYS;
    }
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (mem == MAP_FAILED) {
        shm_unlink(path);
        errno = e;
        return DP_ESYS;
    }
    init_header(mem, capacity, max_message);
    dp_ring *r = new_handle(mem, size, 1);
    if (!r) {
        munmap(mem, size);
        shm_unlink(path);
        errno = ENOMEM;
        return DP_ESYS;
    }
    *out = r;
    return 0;
}

int dp_ring_attach(const char *name, dp_ring **out)
{
    if (!shm_path_ok(name) || !out)
        return DP_EINVAL;
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return DP_ESYS;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return DP_ESYS;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < HDR_BYTES) {
        close(fd);
        return DP_ECORRUPT;
    }
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (mem == MAP_FAILED) {
        errno = e;
        return DP_ESYS;
    }
    int rc = validate_wait(mem, size);
    if (rc) {
        munmap(mem, size);
        return rc;
    }
    dp_ring *r = new_handle(mem, size, 1);
    if (!r) {
        munmap(mem, size);
        errno = ENOMEM;
        return DP_ESYS;
    }
    *out = r;
    return 0;
}

int dp_ring_open_mem(void *mem, uint64_t size, int init, uint64_t capacity, uint64_t max_message, dp_ring **out)
{
    if (!mem || !out || ((uintptr_t)mem & 63))
        return DP_EINVAL;
    if (init) {
        if (!valid_geometry(capacity, max_message) || size != dp_ring_segment_size(capacity))
            return DP_EINVAL;
        init_header(mem, capacity, max_message);
    } else {
        int rc = validate_wait(mem, size);
        if (rc)
            return rc;
    }
    dp_ring *r = new_handle(mem, size, 0);
    if (!r) {
        errno = ENOMEM;
        return DP_ESYS;
    }
    *out = r;
    return 0;
}

void dp_ring_close(dp_ring *r)
{
    if (!r)
        return;
    struct seg_hdr *h = r->hdr;
    /* A forked child that inherited the handle must not close its parent's end. */
    if (r->pid != (int32_t)getpid())
        r->is_prod = r->is_cons = 0;
    if (r->is_prod)
        STORE_REL(&h->prod_ep.e.closed, 1);
    if (r->is_cons)
        STORE_REL(&h->cons_ep.e.closed, 1);
    if (r->is_prod || r->is_cons) {
        dp_osdep_futex_wake(&h->prod.p.data_futex);
        dp_osdep_futex_wake(&h->cons.c.space_futex);
    }
    if (r->owns_map)
        munmap(h, r->map_size);
    free(r);
}

int dp_ring_unlink(const char *name)
{
    if (!shm_path_ok(name))
        return DP_EINVAL;
    char path[256];
    snprintf(path, sizeof path, "/%s", name);
    return shm_unlink(path) == 0 ? 0 : DP_ESYS;
}

uint64_t dp_ring_capacity(const dp_ring *r) { return r->cap; }
uint64_t dp_ring_max_message(const dp_ring *r) { return r->max_msg; }
void *dp_ring_base(const dp_ring *r) { return r->hdr; }
uint64_t dp_ring_size(const dp_ring *r) { return r->map_size; }
int dp_ring_owner_pid(const dp_ring *r) { return r->hdr->meta.m.owner_pid; }
void dp_ring_set_spin(dp_ring *r, int64_t spin_ns)
{
    /* A forked child's inherited handle must not rewrite its parent's flags. */
    int mine = r->pid == (int32_t)getpid();
    if (spin_ns >= 0 && mine)
        advertise(r, 0); /* "may sleep" is visible before any wait can sleep */
    r->spin_ns = spin_ns;
    if (spin_ns < 0 && mine)
        advertise(r, 1);
}
int64_t dp_ring_spin(const dp_ring *r) { return r->spin_ns; }

uint64_t dp_ring_used(const dp_ring *r)
{
    return LOAD_ACQ(&r->hdr->prod.p.head) - LOAD_ACQ(&r->hdr->cons.c.tail);
}

int dp_ring_peer_alive(dp_ring *r) { return peer_state(r, 1); }

int dp_ring_peer_local(dp_ring *r)
{
    struct endpoint *e = peer_ep(r);
    if (!e)
        return r->is_prod && r->is_cons;
    return LOAD_RLX(&e->pid) == r->pid;
}

void dp_ring_mark_peer_gone(dp_ring *r)
{
    STORE_REL(&r->peer_gone, 1);
    dp_osdep_futex_wake(&r->hdr->prod.p.data_futex);
    dp_osdep_futex_wake(&r->hdr->cons.c.space_futex);
}

uint64_t dp_ring_layout(int field)
{
    switch (field) {
    case DP_LAYOUT_HEAD_OFFSET: return offsetof(struct seg_hdr, prod.p.head);
    case DP_LAYOUT_TAIL_OFFSET: return offsetof(struct seg_hdr, cons.c.tail);
    case DP_LAYOUT_DATA_OFFSET: return HDR_BYTES;
    case DP_LAYOUT_RECORD_HEADER: return REC_HDR;
    case DP_LAYOUT_ALIGN: return ALIGN;
    case DP_LAYOUT_PAD_FLAG: return PAD_FLAG;
    default: return UINT64_MAX;
    }
}

/* ---------------------------------------------------------- producer -- */

/* Bytes a record of `need` bytes consumes at head (with the PAD it needs). */
static inline uint64_t footprint(const dp_ring *r, uint64_t head, uint64_t need)
{
    uint64_t contig = r->cap - (head & r->mask);
    return need <= contig ? need : contig + need;
}

/* 1 if `bytes` are free, 0 if not, DP_ECORRUPT if the consumer's index lies. */
static inline int have_room(dp_ring *r, uint64_t bytes)
{
    if (LIKELY(r->cap - (r->head - r->tail_cache) >= bytes))
        return 1;
    uint64_t t = LOAD_ACQ(&r->hdr->cons.c.tail);
    if (UNLIKELY(r->head - t > r->cap || (t & (ALIGN - 1))))
        return DP_ECORRUPT;
    r->tail_cache = t;
    return r->cap - (r->head - t) >= bytes;
}

static int room_cond(dp_ring *r) { return have_room(r, r->want); }

static int wait_room(dp_ring *r, uint64_t bytes, int64_t timeout_ns)
{
    int ok = have_room(r, bytes);
    if (LIKELY(ok == 1))
        return 0;
    if (ok < 0)
        return ok;
    if (timeout_ns == 0) {
        /* A full ring whose consumer is gone will never drain: say so. */
        uint64_t t = dp_now_ns();
        int check = t >= r->next_check;
        if (check)
            r->next_check = t + CHECK_NS;
        return peer_state(r, check) == 0 ? DP_EPEERGONE : DP_EAGAIN;
    }
    r->want = bytes;
    return wait_until(r, room_cond, &r->hdr->cons.c.space_futex, &r->hdr->cons.c.prod_sleeping, timeout_ns);
}

/* Places a record header at head (writing a PAD first if it would wrap) and
 * returns where the payload goes.  Nothing is visible until publish(). */
static inline char *place(dp_ring *r, uint32_t len)
{
    uint64_t pos = r->head & r->mask;
    uint64_t need = rec_bytes(len);
    if (UNLIKELY(r->cap - pos < need)) {
        struct rec *pad = (struct rec *)(r->data + pos);
        pad->len = (uint32_t)(r->cap - pos - REC_HDR);
        pad->flags = PAD_FLAG;
        r->head += r->cap - pos;
        pos = 0;
    }
    struct rec *h = (struct rec *)(r->data + pos);
    h->len = len;
    h->flags = 0;
    r->head += need;
    return (char *)(h + 1);
}

static inline void publish(dp_ring *r)
{
    store_and_wake(&r->hdr->prod.p.head, r->head, &r->hdr->prod.p.cons_never_sleeps, &r->hdr->prod.p.cons_sleeping,
                   &r->hdr->prod.p.data_futex);
}

static inline int producer_check(dp_ring *r)
{
    int rc = as_producer(r);
    if (UNLIKELY(rc))
        return rc;
    if (UNLIKELY(r->reserved))
        return DP_ESTATE;
    /* Sending to a consumer that closed would lose the message silently. */
    if (UNLIKELY(LOAD_RLX(&r->peer_gone) || (!r->is_cons && LOAD_RLX(&r->hdr->cons_ep.e.closed))))
        return DP_EPEERGONE;
    return 0;
}

int dp_ring_send(dp_ring *r, const char *data, uint32_t len, int64_t timeout_ns)
{
    int rc = producer_check(r);
    if (UNLIKELY(rc))
        return rc;
    if (UNLIKELY(len > r->max_msg))
        return DP_EMSGSIZE;
    rc = wait_room(r, footprint(r, r->head, rec_bytes(len)), timeout_ns);
    if (UNLIKELY(rc))
        return rc;
    memcpy(place(r, len), data, len);
    publish(r);
    return 0;
}

int dp_ring_reserve(dp_ring *r, uint32_t len, int64_t timeout_ns, char **ptr)
{
    int rc = producer_check(r);
    if (UNLIKELY(rc))
        return rc;
    if (UNLIKELY(len > r->max_msg))
        return DP_EMSGSIZE;
    rc = wait_room(r, footprint(r, r->head, rec_bytes(len)), timeout_ns);
    if (UNLIKELY(rc))
        return rc;
    r->res_start = r->head;
    r->res_len = len;
    *ptr = place(r, len);
    r->head = r->res_start; /* not ours until commit */
    r->reserved = 1;
    return 0;
}

int dp_ring_commit(dp_ring *r, uint32_t len)
{
    if (!r->reserved || len > r->res_len)
        return r->reserved ? DP_EMSGSIZE : DP_ESTATE;
    r->reserved = 0;
    /* Re-place with the final length; the payload is already where place()
     * puts it, since the position depends only on head and the reservation
     * length bounded the footprint. */
    uint64_t pos = r->head & r->mask;
    if (r->cap - pos < rec_bytes(r->res_len)) {
        struct rec *pad = (struct rec *)(r->data + pos);
        pad->len = (uint32_t)(r->cap - pos - REC_HDR);
        pad->flags = PAD_FLAG;
        r->head += r->cap - pos;
        pos = 0;
    }
    struct rec *h = (struct rec *)(r->data + pos);
    h->len = len;
    h->flags = 0;
    r->head += rec_bytes(len);
    publish(r);
    return 0;
}

int dp_ring_abort(dp_ring *r)
{
    if (!r->reserved)
        return DP_ESTATE;
    r->reserved = 0;
    return 0;
}

/* Room test for n messages without writing them: the exact footprint,
 * PADs included. */
static uint64_t bulk_footprint(const dp_ring *r, const uint32_t *lens, uint32_t n, uint32_t fixed)
{
    uint64_t h = r->head;
    for (uint32_t i = 0; i < n; i++)
        h += footprint(r, h, rec_bytes(lens ? lens[i] : fixed));
    return h - r->head;
}

static int send_many(dp_ring *r, const char *buf, const uint32_t *lens, uint32_t fixed, uint32_t n, int bulk,
                     int64_t timeout_ns)
{
    int rc = producer_check(r);
    if (UNLIKELY(rc))
        return rc;
    if (n == 0)
        return 0;
    if (n > INT_MAX)
        return DP_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if ((lens ? lens[i] : fixed) > r->max_msg)
            return DP_EMSGSIZE;
    if (bulk) {
        uint64_t total = bulk_footprint(r, lens, n, fixed);
        if (total > r->cap)
            return DP_EMSGSIZE;
        rc = wait_room(r, total, timeout_ns);
        if (rc)
            return rc;
    } else {
        uint32_t l0 = lens ? lens[0] : fixed;
        rc = wait_room(r, footprint(r, r->head, rec_bytes(l0)), timeout_ns);
        if (rc)
            return rc;
    }
    uint32_t sent = 0;
    for (; sent < n; sent++) {
        uint32_t l = lens ? lens[sent] : fixed;
        if (!bulk && sent > 0 && have_room(r, footprint(r, r->head, rec_bytes(l))) != 1)
            break;
        char *dst = place(r, l);
        __builtin_prefetch(dst + 2048, 1, 0);
        memcpy(dst, buf, l);
        buf += l;
    }
    publish(r);
    return (int)sent;
}

int dp_ring_send_bulk(dp_ring *r, const char *buf, const uint32_t *lens, uint32_t n, int64_t timeout_ns)
{
    return send_many(r, buf, lens, 0, n, 1, timeout_ns);
}

int dp_ring_send_burst(dp_ring *r, const char *buf, const uint32_t *lens, uint32_t n, int64_t timeout_ns)
{
    return send_many(r, buf, lens, 0, n, 0, timeout_ns);
}

int dp_ring_send_records(dp_ring *r, const char *buf, uint32_t rec_size, uint32_t n, int64_t timeout_ns)
{
    return send_many(r, buf, NULL, rec_size, n, 0, timeout_ns);
}

/* ---------------------------------------------------------- consumer -- */

/* Finds the next message without waiting: 1 found, 0 empty, or an error.
 * Everything read from the segment is validated: the producer may be
 * hostile or may have died mid-way. */
static inline int next_record(dp_ring *r, char **ptr, uint32_t *len)
{
    for (;;) {
        if (r->tail == r->head_cache) {
            /* The next record's line will be wanted right after head moves:
             * fetching both at once overlaps the two cache misses. */
            __builtin_prefetch(r->data + (r->tail & r->mask), 0, 3);
            uint64_t h = LOAD_ACQ(&r->hdr->prod.p.head);
            if (h == r->tail)
                return 0;
            if (UNLIKELY(h - r->tail > r->cap || (h & (ALIGN - 1))))
                return DP_ECORRUPT;
            r->head_cache = h;
        }
        uint64_t pos = r->tail & r->mask;
        struct rec *h = (struct rec *)(r->data + pos);
        uint32_t l = LOAD_RLX(&h->len), f = LOAD_RLX(&h->flags);
        if (UNLIKELY(f & PAD_FLAG)) {
            if (pos + REC_HDR + l != r->cap || r->head_cache - r->tail < r->cap - pos)
                return DP_ECORRUPT;
            r->tail += r->cap - pos;
            continue;
        }
        uint64_t need = rec_bytes(l);
        if (UNLIKELY(f != 0 || l > r->max_msg || need > r->cap - pos || need > r->head_cache - r->tail))
            return DP_ECORRUPT;
        *ptr = (char *)(h + 1);
        *len = l;
        return 1;
    }
}

static inline void release_to(dp_ring *r, uint64_t tail)
{
    r->tail = tail;
    store_and_wake(&r->hdr->cons.c.tail, tail, &r->hdr->cons.c.prod_never_sleeps, &r->hdr->cons.c.prod_sleeping,
                   &r->hdr->cons.c.space_futex);
}

static int data_cond(dp_ring *r)
{
    char *p;
    uint32_t l;
    return next_record(r, &p, &l);
}

static inline int consumer_next(dp_ring *r, int64_t timeout_ns, char **ptr, uint32_t *len)
{
    int rc = as_consumer(r);
    if (UNLIKELY(rc))
        return rc;
    if (UNLIKELY(r->peeked))
        return DP_ESTATE;
    rc = next_record(r, ptr, len);
    if (LIKELY(rc == 1))
        return 0;
    if (rc < 0)
        return rc;
    if (timeout_ns == 0) {
        uint64_t t = dp_now_ns();
        int check = t >= r->next_check;
        if (check)
            r->next_check = t + CHECK_NS;
        return peer_state(r, check) == 0 ? DP_EPEERGONE : DP_EAGAIN;
    }
    rc = wait_until(r, data_cond, &r->hdr->prod.p.data_futex, &r->hdr->prod.p.cons_sleeping, timeout_ns);
    if (rc)
        return rc;
    rc = next_record(r, ptr, len);
    return rc == 1 ? 0 : (rc < 0 ? rc : DP_EAGAIN);
}

int dp_ring_peek(dp_ring *r, int64_t timeout_ns, char **ptr)
{
    uint32_t len;
    int rc = consumer_next(r, timeout_ns, ptr, &len);
    if (rc)
        return rc;
    r->peeked = 1;
    r->peek_len = len;
    return (int)len;
}

int dp_ring_release(dp_ring *r)
{
    if (!r->peeked)
        return DP_ESTATE;
    r->peeked = 0;
    release_to(r, r->tail + rec_bytes(r->peek_len));
    return 0;
}

int dp_ring_recv(dp_ring *r, char *buf, uint32_t cap, int64_t timeout_ns)
{
    char *p;
    uint32_t len;
    int rc = consumer_next(r, timeout_ns, &p, &len);
    if (UNLIKELY(rc))
        return rc;
    if (UNLIKELY(len > cap))
        return DP_EMSGSIZE; /* the message stays for a bigger buffer */
    memcpy(buf, p, len);
    release_to(r, r->tail + rec_bytes(len));
    return (int)len;
}

static int recv_many(dp_ring *r, char *buf, uint64_t cap, uint32_t *lens, uint32_t fixed, uint32_t max_n,
                     int64_t timeout_ns)
{
    char *p;
    uint32_t len;
    if (max_n == 0)
        return 0;
    if (max_n > INT_MAX)
        return DP_EINVAL;
    int rc = consumer_next(r, timeout_ns, &p, &len);
    if (rc)
        return rc;
    uint32_t n = 0;
    uint64_t off = 0;
    do {
        if (fixed ? len != fixed : len > cap - off)
            break;
        __builtin_prefetch(p + 2048, 0, 0);
        memcpy(buf + off, p, len);
        off += len;
        if (lens)
            lens[n] = len;
        n++;
        r->tail += rec_bytes(len);
    } while (n < max_n && next_record(r, &p, &len) == 1);
    if (n == 0)
        return DP_EMSGSIZE;
    release_to(r, r->tail);
    return (int)n;
}

int dp_ring_recv_burst(dp_ring *r, char *buf, uint64_t cap, uint32_t *lens, uint32_t max_n, int64_t timeout_ns)
{
    return recv_many(r, buf, cap, lens, 0, max_n, timeout_ns);
}

int dp_ring_recv_records(dp_ring *r, char *buf, uint32_t rec_size, uint32_t max_n, int64_t timeout_ns)
{
    if (rec_size == 0)
        return DP_EINVAL;
    return recv_many(r, buf, (uint64_t)rec_size * max_n, NULL, rec_size, max_n, timeout_ns);
}

/* -------------------------------------------------------- benchmarks -- */

int dp_bench_pingpong(dp_ring *tx, dp_ring *rx, uint32_t size, uint64_t iters, int initiator, uint64_t *rtt_ns)
{
    if (size > tx->max_msg || size > rx->max_msg)
        return DP_EMSGSIZE;
    char *buf = calloc(1, size ? size : 1);
    if (!buf) {
        errno = ENOMEM;
        return DP_ESYS;
    }
    int rc = 0;
    for (uint64_t i = 0; i < iters && rc >= 0; i++) {
        uint64_t t0 = initiator ? dp_now_ns() : 0;
        if (initiator) {
            rc = dp_ring_send(tx, buf, size, -1);
            if (rc >= 0)
                rc = dp_ring_recv(rx, buf, size, -1);
            if (rtt_ns)
                rtt_ns[i] = dp_now_ns() - t0;
        } else {
            rc = dp_ring_recv(rx, buf, size, -1);
            if (rc >= 0)
                rc = dp_ring_send(tx, buf, size, -1);
        }
    }
    free(buf);
    return rc < 0 ? rc : 0;
}

int dp_bench_cacheline(uint64_t *word, uint64_t iters, int initiator, uint64_t *rtt_ns)
{
    if (!word || ((uintptr_t)word & 7))
        return DP_EINVAL;
    for (uint64_t i = 1; i <= iters; i++) {
        if (initiator) {
            uint64_t t0 = dp_now_ns();
            STORE_REL(word, 2 * i - 1);
            while (LOAD_ACQ(word) != 2 * i)
                CPU_RELAX();
            if (rtt_ns)
                rtt_ns[i - 1] = dp_now_ns() - t0;
        } else {
            while (LOAD_ACQ(word) != 2 * i - 1)
                CPU_RELAX();
            STORE_REL(word, 2 * i);
        }
    }
    return 0;
}
