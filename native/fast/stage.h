/* dataplane stage: small messages through a ring with one pointer argument
 * per call.  An interpreter pays for every argument it passes (CPython builds
 * a tuple for each call of more than one), so the caller fills this struct
 * once and then sends or receives by passing only its address.
 *
 * These calls never sleep: send tries once and recv spins for at most
 * spin_ns.  That is what lets them run without releasing the GIL (they are
 * compiled into dataplane._native_fast); any wait longer than that goes
 * through ring.h's calls, which do release it.  Return codes are ring.h's.
 */

typedef struct dp_stage {
    uint32_t len;    /* send: bytes to send (set by the caller); recv: bytes received */
    uint32_t cap;
    int64_t spin_ns; /* recv spins at most this long; 0 tries once */
    dp_ring *ring;
    char *data;      /* cap bytes owned by the caller */
} dp_stage;

/* Sends data[0:len]: 0, DP_EAGAIN when the ring is full, or an error. */
int dp_stage_send(dp_stage *s);
/* Copies the next message into data: its length, DP_EAGAIN when none came
 * within spin_ns, DP_EMSGSIZE when it is longer than cap (it stays in the
 * ring for a bigger buffer), or an error. */
int dp_stage_recv(dp_stage *s);
/* dp_stage_recv without spinning. */
int dp_stage_poll(dp_stage *s);
