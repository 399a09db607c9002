/* The quarantine (vmpk_view_hold): a destroyed key's window with a view
 * counted is handed to no later key until the view is released. */
#include "check.h"

static vmpk_runtime *rt;

static char *key_with_region(const char *name, vmpk_key *k)
{
    char *p;
    CHECK_EQ(vmpk_key_create(rt, name, VMPK_NONE, 0, k), 0);
    CHECK_EQ(vmpk_alloc(rt, *k, 4096, (void **)&p), 0);
    return p;
}

static void held_window_is_not_reused(void)
{
    vmpk_key a, b, c;
    int q0 = vmpk_view_hold(NULL, 0);
    char *pa = key_with_region("a", &a);
    CHECK_EQ(vmpk_view_hold(pa + 100, 1), 0); /* any byte of the window */
    CHECK_EQ(vmpk_view_hold(pa, 1), 0);
    CHECK_EQ(vmpk_key_destroy(rt, a), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0 + 1);
    CHECK_EQ(vmpk_view_hold(pa, 1), VMPK_E_STALE); /* no new view of it */
    char *pb = key_with_region("b", &b);
    CHECK(pb != pa);
    CHECK_EQ(vmpk_probe(pa, VMPK_READ), 0);
    CHECK_EQ(vmpk_view_hold(pa, -1), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0 + 1); /* one view left */
    CHECK_EQ(vmpk_view_hold(pa, -1), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0);
    char *pc = key_with_region("c", &c);
    CHECK(pc == pa); /* released: reused */
    CHECK_EQ(vmpk_key_destroy(rt, b), 0);
    CHECK_EQ(vmpk_key_destroy(rt, c), 0);
}

static void unheld_window_is_reused_at_once(void)
{
    vmpk_key a, b;
    int q0 = vmpk_view_hold(NULL, 0);
    char *pa = key_with_region("a", &a);
    CHECK_EQ(vmpk_view_hold(pa, 1), 0);
    CHECK_EQ(vmpk_view_hold(pa, -1), 0); /* detached before destroy */
    CHECK_EQ(vmpk_key_destroy(rt, a), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0);
    char *pb = key_with_region("b", &b);
    CHECK(pb == pa);
    CHECK_EQ(vmpk_key_destroy(rt, b), 0);
}

static void bad_holds_change_nothing(void)
{
    vmpk_key a;
    char x;
    char *pa = key_with_region("a", &a);
    CHECK_EQ(vmpk_view_hold(pa, -1), VMPK_E_INVALID); /* release without hold */
    CHECK_EQ(vmpk_view_hold(pa, 2), VMPK_E_INVALID);
    CHECK_EQ(vmpk_view_hold(&x, 1), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_view_hold(NULL, 1), VMPK_E_NOT_REGION);
    CHECK_EQ(vmpk_key_destroy(rt, a), 0);
}

static void close_quarantines_held_windows(void)
{
    vmpk_key a, b;
    int q0 = vmpk_view_hold(NULL, 0);
    vmpk_runtime *other = open_rt(0);
    vmpk_runtime *mine = rt;
    rt = other;
    char *pa = key_with_region("a", &a);
    CHECK_EQ(vmpk_view_hold(pa, 1), 0);
    CHECK_EQ(vmpk_close(other), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0 + 1);
    rt = mine;
    char *pb = key_with_region("b", &b);
    CHECK(pb != pa);
    CHECK_EQ(vmpk_view_hold(pa, -1), 0);
    CHECK_EQ(vmpk_view_hold(NULL, 0), q0);
    CHECK_EQ(vmpk_key_destroy(rt, b), 0);
}

int main(void)
{
    rt = open_rt(0);
    /* First, while the arena's free list is empty: the one freed window is
     * the one a new key must get. */
    RUN(unheld_window_is_reused_at_once);
    RUN(held_window_is_not_reused);
    RUN(bad_holds_change_nothing);
    RUN(close_quarantines_held_windows);
    CHECK_EQ(vmpk_close(rt), 0);
    return check_done();
}
