/*
 * ek_profile.h - per-layer timing of ek_model_invoke(), compiled in by
 * `make PROFILE=1` (-DEK_PROFILE).
 *
 * model.c includes this header when EK_PROFILE is defined (and owns the two
 * variables below); its hooks then record, for every layer, the board timer's
 * ticks (board.h, board_timer_now) since the previous layer ended:
 *
 *     EK_PROFILE_BEGIN(0)  mark = now                 (first layer only)
 *     EK_PROFILE_END(i)    ticks[i] = now - mark; mark = now
 *
 * One timer reading per layer.  The layers partition the invoke: the sum of
 * ticks[] is the time from the first layer's start to the last layer's end,
 * so it differs from the whole invoke only by the function's entry and exit.
 * Work between two kernel calls (argument set-up) counts for the next layer.
 * ticks[] always holds the last invoke (after a RUN: its last timed run).
 */
#ifndef EK_PROFILE_H
#define EK_PROFILE_H

#include <stdint.h>

#include "board.h"
#include "model.h"

/* At least one slot, so that a model without kernel calls still compiles. */
#define EK_PROFILE_SLOTS (EK_MODEL_NUM_LAYERS > 0 ? EK_MODEL_NUM_LAYERS : 1)

extern uint32_t ek_profile_ticks[EK_PROFILE_SLOTS]; /* per layer, last invoke */
extern uint32_t ek_profile_mark;                    /* end of the previous layer */

#define EK_PROFILE_BEGIN(layer)                      \
    do {                                             \
        if ((layer) == 0) {                          \
            ek_profile_mark = board_timer_now();     \
        }                                            \
    } while (0)

#define EK_PROFILE_END(layer)                                   \
    do {                                                        \
        uint32_t ek_profile_now_ = board_timer_now();           \
        ek_profile_ticks[(layer)] = ek_profile_now_ - ek_profile_mark; \
        ek_profile_mark = ek_profile_now_;                      \
    } while (0)

#endif /* EK_PROFILE_H */
