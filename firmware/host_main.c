/*
 * host_main.c - run the generated model (model.h / model.c) on the host.
 *
 * Reads N >= 1 samples of EK_MODEL_INPUT_SIZE int8 bytes from stdin (raw,
 * back to back), invokes the model once per sample and writes N *
 * EK_MODEL_OUTPUT_SIZE int8 bytes to stdout.  Exits with status 1 and one
 * line on stderr when the input is empty or ends inside a sample, when the
 * model fails, or when stdout cannot be written.
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

int main(void)
{
    unsigned long samples = 0;
    int status = ek_model_init();

    if (status != 0) {
        fprintf(stderr, PROGRAM ": ek_model_init() failed with status %d\n", status);
        return 1;
    }
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
        status = ek_model_invoke(g_input, g_output);
        if (status != 0) {
            fprintf(stderr, PROGRAM ": ek_model_invoke() failed with status %d on sample %lu\n",
                    status, samples);
            return 1;
        }
        if (fwrite(g_output, 1, sizeof g_output, stdout) != sizeof g_output) {
            fprintf(stderr, PROGRAM ": cannot write stdout\n");
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
