/* The process-wide arena of key windows (arena.c). */
#ifndef VMPK_ARENA_H
#define VMPK_ARENA_H

#include <sys/mman.h>

#include "internal.h"


/* Owner entry: runtime id and slot + 1 of the vkey holding a granule. */
#define OWNER(rt_id, slot) ((uint32_t)(rt_id) << SLOT_BITS | ((slot) + 1))
#define OWNER_RT(o) (((o) >> SLOT_BITS) & OWNER_RT_MASK)
#define OWNER_SLOT1(o) ((o) & ((1u << SLOT_BITS) - 1))
/* Set on the entries of a destroyed key's window until it is reused, so a
 * fault through a kept pointer is still reported as vmpk's. */
#define OWNER_FREED (1u << 31)
#define OWNER_RT_MASK ((1u << RT_BITS) - 1)

int vmpk__arena_window_new(uint32_t owner, uint32_t granules, uint32_t *granule);
/* The window's pages must already be PROT_NONE on pkey 0 and discarded. */
int vmpk__arena_window_free(uint32_t granule, uint32_t granules);
uint8_t *vmpk__arena_addr(uint32_t granule);
/* Owner entry of the granule holding addr (0 if none, OWNER_FREED set for
 * a destroyed key's window). Async-signal-safe. */
uint32_t vmpk__arena_owner(uintptr_t addr, uint32_t *granule);

/* vmpk_view_hold: counts a view (delta 1) of the live window holding addr,
 * or releases one (-1); a destroyed window with no view left is freed. */
int vmpk__arena_view_hold(uintptr_t addr, int delta);
/* Destroyed windows kept from reuse because views of them live. */
uint32_t vmpk__arena_quarantined(void);

#endif /* VMPK_ARENA_H */
