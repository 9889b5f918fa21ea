/* Operating-system helpers shared by the shim's modules.  Internal: not part
 * of the ABI and not read by cffi's cdef (build_ffi.py reads only the top-level
 * headers of native/). */
#ifndef DP_OSDEP_H
#define DP_OSDEP_H
#include <stdint.h>

uint64_t dp_osdep_now_ns(void);
/* Sleep on a process-shared futex while *addr == val, at most ns. */
void dp_osdep_futex_wait(uint32_t *addr, uint32_t val, int64_t ns);
/* Bump the word (so a racing waiter does not sleep) and wake every waiter. */
void dp_osdep_futex_wake(uint32_t *addr);
/* State letter and start time (field 22) of /proc/<pid>/stat; 0 or -1. */
int dp_osdep_proc_stat(int pid, char *state, uint64_t *start);
/* 1 unless the pid is gone, a zombie, or reused (start time differs). */
int dp_osdep_pid_alive(int32_t pid, uint64_t start);
#endif
