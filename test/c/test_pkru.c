/* PKRU arithmetic, on any machine: register values as binary literals. */
#include "check.h"
#include "pkru.h"

#define LINUX_INIT 0x55555554u /* AD on keys 1-15 */

static void bits_for_each_access(void)
{
    CHECK_EQ(pkru_bits_for(VMPK_RW), 0b00);
    CHECK_EQ(pkru_bits_for(VMPK_READ), 0b10);  /* WD */
    CHECK_EQ(pkru_bits_for(VMPK_NONE), 0b11);  /* AD | WD */
}

static void access_of_bits(void)
{
    CHECK_EQ(pkru_access_of(0b00), VMPK_RW);
    CHECK_EQ(pkru_access_of(0b10), VMPK_READ);
    CHECK_EQ(pkru_access_of(0b01), VMPK_NONE); /* AD alone blocks writes too */
    CHECK_EQ(pkru_access_of(0b11), VMPK_NONE);
}

static void with_sets_one_key(void)
{
    CHECK_EQ(pkru_with(LINUX_INIT, 1, 0b00), 0b01010101010101010101010101010000u);
    CHECK_EQ(pkru_with(LINUX_INIT, 2, 0b10), 0b01010101010101010101010101100100u);
    CHECK_EQ(pkru_with(0, 15, 0b11), 0b11000000000000000000000000000000u);
    CHECK_EQ(pkru_with(0xffffffffu, 0, 0b00), 0b11111111111111111111111111111100u);
}

static void key_bits_reads_one_key(void)
{
    uint32_t pkru = 0b10000000000000000000000000110100u;
    CHECK_EQ(pkru_key_bits(pkru, 0), 0b00);
    CHECK_EQ(pkru_key_bits(pkru, 1), 0b01);
    CHECK_EQ(pkru_key_bits(pkru, 2), 0b11);
    CHECK_EQ(pkru_key_bits(pkru, 15), 0b10);
}

/* The hit path's table gives what pkru_with gives, for every key, access
 * and a few register values. */
static void table_matches_with(void)
{
    const uint32_t values[] = { 0, 0xffffffffu, LINUX_INIT, 0b10011100011011000111001001101100u };
    const int accesses[] = { VMPK_NONE, VMPK_READ, VMPK_RW };
    for (int k = 0; k < 16; k++)
        for (unsigned a = 0; a < 3; a++)
            for (unsigned i = 0; i < sizeof values / sizeof *values; i++)
                CHECK_EQ(pkru_with_access(values[i], k, accesses[a]),
                         pkru_with(values[i], k, pkru_bits_for(accesses[a])));
    CHECK_EQ(pkru_with_access(LINUX_INIT, 1, VMPK_RW), 0b01010101010101010101010101010000u);
    CHECK_EQ(pkru_with_access(LINUX_INIT, 2, VMPK_READ), 0b01010101010101010101010101100100u);
}

/* Invariant 3: changing one key's bits leaves every other bit alone. */
static void other_keys_untouched(void)
{
    uint32_t seeds[] = { 0, LINUX_INIT, 0xffffffffu, 0xa5a5a5a5u, 0x12345678u };
    for (unsigned s = 0; s < sizeof seeds / sizeof *seeds; s++)
        for (int k = 0; k < 16; k++)
            for (uint32_t b = 0; b < 4; b++) {
                uint32_t mask = 3u << (2 * k);
                uint32_t v = pkru_with(seeds[s], k, b);
                CHECK_EQ(v & ~mask, seeds[s] & ~mask);
                CHECK_EQ(pkru_key_bits(v, k), b);
            }
}

static void union_of_gate_and_perm(void)
{
    CHECK_EQ(access_union(VMPK_NONE, VMPK_NONE), VMPK_NONE);
    CHECK_EQ(access_union(VMPK_READ, VMPK_NONE), VMPK_READ);
    CHECK_EQ(access_union(VMPK_NONE, VMPK_READ), VMPK_READ);
    CHECK_EQ(access_union(VMPK_READ, VMPK_RW), VMPK_RW);
    CHECK_EQ(access_union(VMPK_RW, VMPK_NONE), VMPK_RW);
}

int main(void)
{
    RUN(bits_for_each_access);
    RUN(access_of_bits);
    RUN(with_sets_one_key);
    RUN(key_bits_reads_one_key);
    RUN(table_matches_with);
    RUN(other_keys_untouched);
    RUN(union_of_gate_and_perm);
    return check_done();
}
