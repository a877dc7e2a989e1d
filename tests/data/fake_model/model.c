/*
 * Stand-in model for tests/test_device_link.py (see model.h for the formula).
 *
 * ek_model_init() does one float multiplication through volatile operands,
 * so on a hard-float build it fails with a UsageFault if startup.c did not
 * enable the FPU.  With -DFAKE_MODEL_TRAP the first ek_model_invoke() runs
 * an undefined instruction, to test the firmware's fault report; with
 * -DFAKE_MODEL_HANG it never returns, to test the host's time limits; with
 * -DFAKE_MODEL_INIT_FAIL ek_model_init() fails with status -3; with
 * -DFAKE_MODEL_RESET_AT=n the n-th ek_model_invoke() after boot resets the
 * chip (SYSRESETREQ), like a watchdog or a brown-out in the middle of a run.
 * -DEK_PROFILE compiles in the per-layer profile like a generated model.c.
 */
#include "model.h"

#ifdef EK_PROFILE
#include "ek_profile.h"
uint32_t ek_profile_ticks[EK_PROFILE_SLOTS];
uint32_t ek_profile_mark;
#endif
#ifndef EK_PROFILE_BEGIN
#define EK_PROFILE_BEGIN(layer) ((void)0)
#define EK_PROFILE_END(layer) ((void)0)
#endif

static int8_t g_arena[EK_MODEL_ARENA_SIZE]; /* like a generated model's arena */
static int g_initialized;

static int8_t saturate_int8(int32_t v)
{
    return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
}

int ek_model_init(void)
{
    volatile float scale = EK_MODEL_INPUT_SCALE;
    volatile float factor = 256.0f;

    if ((int)(scale * factor) != 1) {
        return -1;
    }
#ifdef FAKE_MODEL_INIT_FAIL
    return -3;
#endif
    g_arena[0] = 1;
    g_initialized = 1;
    return 0;
}

/* output[begin..end) of the formula in model.h. */
static void fake_layer(const int8_t *input, int8_t *output, int32_t begin, int32_t end)
{
    int32_t i;

    for (i = begin; i < end; i++) {
        int32_t j = i % EK_MODEL_INPUT_SIZE;

        output[i] = saturate_int8(2 * input[j] - 1 + input[EK_MODEL_INPUT_SIZE - 1 - j] / 4);
    }
}

int ek_model_invoke(const int8_t *input, int8_t *output)
{
#ifdef FAKE_MODEL_RESET_AT
    static int invocations;

    if (++invocations == FAKE_MODEL_RESET_AT) {
        *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u; /* AIRCR: VECTKEY | SYSRESETREQ */
        for (;;) {
        }
    }
#endif

    if (!g_initialized || g_arena[0] != 1) {
        return -2;
    }
#ifdef FAKE_MODEL_TRAP
    __builtin_trap();
#endif
#ifdef FAKE_MODEL_HANG
    for (;;) {
        __asm__ volatile("" ::: "memory"); /* keep the loop */
    }
#endif
    EK_PROFILE_BEGIN(0);
    fake_layer(input, output, 0, EK_MODEL_OUTPUT_SIZE / 2);
    EK_PROFILE_END(0);
    EK_PROFILE_BEGIN(1);
    fake_layer(input, output, EK_MODEL_OUTPUT_SIZE / 2, EK_MODEL_OUTPUT_SIZE);
    EK_PROFILE_END(1);
    return 0;
}
