/*
 * semihost.c - Arm semihosting calls used by the mps2 (QEMU) board.
 */
#include "semihost.h"

#include <stdint.h>

/* Issue one semihosting call: r0 = operation, r1 = argument, result in r0. */
static uint32_t semihost_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;

    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_write0(const char *s)
{
    (void)semihost_call(SEMIHOST_SYS_WRITE0, s);
}

void semihost_exit(int success)
{
    /* On AArch32 the argument of SYS_EXIT is the reason code itself. */
    uintptr_t reason = success ? SEMIHOST_ADP_STOPPED_APPLICATION_EXIT
                               : SEMIHOST_ADP_STOPPED_RUNTIME_ERROR;

    (void)semihost_call(SEMIHOST_SYS_EXIT, (const void *)reason);
    for (;;) {
        /* not reached under QEMU; a real debugger may resume here */
    }
}
