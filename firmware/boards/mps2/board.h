/*
 * board.h - constants and the small board interface for the Arm MPS2 FPGA
 * images as emulated by QEMU: mps2-an385 (Cortex-M3), mps2-an386
 * (Cortex-M4F) and mps2-an500 (Cortex-M7).  All three share this memory map:
 *
 *   0x00000000  4 MB  ZBT SSRAM1  ("flash": QEMU loads the ELF here and
 *                                  reads the initial SP and PC from 0x0)
 *   0x20000000  4 MB  ZBT SSRAM2/3 (RAM)
 *   0x40000000        CMSDK TIMER0
 *   0x40004000        CMSDK UART0  (the serial link, RX interrupt = IRQ 0)
 *   0xE000E010        SysTick
 *   0xE000ED00        System Control Block (CPUID, CPACR, fault status)
 *
 * The interface at the end of this file (board_init, board_serial_*,
 * board_timer_*, board_reset, board_exit) is all that firmware/device_main.c
 * and firmware/mlperf_main.c use, so that another board directory can
 * provide the same functions for a real chip.
 */
#ifndef EK_BOARD_H
#define EK_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "semihost.h"
#include "timer.h"
#include "uart.h"

#define BOARD_NAME          "mps2"
#define BOARD_CLOCK_HZ      25000000u /* SYSCLK: SysTick and TIMER0 count at this rate */
#define BOARD_CPU_HZ        BOARD_CLOCK_HZ /* the core's clock (DWT CYCCNT, SysTick) */
#define BOARD_TIMER0_HZ     BOARD_CLOCK_HZ /* CMSDK TIMER0's APB clock */
#define BOARD_UART_BAUD     115200u   /* QEMU ignores it; real MPS2 boards use it */

#define BOARD_FLASH_BASE    0x00000000u
#define BOARD_FLASH_SIZE    0x00400000u
#define BOARD_RAM_BASE      0x20000000u
#define BOARD_RAM_SIZE      0x00400000u

#define BOARD_TIMER0_BASE   0x40000000u
#define BOARD_UART0_BASE    0x40004000u
#define BOARD_UART0_RX_IRQ  0u          /* TX is IRQ 1 */
#define BOARD_SYSTICK_BASE  0xE000E010u

/* System Control Block registers (ARMv7-M Architecture Reference Manual B3.2). */
#define BOARD_SCB_CPUID     0xE000ED00u /* implementer, part number, revision */
#define BOARD_SCB_AIRCR     0xE000ED0Cu /* application interrupt and reset control */
#define BOARD_SCB_CFSR      0xE000ED28u /* configurable fault status (MMFSR|BFSR|UFSR) */
#define BOARD_SCB_HFSR      0xE000ED2Cu /* hard fault status */
#define BOARD_SCB_MMFAR     0xE000ED34u /* memory-manage fault address */
#define BOARD_SCB_BFAR      0xE000ED38u /* bus fault address */
#define BOARD_SCB_CPACR     0xE000ED88u /* coprocessor access: CP10/CP11 = FPU */

#define BOARD_IRQ_COUNT     32u         /* external interrupts wired on MPS2 in QEMU */

/* Read a 32-bit memory-mapped register. */
static inline uint32_t board_read_reg(uint32_t address)
{
    return *(volatile const uint32_t *)address;
}

/* ---- Board interface used by device_main.c ------------------------------ */

/* Bring up the serial link and the tick counter (timer.h). */
static inline void board_init(void)
{
    uart_init(BOARD_UART_BAUD);
    (void)timer_init();
}

/* Send len bytes over the serial link (blocks until all are queued). */
static inline void board_serial_write(const void *data, size_t len)
{
    uart_write(data, len);
}

/* Receive one byte from the serial link (blocks until one arrives). */
static inline uint8_t board_serial_read(void)
{
    return uart_getc();
}

/* Wait until every byte written so far has left the UART. */
static inline void board_serial_flush(void)
{
    uart_flush();
}

/* Tick counter for timing (timer.h): a 32-bit up-counter, running between
 * board_timer_start() and board_timer_stop(). */
static inline uint32_t board_timer_now(void)
{
    return timer_now();
}

/* Start counting from 0 (aligning the tick edges to this moment), and stop:
 * the counter runs only while the firmware measures (timer.h explains why). */
static inline void board_timer_start(void)
{
    timer_start();
}

static inline void board_timer_stop(void)
{
    timer_stop();
}

/* Its source (TIMER_DWT, TIMER_SYSTICK, TIMER_CMSDK; TIMER_NONE if none
 * works), its rate in Hz, and the ticks one reading costs. */
static inline uint32_t board_timer_source(void)
{
    return timer_source();
}

static inline uint32_t board_timer_hz(void)
{
    return timer_hz();
}

static inline uint32_t board_timer_overhead(void)
{
    return timer_read_overhead();
}

/* The core's clock in Hz (a board constant). */
static inline uint32_t board_cpu_hz(void)
{
    return BOARD_CPU_HZ;
}

/* Identify the core: SCB->CPUID (0x410FC241 = Cortex-M4 r0p1, ...). */
static inline uint32_t board_cpuid(void)
{
    return board_read_reg(BOARD_SCB_CPUID);
}

/* Reset the whole chip (SCB AIRCR SYSRESETREQ) after the serial link drained.
 * QEMU reboots the board (it exits instead if started with -no-reboot). */
static inline void board_reset(void)
{
    board_serial_flush();
    __asm__ volatile("dsb" ::: "memory");
    *(volatile uint32_t *)BOARD_SCB_AIRCR = (0x05FAu << 16) | (1u << 2); /* VECTKEY | SYSRESETREQ */
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
        /* the reset takes effect */
    }
}

/* Stop the firmware.  On QEMU this ends the emulator through semihosting
 * with exit status 0 (success != 0) or 1 (success == 0). */
static inline void board_exit(int success)
{
    board_serial_flush();
    semihost_exit(success);
}

#endif /* EK_BOARD_H */
