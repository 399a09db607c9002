/*
 * PKRU arithmetic: pure functions, testable on any machine.
 *
 * PKRU is 32 bits per thread, two per pkey k, AD at bit 2k and WD at 2k+1:
 *
 *     31 30 29 28         2k+1 2k          3  2  1  0
 *    +--+--+--+--+- ... -+--+--+- ... -+--+--+--+--+
 *    |WD|AD|WD|AD|       |WD|AD|       |WD|AD|WD|AD|
 *    +--+--+--+--+- ... -+--+--+- ... -+--+--+--+--+
 *     key 15  key 14       key k         key 1 key 0
 *
 * AD (access disable) blocks data reads and writes, WD (write disable) blocks
 * writes. Instruction fetch is never checked. vmpk only ever changes the two
 * bits of pkeys it owns (others, such as V8's, are left alone).
 */
#ifndef VMPK_PKRU_H
#define VMPK_PKRU_H

#include <stdint.h>

#include "vmpk.h"

#define PKRU_AD 1u
#define PKRU_WD 2u
#define PKRU_CLOSED (PKRU_AD | PKRU_WD)

/* The two bits that give exactly `access` (enum vmpk_access: 0, 1 or 3). */
static inline uint32_t pkru_bits_for(int access)
{
    return (0x0b >> (2 * (access & 3))) & 3; /* 3 -> 00, 1 -> 10, 0 -> 11 */
}

/* The access two bits give. AD alone still blocks everything. */
static inline int pkru_access_of(uint32_t bits)
{
    return (bits & PKRU_AD) ? VMPK_NONE : (bits & PKRU_WD) ? VMPK_READ : VMPK_RW;
}

static inline uint32_t pkru_key_bits(uint32_t pkru, int pkey)
{
    return (pkru >> (2 * pkey)) & 3u;
}

static inline uint32_t pkru_with(uint32_t pkru, int pkey, uint32_t bits)
{
    return (pkru & ~(3u << (2 * pkey))) | (bits << (2 * pkey));
}

/* The hit path's table: PKRU_KEY_BITS[k][a] is pkru_bits_for(a) on pkey k,
 * so a gate's value is two loads and two logic operations instead of
 * shifts by 2k (PKRU_KEY_BITS[k][VMPK_NONE] is both of k's bits). In
 * .rodata: nothing in the process can change it. */
#define PKRU_ROW(k) { 3u << (2 * (k)), 2u << (2 * (k)), 0, 0 } /* NONE, READ, -, RW */
static const uint32_t PKRU_KEY_BITS[16][4] = {
    PKRU_ROW(0),  PKRU_ROW(1),  PKRU_ROW(2),  PKRU_ROW(3),  PKRU_ROW(4),  PKRU_ROW(5),
    PKRU_ROW(6),  PKRU_ROW(7),  PKRU_ROW(8),  PKRU_ROW(9),  PKRU_ROW(10), PKRU_ROW(11),
    PKRU_ROW(12), PKRU_ROW(13), PKRU_ROW(14), PKRU_ROW(15),
};
#undef PKRU_ROW

/* pkru_with(pkru, pkey, pkru_bits_for(access)), by the table. */
static inline uint32_t pkru_with_access(uint32_t pkru, int pkey, int access)
{
    const uint32_t *row = PKRU_KEY_BITS[pkey & 15];
    return (pkru & ~row[VMPK_NONE]) | row[access & 3];
}

/* Access a thread has while gates grant `gate` and the vkey's perm is `perm`:
 * the union, where write implies read. */
static inline int access_union(int gate, int perm)
{
    return gate | perm;
}

#endif /* VMPK_PKRU_H */
