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
 * board_exit) is all that firmware/device_main.c uses, so that another board
 * directory can provide the same functions for a real chip.
 */
#ifndef EK_BOARD_H
#define EK_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "semihost.h"
#include "uart.h"

#define BOARD_NAME          "mps2"
#define BOARD_CLOCK_HZ      25000000u /* SYSCLK: SysTick and TIMER0 count at this rate */
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

/* Bring up the serial link. */
static inline void board_init(void)
{
    uart_init(BOARD_UART_BAUD);
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

/* Identify the core: SCB->CPUID (0x410FC241 = Cortex-M4 r0p1, ...). */
static inline uint32_t board_cpuid(void)
{
    return board_read_reg(BOARD_SCB_CPUID);
}

/* Stop the firmware.  On QEMU this ends the emulator through semihosting
 * with exit status 0 (success != 0) or 1 (success == 0). */
static inline void board_exit(int success)
{
    board_serial_flush();
    semihost_exit(success);
}

#endif /* EK_BOARD_H */
