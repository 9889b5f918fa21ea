/* dataplane stage: one-argument calls over ring.h (see stage.h). */
#include <stdint.h>
#include <stddef.h>

#include "ring.h"
#include "stage.h"

int dp_stage_send(dp_stage *s)
{
    if (!s->ring)
        return DP_ESTATE;
    if (s->len > s->cap)
        return DP_EINVAL;
    return dp_ring_send(s->ring, s->data, s->len, 0);
}

static inline int recv_within(dp_stage *s, int64_t spin_ns)
{
    int rc = dp_ring_recv(s->ring, s->data, s->cap, spin_ns);
    if (rc >= 0)
        s->len = (uint32_t)rc;
    return rc == DP_ETIMEDOUT ? DP_EAGAIN : rc;
}

int dp_stage_recv(dp_stage *s)
{
    /* Never longer than the handle's own spin: past it, dp_ring_recv would
     * sleep on the futex, which a caller holding the GIL must not do. */
    if (!s->ring)
        return DP_ESTATE;
    int64_t spin = s->spin_ns, own = dp_ring_spin(s->ring);
    if (own >= 0 && own < spin)
        spin = own;
    /* A producer in this process is another thread of the caller, which
     * cannot run while the caller spins holding the lock the stage calls
     * are made under (the GIL): look once. */
    if (spin > 0 && dp_ring_peer_local(s->ring))
        spin = 0;
    return recv_within(s, spin > 0 ? spin : 0);
}

int dp_stage_poll(dp_stage *s) { return s->ring ? recv_within(s, 0) : DP_ESTATE; }
