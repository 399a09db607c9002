/* See gate.h: the argument checks both backends' gate paths share. */
#include "enter.h"
#include "gate.h"

int vmpk__gate_prepare(struct vmpk_runtime *rt, vmpk_key key, int access,
                       const struct vmpk_thread *t, uint32_t *slot)
{
    if (access != VMPK_READ && access != VMPK_RW)
        return VMPK_E_INVALID;
    if (runtime_id_of(rt) < 0 || handle_malformed(key))
        return VMPK_E_INVALID;
    *slot = handle_slot(key);
    if (handle_rt(key) != rt->id || *slot >= atomic_load(&rt->nslots))
        return VMPK_E_STALE;
    return t->depth == VMPK_MAX_GATE_DEPTH ? VMPK_E_GATE_DEPTH : 0;
}
