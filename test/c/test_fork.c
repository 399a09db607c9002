/*
 * fork(): the child gets a copy of the address space, so vmpk's state, the
 * keys, their regions and the hardware pkeys come along, with the forking
 * thread's PKRU (its open gates) and none of the other threads. The child
 * goes on using all of it; the parent's memory is its own again (copy on
 * write).
 */
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static void child_keeps_keys_gates_and_data(void)
{
    vmpk_runtime *rt = open_rt(0);
    vmpk_key k;
    char *p;
    CHECK_EQ(vmpk_key_create(rt, "forked", VMPK_NONE, 0, &k), 0);
    CHECK_EQ(vmpk_alloc(rt, k, 4096, (void **)&p), 0);
    CHECK_EQ(vmpk_begin(rt, k, VMPK_RW), 0);
    strcpy(p, "parent");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = 0;
        bad |= vmpk_probe(p, VMPK_RW) != 1;      /* the open gate came along */
        bad |= strcmp(p, "parent") != 0;
        strcpy(p, "child");
        bad |= vmpk_end(rt, k) != 0;
        bad |= vmpk_probe(p, VMPK_READ) != 0;    /* and closes as usual */
        bad |= vmpk_begin(rt, k, VMPK_READ) != 0;
        bad |= strcmp(p, "child") != 0;
        bad |= vmpk_end(rt, k) != 0;
        bad |= vmpk_key_destroy(rt, k) != 0;
        bad |= vmpk_probe(p, VMPK_READ) != 0;
        bad |= vmpk_close(rt) != 0;
        _exit(bad ? 1 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK(strcmp(p, "parent") == 0); /* the child wrote its own copy */
    CHECK_EQ(vmpk_end(rt, k), 0);
    CHECK_EQ(vmpk_probe(p, VMPK_READ), 0);
    CHECK_EQ(vmpk_key_destroy(rt, k), 0);
    CHECK_EQ(vmpk_close(rt), 0);
}

int main(void)
{
    RUN(child_keeps_keys_gates_and_data);
    return check_done();
}
