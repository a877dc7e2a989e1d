/*
 * startup.c - vector table, reset handler and fault handlers for MPS2
 * (Cortex-M3 / M4F / M7 under QEMU).
 *
 * Reset_Handler:
 *   1. enables the FPU (CP10/CP11 full access in CPACR) when the code is
 *      compiled for one (__ARM_FP defined), before any float instruction;
 *   2. copies .data from its load address in flash to RAM and zeroes .bss
 *      (symbols from link.ld);
 *   3. calls main() and ends the emulator with main's result.
 * The C library is newlib-nano; no constructors are run (the firmware is C).
 * The two newlib hooks at the end make exit()/abort() stop the emulator and
 * make malloc() fail cleanly: the firmware has no heap on purpose.
 *
 * Faults (HardFault, MemManage, BusFault, UsageFault, NMI and any unexpected
 * interrupt) print one line with the fault status registers and the stacked
 * PC on the emulator's stderr via semihosting, then exit with status 1, so a
 * crash never looks like a hang.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "board.h"

/* Provided by the linker script. */
extern uint32_t __stack_bottom__;
extern uint32_t __stack_top__;
extern uint32_t __data_load__;
extern uint32_t __data_start__;
extern uint32_t __data_end__;
extern uint32_t __bss_start__;
extern uint32_t __bss_end__;

extern int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((naked));
void fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((used, noreturn));

/* Handlers that a later module may provide; until then they report a fault. */
void SVC_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void UART0RX_Handler(void) __attribute__((weak, alias("Fault_Handler"))); /* uart.c */

/* An entry of the vector table: the initial stack pointer, then handlers. */
typedef union {
    void (*handler)(void);
    const void *stack_top;
} vector_entry_t;

#define IRQ_ENTRY { .handler = Fault_Handler } /* not enabled */
#define SEVEN_IRQS IRQ_ENTRY, IRQ_ENTRY, IRQ_ENTRY, IRQ_ENTRY, \
                   IRQ_ENTRY, IRQ_ENTRY, IRQ_ENTRY
#define EIGHT_IRQS SEVEN_IRQS, IRQ_ENTRY

/* Placed at the start of flash by link.ld; QEMU reads SP and PC from here. */
__attribute__((section(".isr_vector"), used))
const vector_entry_t vector_table[16 + BOARD_IRQ_COUNT] = {
    { .stack_top = &__stack_top__ },  /*  0 initial main stack pointer */
    { .handler = Reset_Handler },     /*  1 reset */
    { .handler = Fault_Handler },     /*  2 NMI */
    { .handler = Fault_Handler },     /*  3 HardFault */
    { .handler = Fault_Handler },     /*  4 MemManage */
    { .handler = Fault_Handler },     /*  5 BusFault */
    { .handler = Fault_Handler },     /*  6 UsageFault */
    { .handler = 0 },                 /*  7 reserved */
    { .handler = 0 },                 /*  8 reserved */
    { .handler = 0 },                 /*  9 reserved */
    { .handler = 0 },                 /* 10 reserved */
    { .handler = SVC_Handler },       /* 11 SVCall */
    { .handler = DebugMon_Handler },  /* 12 debug monitor */
    { .handler = 0 },                 /* 13 reserved */
    { .handler = PendSV_Handler },    /* 14 PendSV */
    { .handler = SysTick_Handler },   /* 15 SysTick */
    { .handler = UART0RX_Handler },   /* 16 IRQ 0: UART0 RX */
    SEVEN_IRQS, EIGHT_IRQS, EIGHT_IRQS, EIGHT_IRQS /* IRQs 1..31 */
};

void Reset_Handler(void)
{
    uint32_t *src;
    uint32_t *dst;

#if defined(__ARM_FP)
    /* CP10 and CP11 full access (bits 20-23), then make it take effect. */
    *(volatile uint32_t *)BOARD_SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif

    /* Words, because link.ld aligns the sections to 4 bytes. */
    src = &__data_load__;
    for (dst = &__data_start__; dst < &__data_end__; dst++) {
        *dst = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__; dst++) {
        *dst = 0;
    }

    semihost_exit(main() == 0);
}

/*
 * Entry of every fault and unexpected exception or interrupt.
 * Passes the exception stack frame and EXC_RETURN to fault_report(); bit 2
 * of EXC_RETURN (lr) says whether the interrupted code used the main or the
 * process stack.  The stack pointer is then reset to the top of the stack:
 * the fault may be a stack overflow, and fault_report() never returns.
 */
void Fault_Handler(void)
{
#if defined(__ARM_ARCH_6M__)
    /* Armv6-M (Cortex-M0/M0+): no IT blocks, no MOVW/MOVT, no TST with an immediate. */
    __asm__ volatile(
        "movs  r0, #4                        \n"
        "mov   r1, lr                        \n"
        "tst   r0, r1                        \n"
        "bne   1f                            \n"
        "mrs   r0, msp                       \n"
        "b     2f                            \n"
        "1: mrs r0, psp                      \n"
        "2: ldr r2, =__stack_top__           \n"
        "mov   sp, r2                        \n"
        "ldr   r2, =fault_report             \n"
        "bx    r2                            \n"
        ".ltorg                              \n");
#else
    __asm__ volatile(
        "tst   lr, #4                        \n"
        "ite   eq                            \n"
        "mrseq r0, msp                       \n"
        "mrsne r0, psp                       \n"
        "mov   r1, lr                        \n"
        "movw  r2, #:lower16:__stack_top__   \n"
        "movt  r2, #:upper16:__stack_top__   \n"
        "mov   sp, r2                        \n"
        "b     fault_report                  \n");
#endif
}

static const char *exception_name(uint32_t number)
{
    switch (number) {
    case 2: return "NMI";
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    case 11: return "SVCall";
    case 12: return "DebugMon";
    case 14: return "PendSV";
    case 15: return "SysTick";
    default: return number >= 16 ? "IRQ" : "exception";
    }
}

/* Append " name=0x%08x" to a string being built at *cursor. */
static void append_hex(char **cursor, const char *name, uint32_t value)
{
    static const char digits[] = "0123456789abcdef";
    char *p = *cursor;
    int shift;

    *p++ = ' ';
    while (*name != '\0') {
        *p++ = *name++;
    }
    *p++ = '=';
    *p++ = '0';
    *p++ = 'x';
    for (shift = 28; shift >= 0; shift -= 4) {
        *p++ = digits[(value >> shift) & 0xFu];
    }
    *cursor = p;
}

/*
 * frame points to the hardware-stacked r0, r1, r2, r3, r12, lr, pc, xpsr.
 * Prints e.g. "edgekit fault: HardFault exc=0x00000003 pc=0x... lr=0x...
 * cfsr=0x... hfsr=0x... mmfar=0x... bfar=0x..." and exits with status 1.
 * A frame outside the stack area means the stack overflowed (it runs off
 * the bottom of RAM, see link.ld): then pc and lr are not available.
 */
void fault_report(const uint32_t *frame, uint32_t exc_return)
{
    char line[200];
    char *p = line;
    const char *s = "edgekit fault: ";
    uint32_t ipsr;

    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;

    while (*s != '\0') {
        *p++ = *s++;
    }
    for (s = exception_name(ipsr); *s != '\0';) {
        *p++ = *s++;
    }
    append_hex(&p, "exc", ipsr);
    if ((uintptr_t)frame < (uintptr_t)&__stack_bottom__ ||
        (uintptr_t)(frame + 8) > (uintptr_t)&__stack_top__) {
        for (s = " stack overflow (raise the stack size)"; *s != '\0';) {
            *p++ = *s++;
        }
        append_hex(&p, "sp", (uint32_t)(uintptr_t)frame);
    } else {
        append_hex(&p, "pc", frame[6]);
        append_hex(&p, "lr", frame[5]);
    }
    append_hex(&p, "exc_return", exc_return);
    append_hex(&p, "cfsr", board_read_reg(BOARD_SCB_CFSR));
    append_hex(&p, "hfsr", board_read_reg(BOARD_SCB_HFSR));
    append_hex(&p, "mmfar", board_read_reg(BOARD_SCB_MMFAR));
    append_hex(&p, "bfar", board_read_reg(BOARD_SCB_BFAR));
    *p++ = '\n';
    *p = '\0';

    semihost_write0(line);
    semihost_exit(0);
}

/* ---- newlib hooks ------------------------------------------------------- */

void _exit(int status) __attribute__((noreturn));
void *_sbrk(ptrdiff_t increment);

/* exit() and abort() (e.g. a failed assert) end here: stop the emulator with
 * a matching status instead of spinning in the libnosys stub. */
void _exit(int status)
{
    semihost_exit(status == 0);
}

/* No heap: malloc() returns NULL.  Buffers are static (the tensor arena). */
void *_sbrk(ptrdiff_t increment)
{
    (void)increment;
    errno = ENOMEM;
    return (void *)-1;
}
