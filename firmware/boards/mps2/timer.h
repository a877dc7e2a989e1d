/*
 * timer.h - the tick counter that the firmware times inferences
 * with (RUN, per-layer PROFILE, MLPerf Tiny `infer`).
 *
 * timer_init() picks the first source that is present and counts, checked at
 * boot by watching it advance:
 *
 *   1 "dwt"          DWT->CYCCNT, the core's 32-bit cycle counter (Armv7-M
 *                    and Armv8-M Mainline: Cortex-M3/M4/M7/M33).  Counts CPU
 *                    cycles: the truth on a real chip.  QEMU does not model
 *                    the DWT (its registers read 0), so it fails the check.
 *   3 "cmsdk-timer"  CMSDK APB TIMER0 of the MPS2 board: 32-bit down-counter
 *                    at the 25 MHz peripheral clock, read as an up-counter.
 *   2 "systick"      the core's SysTick: 24-bit down-counter at the CPU
 *                    clock, extended to 64 bits by its wrap interrupt
 *                    (SysTick_Handler).  Present on every Cortex-M.
 *
 * Which one under QEMU (mps2): TIMER0.  QEMU's SysTick and TIMER0 both count
 * the same 25 MHz virtual clock, so they are equally precise: under
 * `-icount shift=3,sleep=off` one tick is exactly 5 guest instructions
 * (40 ns / 8 ns) and two sessions give identical counts.  TIMER0 is 32 bits
 * wide, so a timed run needs no wrap interrupt: no interrupt handler
 * instructions land inside a measurement, and a reading is one load.  SysTick
 * wraps every 2^24 ticks (0.67 s at 25 MHz, 84 M instructions under icount),
 * adding a handler run to the run that crosses the wrap.  Without icount both
 * follow the host's wall clock (not deterministic).
 *
 * Compile with -DBOARD_TIMER_PREFER=<id> to try one source first (e.g. 2 to
 * measure with SysTick even where TIMER0 works); the others stay fallbacks.
 *
 * timer_now() is a 32-bit up-counter: the difference of two readings,
 * modulo 2^32, measures any interval shorter than 2^32 ticks (171 s at
 * 25 MHz, 8.9 s at 480 MHz).
 *
 * The counter runs only between timer_start() and timer_stop(), i.e. while
 * the firmware measures (the DWT's cycle counter, which costs nothing, is
 * never stopped).  Two reasons:
 *   - timer_start() counts from 0 again, aligning the tick edges to that
 *     instruction: the counter's phase then depends only on the instructions
 *     run since, so under QEMU icount a measurement gives the same ticks in
 *     every session.  Without it the ticks can differ by one, because the
 *     host's timing of serial bytes decides when (in virtual time) a request
 *     starts, and so where the tick edges fall.
 *   - a running QEMU timer keeps `-icount sleep=off` busy while the guest
 *     waits in WFI for the host: virtual time warps from timer deadline to
 *     timer deadline and QEMU takes a whole host CPU.  Stopped, it sleeps.
 */
#ifndef EK_TIMER_H
#define EK_TIMER_H

#include <stdint.h>

/* Timer source ids, as reported in INFO (firmware/PROTOCOL.md). */
#define TIMER_NONE      0u
#define TIMER_DWT       1u
#define TIMER_SYSTICK   2u
#define TIMER_CMSDK     3u

/* Find a working source (it is left stopped); returns its id (TIMER_NONE if none). */
uint32_t timer_init(void);

/* The source chosen by timer_init() and its counting rate in Hz. */
uint32_t timer_source(void);
uint32_t timer_hz(void);

/* Ticks between two back-to-back timer_now() calls, measured at boot: the
 * cost of one reading, included in every interval measured with two. */
uint32_t timer_read_overhead(void);

/* Current tick count (wraps modulo 2^32). */
uint32_t timer_now(void);

/* Count from 0, starting now; stop counting. */
void timer_start(void);
void timer_stop(void);

#endif /* EK_TIMER_H */
