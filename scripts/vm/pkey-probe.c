/* Built statically into the guest's initramfs: init runs it before the
 * command to prove that the guest kernel hands out protection keys. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void) {
  int key = pkey_alloc(0, 0);
  if (key < 0) {
    printf("vmpk-vm: pkey_alloc failed: %s\n", strerror(errno));
    return 1;
  }
  pkey_free(key);
  return 0;
}
