/*
 * Stand-in model for tests/test_device_link.py (see model.h for the formula).
 *
 * ek_model_init() does one float multiplication through volatile operands,
 * so on a hard-float build it fails with a UsageFault if startup.c did not
 * enable the FPU.  With -DFAKE_MODEL_TRAP the first ek_model_invoke() runs
 * an undefined instruction, to test the firmware's fault report; with
 * -DFAKE_MODEL_HANG it never returns, to test the host's time limits; with
 * -DFAKE_MODEL_INIT_FAIL ek_model_init() fails with status -3.
 */
#include "model.h"

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

int ek_model_invoke(const int8_t *input, int8_t *output)
{
    int32_t i;

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
    for (i = 0; i < EK_MODEL_OUTPUT_SIZE; i++) {
        int32_t j = i % EK_MODEL_INPUT_SIZE;

        output[i] = saturate_int8(2 * input[j] - 1 + input[EK_MODEL_INPUT_SIZE - 1 - j] / 4);
    }
    return 0;
}
