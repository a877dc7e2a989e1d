/*
 * Stand-in for a generated model.h, used by tests/test_device_link.py to
 * test the firmware, the host runner and the serial link without a real
 * model.  Same API as edgekit's generated header.
 *
 * output[i] = saturate_int8(2 * input[i % IN] - 1 + input[IN - 1 - i % IN] / 4)
 * (C division, rounding toward zero), so the first and the last input bytes
 * both matter.  The sizes can be overridden with -DFAKE_INPUT_SIZE=... and
 * -DFAKE_OUTPUT_SIZE=... to exercise multi-frame transfers.  Two "layers"
 * (the two halves of the output), so that the per-layer profile hooks
 * (EK_PROFILE_BEGIN/END, -DEK_PROFILE) have something to time.
 */
#ifndef EK_MODEL_H
#define EK_MODEL_H

#include <stdint.h>

#ifndef FAKE_INPUT_SIZE
#define FAKE_INPUT_SIZE 300
#endif
#ifndef FAKE_OUTPUT_SIZE
#define FAKE_OUTPUT_SIZE 40
#endif

#define EK_MODEL_NAME              "fake_model"
#define EK_MODEL_WEIGHTS_HASH      "0123456789abcdef"
#define EK_MODEL_INPUT_SIZE        FAKE_INPUT_SIZE
#define EK_MODEL_INPUT_RANK        2
#define EK_MODEL_INPUT_DIMS        { 1, FAKE_INPUT_SIZE }
#define EK_MODEL_OUTPUT_SIZE       FAKE_OUTPUT_SIZE
#define EK_MODEL_OUTPUT_RANK       2
#define EK_MODEL_OUTPUT_DIMS       { 1, FAKE_OUTPUT_SIZE }
#define EK_MODEL_INPUT_SCALE       0.00390625f
#define EK_MODEL_INPUT_ZERO_POINT  -128
#define EK_MODEL_OUTPUT_SCALE      0.125f
#define EK_MODEL_OUTPUT_ZERO_POINT 3
#define EK_MODEL_ARENA_SIZE        256
#define EK_MODEL_NUM_LAYERS        2

int ek_model_init(void);
int ek_model_invoke(const int8_t *input, int8_t *output);

#endif /* EK_MODEL_H */
