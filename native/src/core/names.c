/* Key names: what a fault report may print. Core, not the API: fault.c
 * checks a name again before it prints it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Key names reach fault reports on a terminal or a log: nothing that could
 * steer either. Printable UTF-8 only: no C0 control, no DEL, no C1 control
 * (U+0080..U+009F), no overlong form, surrogate or code point past
 * U+10FFFF, no truncated sequence. */
bool vmpk__name_valid(const char *name, size_t len)
{
    const uint8_t *p = (const uint8_t *)name;
    for (size_t i = 0; i < len;) {
        uint8_t c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (n == 0 || len - i < n) /* a stray continuation, C0/C1 lead, F5..FF */
            return false;
        uint32_t cp = c & (0x7f >> n);
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
            (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += n;
    }
    return true;
}
