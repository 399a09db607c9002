/*
 * The core against a reference model: random sequences of create, alloc,
 * free, begin, end, protect, destroy, writes and reads (fixed seed). After
 * every step the model predicts what probe() must say for a region, what
 * bytes each region holds, and the live counts; any difference fails.
 *
 * A small hardware-key budget keeps evictions frequent on the pku backend.
 * VMPK_MODEL_STEPS overrides the number of steps (the guest runs fewer).
 */
#include "check.h"

enum { KEYS = 24, REGIONS = 4 };

struct model_key {
    vmpk_key key;
    int live, perm;
    struct { unsigned char *p; size_t size; unsigned char fill; } region[REGIONS];
};

static struct model_key keys[KEYS];
static struct { int k, access; } stack[VMPK_MAX_GATE_DEPTH];
static int depth;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static int gate_access(int k, int pku)
{
    int a = VMPK_NONE;
    for (int i = depth; i-- > 0;)
        if (stack[i].k == k) {
            if (pku)
                return stack[i].access; /* the innermost gate is what counts */
            a |= stack[i].access;       /* mprotect: every open gate counts */
        }
    return a;
}

static int open_on(int k)
{
    for (int i = 0; i < depth; i++)
        if (stack[i].k == k)
            return 1;
    return 0;
}

static void check_region(vmpk_runtime *rt, int k, int r, int pku)
{
    struct model_key *m = &keys[k];
    unsigned char *p = m->region[r].p;
    int allowed = gate_access(k, pku) | m->perm;
    CHECK_EQ(vmpk_probe(p, VMPK_READ), (allowed & VMPK_READ) != 0);
    CHECK_EQ(vmpk_probe(p + m->region[r].size - 1, VMPK_RW), allowed == VMPK_RW);
    /* Contents: read them inside a read gate, unless every hw key is pinned. */
    int err = depth < VMPK_MAX_GATE_DEPTH ? vmpk_begin(rt, m->key, VMPK_READ) : 1;
    if (err == VMPK_E_KEYS_PINNED)
        CHECK(pku && depth >= 3);
    else if (err == 0) {
        size_t bad = 0;
        for (size_t i = 0; i < m->region[r].size; i += 509)
            bad += p[i] != m->region[r].fill;
        CHECK_EQ(bad, 0);
        CHECK_EQ(vmpk_end(rt, m->key), 0);
    }
}

static void random_sequences_match_the_model(void)
{
    vmpk_runtime *rt = open_rt(3);
    int pku = backend_of(rt) == VMPK_BACKEND_PKU;
    const char *env = getenv("VMPK_MODEL_STEPS");
    long steps = env ? atol(env) : 20000;
    long live = 0, regions = 0;
    for (long step = 0; step < steps && !check_failures_now; step++) {
        int k = (int)rnd(KEYS), r = (int)rnd(REGIONS);
        struct model_key *m = &keys[k];
        switch (rnd(9)) {
        case 0: /* create */
            if (m->live)
                break;
            m->perm = (int[]){ VMPK_NONE, VMPK_READ, VMPK_RW }[rnd(3)];
            CHECK_EQ(vmpk_key_create(rt, "model", m->perm, 0, &m->key), 0);
            m->live = 1;
            live++;
            break;
        case 1: /* alloc */
            if (!m->live || m->region[r].p)
                break;
            m->region[r].size = 1 + rnd(3 * 4096);
            CHECK_EQ(vmpk_alloc(rt, m->key, m->region[r].size, (void **)&m->region[r].p), 0);
            m->region[r].fill = 0;
            regions++;
            break;
        case 2: /* free */
            if (!m->live || !m->region[r].p)
                break;
            CHECK_EQ(vmpk_free(rt, m->key, m->region[r].p), 0);
            m->region[r].p = NULL;
            regions--;
            break;
        case 3: /* begin */
            if (!m->live || depth == VMPK_MAX_GATE_DEPTH)
                break;
            {
                int access = rnd(2) ? VMPK_RW : VMPK_READ;
                int err = vmpk_begin(rt, m->key, access);
                if (err == VMPK_E_KEYS_PINNED) { /* only when every hw key is pinned */
                    CHECK(pku && depth >= 3);
                    break;
                }
                CHECK_EQ(err, 0);
                stack[depth].k = k;
                stack[depth++].access = access;
            }
            break;
        case 4: /* end */
            if (!depth)
                break;
            CHECK_EQ(vmpk_end(rt, keys[stack[depth - 1].k].key), 0);
            depth--;
            break;
        case 5: /* protect */
            if (!m->live)
                break;
            m->perm = (int[]){ VMPK_NONE, VMPK_READ, VMPK_RW }[rnd(3)];
            CHECK_EQ(vmpk_protect(rt, m->key, m->perm), 0);
            break;
        case 6: /* destroy */
            if (!m->live)
                break;
            if (open_on(k)) {
                CHECK_EQ(vmpk_key_destroy(rt, m->key), VMPK_E_BUSY);
                break;
            }
            CHECK_EQ(vmpk_key_destroy(rt, m->key), 0);
            for (int i = 0; i < REGIONS; i++)
                if (m->region[i].p) {
                    CHECK_EQ(vmpk_probe(m->region[i].p, VMPK_READ), 0);
                    m->region[i].p = NULL;
                    regions--;
                }
            m->live = 0;
            live--;
            break;
        case 7: /* write a region in a write gate */
            if (!m->live || !m->region[r].p || depth == VMPK_MAX_GATE_DEPTH)
                break;
            if (vmpk_begin(rt, m->key, VMPK_RW) == VMPK_E_KEYS_PINNED)
                break;
            m->region[r].fill = (unsigned char)rnd(256);
            memset(m->region[r].p, m->region[r].fill, m->region[r].size);
            CHECK_EQ(vmpk_end(rt, m->key), 0);
            break;
        case 8: /* check a region */
            if (m->live && m->region[r].p)
                check_region(rt, k, r, pku);
            break;
        }
        if (step % 256 == 0) {
            struct vmpk_stats s = stats_of(rt);
            CHECK_EQ(s.live_vkeys, live);
            CHECK_EQ(s.regions, regions);
            CHECK(s.resident_vkeys <= 3);
            CHECK_EQ(s.hits + s.misses, s.gates);
        }
    }
    while (depth)
        CHECK_EQ(vmpk_end(rt, keys[stack[--depth].k].key), 0);
    for (int k = 0; k < KEYS; k++)
        for (int r = 0; r < REGIONS; r++)
            if (keys[k].live && keys[k].region[r].p)
                check_region(rt, k, r, pku);
    printf("# %ld steps on %s: %ld keys, %ld regions live at the end\n", steps,
           pku ? "pku" : "mprotect", live, regions);
    CHECK_EQ(vmpk_close(rt), 0);
}

int main(void)
{
    RUN(random_sequences_match_the_model);
    return check_done();
}
