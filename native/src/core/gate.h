/*
 * What both backends' gate paths share: argument checks, and pushing and
 * finding a gate on the calling thread's stack.
 */
#ifndef VMPK_GATE_H
#define VMPK_GATE_H

#include "internal.h"
#include "births.h"

/* Checks vmpk_begin's arguments (rt among them) and that the calling
 * thread has room for one more gate: 0 with *slot set, or the vmpk_error to
 * return. The handle's generation is checked by the caller, under its pin
 * or lock. Meta open. */
int vmpk__gate_prepare(struct vmpk_runtime *rt, vmpk_key key, int access,
                       const struct vmpk_thread *t, uint32_t *slot);

static inline void gate_push(struct vmpk_thread *t, struct vmpk_runtime *rt, vmpk_key key,
                             uint32_t slot, uint8_t hw, int access)
{
    struct gate *g = &t->gates[t->depth];
    g->rt = rt;
    g->key = key;
    g->slot = slot;
    g->hw = hw;
    g->access = (uint8_t)access;
    g->outer = (uint8_t)vmpk__thread_gate_access(t, rt, slot);
    g->births = births_now();
    t->depth++;
}

/* The calling thread's innermost gate if it is on (rt, key), else NULL. */
static inline struct gate *gate_top(struct vmpk_thread *t, struct vmpk_runtime *rt,
                                    vmpk_key key)
{
    struct gate *g = t && t->depth ? &t->gates[t->depth - 1] : NULL;
    return g && g->rt == rt && g->key == key ? g : NULL;
}

#endif /* VMPK_GATE_H */
