/*
 * timer.c - tick counter for timing inferences: DWT cycle counter, CMSDK
 * TIMER0 or SysTick, whichever works (see timer.h for the choice).
 *
 * Registers (ARMv7-M Architecture Reference Manual C1.8 and B3.3; Arm CMSDK
 * TRM DDI 0479 for TIMER0):
 *   DEMCR     0xE000EDFC  bit 24 TRCENA: enables the DWT
 *   DWT_CTRL  0xE0001000  bit 0 CYCCNTENA; bit 25 NOCYCCNT (no cycle counter)
 *   DWT_CYCCNT 0xE0001004 cycle count
 *   DWT_LAR   0xE0001FB0  lock access: 0xC5ACCE55 unlocks (Cortex-M7)
 *   SYST_CSR  0xE000E010  bit 0 ENABLE, bit 1 TICKINT, bit 2 CLKSOURCE (1 = CPU clock)
 *   SYST_RVR  0xE000E014  reload value (24 bits)
 *   SYST_CVR  0xE000E018  current value; any write clears it
 *   ICSR      0xE000ED04  bit 26 PENDSTSET: SysTick exception pending,
 *                         bit 25 PENDSTCLR: write 1 to clear it
 *   TIMER0    0x40000000  +0 CTRL (bit 0 enable), +4 VALUE, +8 RELOAD
 */
#include "timer.h"

#include "board.h"

#define DEMCR        (*(volatile uint32_t *)0xE000EDFCu)
#define DWT_CTRL     (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT   (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR      (*(volatile uint32_t *)0xE0001FB0u)
#define DEMCR_TRCENA       (1u << 24)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CTRL_NOCYCCNT  (1u << 25)

#define SYST_CSR     (*(volatile uint32_t *)(BOARD_SYSTICK_BASE + 0x0u))
#define SYST_RVR     (*(volatile uint32_t *)(BOARD_SYSTICK_BASE + 0x4u))
#define SYST_CVR     (*(volatile uint32_t *)(BOARD_SYSTICK_BASE + 0x8u))
#define SYST_CSR_ENABLE    (1u << 0)
#define SYST_CSR_TICKINT   (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SYSTICK_PERIOD     0x01000000u /* 2^24: RVR = 0xFFFFFF */
#define SCB_ICSR     (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET     (1u << 26)
#define ICSR_PENDSTCLR     (1u << 25)

#define TIMER0_CTRL   (*(volatile uint32_t *)(BOARD_TIMER0_BASE + 0x0u))
#define TIMER0_VALUE  (*(volatile uint32_t *)(BOARD_TIMER0_BASE + 0x4u))
#define TIMER0_RELOAD (*(volatile uint32_t *)(BOARD_TIMER0_BASE + 0x8u))
#define TIMER0_CTRL_ENABLE (1u << 0)

/* How long timer_init() watches a source before calling it dead: enough
 * loop iterations for >= 100 us on any Cortex-M clocked up to 1 GHz, and for
 * QEMU's wall-clock timers without icount. */
#define PROBE_ITERATIONS 200000u

void SysTick_Handler(void);

static uint32_t g_source = TIMER_NONE;
static uint32_t g_hz;
static uint32_t g_read_overhead;
static volatile uint32_t g_systick_wraps; /* SysTick periods completed */

/* ---- the three sources -------------------------------------------------- */

#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
#define HAVE_DWT 1
#else
#define HAVE_DWT 0 /* Armv6-M / Armv8-M Baseline: no cycle counter */
#endif

static void dwt_start(void)
{
#if HAVE_DWT
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u; /* needed on some Cortex-M7 parts; ignored elsewhere */
    if ((DWT_CTRL & DWT_CTRL_NOCYCCNT) == 0u) {
        DWT_CYCCNT = 0;
        DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    }
#endif
}

static uint32_t dwt_now(void)
{
#if HAVE_DWT
    return DWT_CYCCNT;
#else
    return 0;
#endif
}

static void cmsdk_start(void)
{
    TIMER0_CTRL = 0;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = TIMER0_CTRL_ENABLE; /* no interrupt: it just wraps */
}

static uint32_t cmsdk_now(void)
{
    return 0xFFFFFFFFu - TIMER0_VALUE; /* down-counter read as an up-counter */
}

/*
 * Writing CVR clears it; the counter loads RVR on the next tick.  Wait for
 * that load before counting: QEMU (without icount) reads an overdue timer
 * as 0 until its main loop has processed it, which can take a millisecond
 * of a busy guest, and may pend a wrap interrupt for the load.  Both are
 * cleared here, with interrupts masked, so the time starts at ~0 either way.
 */
static void systick_start(void)
{
    uint32_t primask;
    uint32_t spin;

    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    SYST_CSR = 0;
    SYST_RVR = SYSTICK_PERIOD - 1u;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
    for (spin = 0; spin < PROBE_ITERATIONS && SYST_CVR == 0u; spin++) {
        /* until the first load */
    }
    SCB_ICSR = ICSR_PENDSTCLR;
    g_systick_wraps = 0;
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
}

/* One SysTick period has elapsed (the exception clears its own pending bit). */
void SysTick_Handler(void)
{
    g_systick_wraps++;
}

/*
 * 64-bit SysTick time, low 32 bits returned.  A period starts when the
 * counter reaches 0 (that is when the interrupt pends; it reloads RVR one
 * tick later), so the count within a period is (PERIOD - value) mod PERIOD:
 * 0 at value 0, 1 at RVR, ..., PERIOD - 1 at value 1.  Interrupts are masked
 * so that the wrap count and the counter are read as a pair; if the counter
 * reached 0 and its interrupt is pending (not yet counted), the counter is
 * read again (certainly after that moment) and the pending period is added.
 * After systick_start() writes 0 to the counter the time is 0, then 1 at the
 * reload: no wrap is counted for it (no 1 -> 0 transition).
 */
static uint32_t systick_now(void)
{
    uint32_t primask;
    uint32_t wraps;
    uint32_t value;

    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    wraps = g_systick_wraps;
    value = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) {
        value = SYST_CVR; /* certainly after reaching 0 */
        wraps++;
    }
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
    return wraps * SYSTICK_PERIOD + ((SYSTICK_PERIOD - value) & (SYSTICK_PERIOD - 1u));
}

static uint32_t source_now(uint32_t source)
{
    switch (source) {
    case TIMER_DWT: return dwt_now();
    case TIMER_CMSDK: return cmsdk_now();
    case TIMER_SYSTICK: return systick_now();
    default: return 0;
    }
}

static void source_start(uint32_t source)
{
    switch (source) {
    case TIMER_DWT: dwt_start(); break;
    case TIMER_CMSDK: cmsdk_start(); break;
    case TIMER_SYSTICK: systick_start(); break;
    default: break;
    }
}

static uint32_t source_hz(uint32_t source)
{
    return source == TIMER_CMSDK ? BOARD_TIMER0_HZ : BOARD_CPU_HZ;
}

/* Stop a source (the DWT's counter costs nothing and is left running). */
static void source_stop(uint32_t source)
{
    if (source == TIMER_SYSTICK) {
        SYST_CSR = 0;
    } else if (source == TIMER_CMSDK) {
        TIMER0_CTRL = 0;
    }
}

/* Start a source and watch it: does it advance? */
static int source_works(uint32_t source)
{
    volatile uint32_t spin;
    uint32_t first;

    if (source == TIMER_DWT && !HAVE_DWT) {
        return 0;
    }
    source_start(source);
    first = source_now(source);
    for (spin = 0; spin < PROBE_ITERATIONS; spin++) {
        if (source_now(source) != first) {
            return 1;
        }
    }
    source_stop(source);
    return 0;
}

/* ---- interface ---------------------------------------------------------- */

uint32_t timer_init(void)
{
#ifdef BOARD_TIMER_PREFER
    static const uint32_t order[] = { BOARD_TIMER_PREFER, TIMER_DWT, TIMER_CMSDK, TIMER_SYSTICK };
#else
    static const uint32_t order[] = { TIMER_DWT, TIMER_CMSDK, TIMER_SYSTICK };
#endif
    size_t i;

    g_source = TIMER_NONE;
    g_hz = 0;
    for (i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (source_works(order[i])) {
            g_source = order[i];
            g_hz = source_hz(order[i]);
            break;
        }
    }
    /* The cheapest of a few back-to-back readings. */
    g_read_overhead = 0xFFFFFFFFu;
    for (i = 0; i < 8u && g_source != TIMER_NONE; i++) {
        uint32_t t0 = timer_now();
        uint32_t t1 = timer_now();

        if (t1 - t0 < g_read_overhead) {
            g_read_overhead = t1 - t0;
        }
    }
    if (g_source == TIMER_NONE) {
        g_read_overhead = 0;
    }
    source_stop(g_source); /* counts only between timer_start() and timer_stop() */
    return g_source;
}

uint32_t timer_source(void)
{
    return g_source;
}

uint32_t timer_hz(void)
{
    return g_hz;
}

uint32_t timer_read_overhead(void)
{
    return g_read_overhead;
}

uint32_t timer_now(void)
{
    return source_now(g_source);
}

void timer_start(void)
{
    source_start(g_source);
}

void timer_stop(void)
{
    source_stop(g_source);
}
