/*
 * uart.h - polling driver for the Arm CMSDK APB UART (UART0 on MPS2).
 *
 * No buffering and no interrupt-driven transfers: uart_putc() waits while
 * the transmit holding register is full, uart_getc() waits until a byte has
 * arrived (sleeping with WFI; the RX interrupt is only used to wake it up,
 * see uart.c).  In QEMU the receive side applies back-pressure to the host
 * (a byte is only taken from the socket once the previous one was read), so
 * nothing is lost however slowly the firmware reads.
 */
#ifndef EK_UART_H
#define EK_UART_H

#include <stddef.h>
#include <stdint.h>

/* Enable UART0 transmitter and receiver at the given baud rate. */
void uart_init(uint32_t baud);

/* Send one byte; blocks while the transmitter is full. */
void uart_putc(uint8_t c);

/* Receive one byte; blocks until one is available. */
uint8_t uart_getc(void);

/* Non-zero if a received byte is waiting (uart_getc will not block). */
int uart_rx_ready(void);

/* Send len bytes. */
void uart_write(const void *data, size_t len);

/* Send a NUL-terminated string. */
void uart_puts(const char *s);

/* Wait until the last byte written has been handed to the line. */
void uart_flush(void);

#endif /* EK_UART_H */
