/*
 * host_main.c - run the generated model (model.h / model.c) on the host.
 *
 * Reads N >= 1 samples of EK_MODEL_INPUT_SIZE int8 bytes from stdin (raw,
 * back to back), invokes the model once per sample and writes N *
 * EK_MODEL_OUTPUT_SIZE int8 bytes to stdout.  Exits with status 1 and one
 * line on stderr when the input is empty or ends inside a sample, when the
 * model fails, or when stdout cannot be written.
 *
 * A model exported with early exits (--budgets) runs ek_model_invoke_budget
 * instead when $EK_BUDGET names a budget level (0 .. EK_MODEL_NUM_BUDGETS-1):
 * each sample then gives one byte, the exit taken, and the EK_MODEL_NUM_CLASSES
 * scores of that exit.  A level out of range: status 1 and one line.
 *
 * Built with -DEK_TRACE (`make TRACE=1 host`), it also writes every layer's
 * output tensor to the file named by $EK_TRACE_FILE, one line per layer and
 * sample: "<sample> <layer> <tensor> <bytes> <hex>" (decimal numbers, the
 * tensor's bytes as two lowercase hex digits each), for `edgekit verify
 * --layers`.
 *
 * Portable C99; built with gcc -std=c99 -Wall -Wextra -Werror (and the
 * address/undefined sanitizers in the tests).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

#define PROGRAM "model_host"

static int8_t g_input[EK_MODEL_INPUT_SIZE];
static int8_t g_output[EK_MODEL_OUTPUT_SIZE];

#ifdef EK_TRACE
static FILE *g_trace;
static unsigned long g_sample;

/* Called by model.c after every layer (EK_TRACE_LAYER). */
void ek_trace(int32_t layer, int32_t tensor, const int8_t *data, int32_t size);
void ek_trace(int32_t layer, int32_t tensor, const int8_t *data, int32_t size)
{
    int32_t i;

    fprintf(g_trace, "%lu %ld %ld %ld ", g_sample, (long)layer, (long)tensor, (long)size);
    for (i = 0; i < size; ++i) {
        fprintf(g_trace, "%02x", (unsigned)(uint8_t)data[i]);
    }
    fputc('\n', g_trace);
}
#endif

/* Read up to size bytes; fewer only at end of file.  -1 on a read error. */
static long read_sample(void *buffer, size_t size)
{
    size_t got = 0;

    while (got < size) {
        size_t n = fread((char *)buffer + got, 1, size - got, stdin);

        if (n == 0) {
            if (ferror(stdin)) {
                return -1;
            }
            break; /* end of file */
        }
        got += n;
    }
    return (long)got;
}

/* Run one sample and write its result; 0, or 1 after one line on stderr. */
static int run_sample(long budget, unsigned long sample)
{
    int status;
    size_t size = sizeof g_output;
    const int8_t *out = g_output;
#ifdef EK_MODEL_NUM_BUDGETS
    static int8_t record[1 + EK_MODEL_NUM_CLASSES];

    if (budget >= 0) {
        int32_t taken = -1, i;

        status = ek_model_invoke_budget(g_input, g_output, (int32_t)budget, &taken);
        if (status == EK_MODEL_ERR_BUDGET) {
            fprintf(stderr, PROGRAM ": budget level %ld is out of range: the model has levels 0 to %d\n",
                    budget, EK_MODEL_NUM_BUDGETS - 1);
            return 1;
        }
        record[0] = (int8_t)taken;
        for (i = 0; i < EK_MODEL_NUM_CLASSES; ++i) {
            record[1 + i] = g_output[i];
        }
        out = record;
        size = sizeof record;
    } else
#else
    (void)budget;
#endif
    {
        status = ek_model_invoke(g_input, g_output);
    }
    if (status != 0) {
        fprintf(stderr, PROGRAM ": the model failed with status %d on sample %lu\n", status, sample);
        return 1;
    }
    if (fwrite(out, 1, size, stdout) != size) {
        fprintf(stderr, PROGRAM ": cannot write stdout\n");
        return 1;
    }
    return 0;
}

/* $EK_BUDGET as a level, or -1 when unset; -2 when it is not a number. */
static long budget_level(void)
{
    const char *text = getenv("EK_BUDGET");
    char *end = NULL;
    long level;

    if (text == NULL || text[0] == '\0') {
        return -1;
    }
    level = strtol(text, &end, 10);
    if (*end != '\0' || level < 0) {
        return -2;
    }
    return level;
}

int main(void)
{
    unsigned long samples = 0;
    int status = ek_model_init();
    long budget = budget_level();

    if (status != 0) {
        fprintf(stderr, PROGRAM ": ek_model_init() failed with status %d\n", status);
        return 1;
    }
    if (budget == -2) {
        fprintf(stderr, PROGRAM ": EK_BUDGET must be a budget level, 0 or more\n");
        return 1;
    }
#ifndef EK_MODEL_NUM_BUDGETS
    if (budget >= 0) {
        fprintf(stderr, PROGRAM ": EK_BUDGET is set but the model has no budget levels "
                "(export it with --budgets)\n");
        return 1;
    }
#endif
#ifdef EK_TRACE
    {
        const char *path = getenv("EK_TRACE_FILE");

        if (path == NULL || path[0] == '\0') {
            fprintf(stderr, PROGRAM ": built with TRACE=1: set EK_TRACE_FILE to the file for the trace\n");
            return 1;
        }
        g_trace = fopen(path, "w");
        if (g_trace == NULL) {
            fprintf(stderr, PROGRAM ": cannot write the trace file %s\n", path);
            return 1;
        }
    }
#endif

    for (;;) {
        long got = read_sample(g_input, sizeof g_input);

        if (got < 0) {
            fprintf(stderr, PROGRAM ": cannot read stdin\n");
            return 1;
        }
        if (got == 0) {
            break;
        }
        if ((size_t)got < sizeof g_input) {
            fprintf(stderr,
                    PROGRAM ": stdin ended inside sample %lu (%ld of %lu bytes): "
                    "the input must be a whole number of %lu-byte samples\n",
                    samples, got, (unsigned long)sizeof g_input,
                    (unsigned long)sizeof g_input);
            return 1;
        }
#ifdef EK_TRACE
        g_sample = samples;
#endif
        if (run_sample(budget, samples) != 0) {
            return 1;
        }
        samples++;
    }

    if (samples == 0) {
        fprintf(stderr, PROGRAM ": no input on stdin: expected one or more %lu-byte samples\n",
                (unsigned long)sizeof g_input);
        return 1;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, PROGRAM ": cannot write stdout\n");
        return 1;
    }
#ifdef EK_TRACE
    if (ferror(g_trace) || fclose(g_trace) != 0) {
        fprintf(stderr, PROGRAM ": cannot write the trace file\n");
        return 1;
    }
#endif
    return 0;
}
