/*
 * A window into the pku backend's private state for white-box tests and the
 * attack fixture (test/), which need to aim at or look at it as a stray
 * write would. Nothing in src/ includes this header: the core learns
 * backend facts only through struct backend (backend.h).
 */
#ifndef VMPK_BACKEND_PKU_H
#define VMPK_BACKEND_PKU_H

#include "cache.h"

/* hw key h of rt's table (h < MAX_HW_KEYS). */
struct hwkey *vmpk__pku_hwkey(const struct vmpk_runtime *rt, int h);
/* The hw index serving v, HW_NONE when it is not resident. */
int vmpk__pku_hw_of(const struct vkey *v);

#endif /* VMPK_BACKEND_PKU_H */
