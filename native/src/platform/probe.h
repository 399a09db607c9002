/* Faulting probes for vmpk_probe (<arch>/probe.c). */
#ifndef VMPK_PROBE_H
#define VMPK_PROBE_H

#include <stdbool.h>
#include <stdint.h>

int vmpk__probe_read(const volatile void *addr);   /* 1, or 0 via the handler */
int vmpk__probe_write(volatile void *addr);
extern const char vmpk__probe_read_at[], vmpk__probe_write_at[], vmpk__probe_denied[];

/* ip is one of the probes' accesses. */
bool probe_fault_at(uintptr_t ip);

#endif /* VMPK_PROBE_H */
