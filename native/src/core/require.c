/* The failure of a precondition check (internal.h's REQUIRE), and the state
 * the checks read. Only the san, stub and tsan builds reach them. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

__thread int vmpk__signal_depth __attribute__((tls_model("initial-exec")));

#if VMPK_CHECKS
_Atomic int vmpk__fail_next[FAIL_POINTS];
#endif

static void put(const char *s)
{
    ssize_t r = write(2, s, strlen(s)); /* async-signal-safe, unlike stdio */
    (void)r;
}

void vmpk__require_failed(const char *cond, const char *file, int line)
{
    char num[12];
    int i = sizeof num - 1;
    num[i] = 0;
    do
        num[--i] = (char)('0' + line % 10);
    while ((line /= 10) && i > 0);
    put("vmpk: precondition failed: ");
    put(cond);
    put(" at ");
    put(file);
    put(":");
    put(&num[i]);
    put("\n");
    abort();
}
