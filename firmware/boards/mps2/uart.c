/*
 * uart.c - CMSDK APB UART polling driver (Arm CoreLink SDK, DDI 0479).
 *
 * Register map (offsets from BOARD_UART0_BASE):
 *   0x00 DATA      write: transmit byte; read: received byte
 *   0x04 STATE     bit0 TX buffer full, bit1 RX buffer full,
 *                  bit2 TX overrun, bit3 RX overrun (write 1 to clear)
 *   0x08 CTRL      bit0 TX enable, bit1 RX enable, bit2/3 TX/RX interrupt enable
 *   0x0C INTSTATUS interrupt status / clear
 *   0x10 BAUDDIV   clock divider, >= 16
 *
 * uart_getc() does not spin on STATE: it sleeps with WFI until the RX
 * interrupt pends.  Under QEMU every read of a device register takes the
 * emulator's I/O lock, so a tight polling loop starves the thread that
 * moves bytes from the socket into the UART; sleeping made request/reply
 * round trips 4-10x faster (a 300-byte SET_INPUT: ~6 ms instead of 15-170
 * ms) and leaves the host CPU to the host.  It works the same on hardware.
 * Interrupts are masked (PRIMASK) around the check and the WFI, so a byte
 * arriving between them cannot be missed: WFI wakes on a pending interrupt
 * even while it is masked.  UART0RX_Handler() only acknowledges an interrupt
 * left pending when the mask is lifted; bytes are always read by uart_getc().
 * After each wake-up the mask is lifted for a moment, so that other
 * interrupts (the SysTick wrap count of timer.c) are served while waiting.
 */
#include "uart.h"

#include "board.h"

typedef struct {
    volatile uint32_t data;
    volatile uint32_t state;
    volatile uint32_t ctrl;
    volatile uint32_t intstatus;
    volatile uint32_t bauddiv;
} cmsdk_uart_t;

#define UART0 ((cmsdk_uart_t *)BOARD_UART0_BASE)

#define UART_STATE_TX_FULL    (1u << 0)
#define UART_STATE_RX_FULL    (1u << 1)
#define UART_STATE_TX_OVERRUN (1u << 2)
#define UART_STATE_RX_OVERRUN (1u << 3)
#define UART_CTRL_TX_EN       (1u << 0)
#define UART_CTRL_RX_EN       (1u << 1)
#define UART_CTRL_RX_INT_EN   (1u << 3)
#define UART_INT_RX           (1u << 1)  /* INTSTATUS: RX interrupt, write 1 to clear */

/* NVIC set-enable and clear-pending registers for IRQs 0..31. */
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ICPR0 (*(volatile uint32_t *)0xE000E280u)
#define UART0_RX_IRQ_BIT (1u << BOARD_UART0_RX_IRQ)

void UART0RX_Handler(void);

/* Mask interrupts and return the previous mask (PRIMASK). */
static inline uint32_t irq_save(void)
{
    uint32_t primask;

    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    return primask;
}

static inline void irq_restore(uint32_t primask)
{
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
}

/* Clear the UART's RX interrupt and its pending bit in the NVIC. */
static inline void rx_interrupt_ack(void)
{
    UART0->intstatus = UART_INT_RX;
    NVIC_ICPR0 = UART0_RX_IRQ_BIT;
}

void uart_init(uint32_t baud)
{
    uint32_t div = BOARD_CLOCK_HZ / baud;

    UART0->ctrl = 0;
    UART0->bauddiv = div < 16u ? 16u : div; /* the CMSDK UART rejects < 16 */
    UART0->state = UART_STATE_TX_OVERRUN | UART_STATE_RX_OVERRUN; /* clear */
    UART0->ctrl = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INT_EN;
    rx_interrupt_ack();
    NVIC_ISER0 = UART0_RX_IRQ_BIT; /* needed for the interrupt to wake WFI */
    (void)UART0->data; /* drop a stale byte; makes QEMU look at its input again */
}

void UART0RX_Handler(void)
{
    UART0->intstatus = UART_INT_RX;
}

void uart_putc(uint8_t c)
{
    while (UART0->state & UART_STATE_TX_FULL) {
        /* wait for room in the transmit holding register */
    }
    UART0->data = c;
}

uint8_t uart_getc(void)
{
    uint32_t primask = irq_save();
    uint8_t c;

    while (!(UART0->state & UART_STATE_RX_FULL)) {
        __asm__ volatile("wfi" ::: "memory"); /* until the RX interrupt pends */
        rx_interrupt_ack();
        /* Let another pending interrupt (SysTick, timer.c) run, or WFI would
         * return at once while it stays pending. */
        irq_restore(primask);
        __asm__ volatile("isb" ::: "memory");
        primask = irq_save();
    }
    c = (uint8_t)UART0->data;
    irq_restore(primask);
    return c;
}

int uart_rx_ready(void)
{
    return (UART0->state & UART_STATE_RX_FULL) != 0;
}

void uart_write(const void *data, size_t len)
{
    const uint8_t *bytes = (const uint8_t *)data;
    size_t i;

    for (i = 0; i < len; i++) {
        uart_putc(bytes[i]);
    }
}

void uart_puts(const char *s)
{
    while (*s != '\0') {
        uart_putc((uint8_t)*s++);
    }
}

void uart_flush(void)
{
    while (UART0->state & UART_STATE_TX_FULL) {
        /* the last byte is still in the holding register */
    }
}
