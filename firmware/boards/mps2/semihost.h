/*
 * semihost.h - the few Arm semihosting calls the firmware needs.
 *
 * Semihosting asks the debugger (here: QEMU started with
 * `-semihosting-config enable=on,target=native`) to do something on the
 * host.  The call is `bkpt 0xAB` with the operation in r0 and a pointer to
 * its argument in r1.  WARNING: without a debugger or without that QEMU
 * option the BKPT is a fault (real chip) or locks QEMU up, so only the mps2
 * (QEMU) board uses these functions.
 */
#ifndef EK_SEMIHOST_H
#define EK_SEMIHOST_H

/* Operation numbers (Arm "Semihosting for AArch32 and AArch64", 2.0). */
#define SEMIHOST_SYS_WRITE0 0x04u /* print a NUL-terminated string on the host */
#define SEMIHOST_SYS_EXIT   0x18u /* end the session */

/* SYS_EXIT reason codes.  On AArch32, QEMU exits with status 0 for
 * ApplicationExit and status 1 for anything else. */
#define SEMIHOST_ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define SEMIHOST_ADP_STOPPED_RUNTIME_ERROR    0x20023u

/* Print s on the emulator's stderr. */
void semihost_write0(const char *s);

/* End the emulator: host exit status 0 if success != 0, else 1. */
void semihost_exit(int success) __attribute__((noreturn));

#endif /* EK_SEMIHOST_H */
