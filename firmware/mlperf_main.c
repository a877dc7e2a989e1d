/*
 * mlperf_main.c - firmware main loop speaking the MLPerf Tiny / EEMBC runner
 * protocol instead of edgekit's binary frames: `make PROTOCOL=mlperf-tiny`
 * (-DEK_PROTOCOL_MLPERF) builds it in place of device_main.c.
 *
 * It follows the MLPerf Tiny reference firmware (mlcommons/tiny,
 * benchmark/api/internally_implemented.{h,cpp} and a reference
 * submitter_implemented.cpp) in performance mode: the host sends ASCII
 * commands ending with '%', the device answers with lines ending in "\r\n",
 * and every answer ends with "m-ready\r\n".  Errors are "e-[...]" lines.
 *
 *   (boot)          m-timestamp-mode-performance
 *                   m-lap-us-<t>
 *                   m-init-done
 *   name%           m-name-dut-[<model name>]
 *   profile%        m-profile-[ULPMark for tinyML Firmware V0.0.1]
 *                   m-model-[<model name>]
 *                   + edgekit lines: m-<key>-[<value>] (PROTOCOL.md)
 *   db load N%      m-[Expecting N bytes]           (N = the input size)
 *   db HHHH..%      (hex bytes appended to the input; m-load-done when full)
 *   db print%       m-buffer-xx-xx-.. (8 bytes a line)
 *   infer N W%      m-warmup-start-W, m-warmup-done, m-infer-start-N,
 *                   m-lap-us-<t0>, m-lap-us-<t1>, m-infer-done,
 *                   m-infer-ticks-[<t1 - t0 in timer ticks>] (edgekit),
 *                   m-results-[...]
 *   results%        m-results-[y0,y1,...]  (dequantized outputs)
 *   timestamp%      m-lap-us-<t>
 *   help%           the command list
 *   exit [code]%    (edgekit) m-ready, then the firmware stops: QEMU exits
 *                   with status 0 if code is 0 or absent, else 1
 *
 * Differences from the reference, on purpose:
 *   - both timestamps of `infer` are read tightly around the timed loop and
 *     printed after it, so the UART time of the first line is not measured;
 *   - the clock behind m-lap-us only runs while inferences are timed (the
 *     board timer is stopped in between, see board.h), so timestamps count
 *     measured time since boot, not idle time;
 *   - m-results-[] prints each output (q - zero_point) * scale with enough
 *     decimals (at least 3, the reference's count) that the host recovers
 *     the int8 value exactly: round(y / scale) + zero_point;
 *   - `infer` refuses an input that was not loaded completely.
 * Everything else (`db` byte-buffer semantics, defaults N=1 W=10, messages)
 * is the reference's.  Full description: firmware/PROTOCOL.md.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "model.h"

#define EE_FW_VERSION      "ULPMark for tinyML Firmware V0.0.1"
#define EE_CMD_TERMINATOR  '%'
#define EK_MLPERF_CMD_SIZE 256u /* the reference takes 80; longer `db` lines load faster */
#define EK_MAX_INFER_RUNS  1000000000u

/* What `name%` and `profile%` call the device and the model (the reference's
 * EE_DEVICE_NAME vendor slot and TH_MODEL_VERSION, e.g. -DEK_MLPERF_MODEL='"kws01"'). */
#ifndef EK_MLPERF_DUT_NAME
#define EK_MLPERF_DUT_NAME EK_MODEL_NAME
#endif
#ifndef EK_MLPERF_MODEL
#define EK_MLPERF_MODEL EK_MODEL_NAME
#endif

static int8_t g_input[EK_MODEL_INPUT_SIZE] __attribute__((aligned(8)));
static int8_t g_output[EK_MODEL_OUTPUT_SIZE] __attribute__((aligned(8)));
static char g_command[EK_MLPERF_CMD_SIZE + 1u];

static uint32_t g_load_size;  /* bytes announced by `db load N` */
static uint32_t g_load_pos;   /* bytes received since */
static int g_init_status;
static int g_have_results;

/* The firmware's clock, in timer ticks: the board timer runs only while an
 * inference is measured (board.h), so this clock only advances then. */
static uint64_t g_clock;

/* ---- text output --------------------------------------------------------- */

static void put_str(const char *s)
{
    board_serial_write(s, strlen(s));
}

static void put_u64(uint64_t value)
{
    char digits[20];
    int n = 0;

    do {
        digits[n++] = (char)('0' + (int)(value % 10u));
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        board_serial_write(&digits[--n], 1);
    }
}

static void put_i64(int64_t value)
{
    if (value < 0) {
        put_str("-");
        put_u64(0u - (uint64_t)value);
    } else {
        put_u64((uint64_t)value);
    }
}

static void put_hex(uint32_t value, int digits)
{
    static const char hex[] = "0123456789abcdef";
    int shift;

    for (shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
        board_serial_write(&hex[(value >> shift) & 0xFu], 1);
    }
}

/* "<prefix><decimal>\r\n" */
static void put_line_u64(const char *prefix, uint64_t value)
{
    put_str(prefix);
    put_u64(value);
    put_str("\r\n");
}

static void put_error(const char *message)
{
    put_str("e-[");
    put_str(message);
    put_str("]\r\n");
}

/* value / 10^decimals as a decimal number, e.g. -1234, 3 -> "-1.234". */
static void put_fixed(int64_t value, int decimals)
{
    uint64_t magnitude = value < 0 ? 0u - (uint64_t)value : (uint64_t)value;
    uint64_t unit = 1;
    uint64_t fraction;
    int i;

    for (i = 0; i < decimals; i++) {
        unit *= 10u;
    }
    if (value < 0) {
        put_str("-");
    }
    put_u64(magnitude / unit);
    put_str(".");
    fraction = magnitude % unit;
    for (i = decimals - 1; i >= 0; i--) {
        uint64_t digit_unit = 1;
        int k;

        for (k = 0; k < i; k++) {
            digit_unit *= 10u;
        }
        board_serial_write(&"0123456789"[(fraction / digit_unit) % 10u], 1);
    }
}

/* ---- time ---------------------------------------------------------------- */

static uint64_t ticks_to_us(uint64_t ticks)
{
    uint32_t hz = board_timer_hz();

    return hz == 0u ? 0u : (ticks / hz) * 1000000u + (ticks % hz) * 1000000u / hz;
}

/* ---- parsing ------------------------------------------------------------- */

/* Next space-separated token of *cursor (NUL-terminated in place), or NULL. */
static char *next_token(char **cursor)
{
    char *p = *cursor;
    char *start;

    while (*p == ' ') {
        p++;
    }
    if (*p == '\0') {
        *cursor = p;
        return NULL;
    }
    start = p;
    while (*p != '\0' && *p != ' ') {
        p++;
    }
    if (*p == ' ') {
        *p++ = '\0';
    }
    *cursor = p;
    return start;
}

/* Decimal integer with an optional sign; 0 if the token is not a number (like atoi). */
static int64_t parse_int(const char *s)
{
    int64_t value = 0;
    int negative = 0;

    if (*s == '-' || *s == '+') {
        negative = *s == '-';
        s++;
    }
    while (*s >= '0' && *s <= '9' && value < 100000000000LL) {
        value = value * 10 + (*s++ - '0');
    }
    return negative ? -value : value;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* ---- commands ------------------------------------------------------------ */

/* Dequantized outputs, "m-results-[y0,y1,...]". */
static void print_results(void)
{
    double scale = (double)EK_MODEL_OUTPUT_SCALE;
    double unit = 1.0;
    int decimals = 0;
    uint32_t i;

    /* 10^d >= 10 / scale: rounding to d decimals errs by <= 5 % of a step. */
    while ((decimals < 3 || scale * unit < 10.0) && decimals < 15) {
        decimals++;
        unit *= 10.0;
    }
    put_str("m-results-[");
    for (i = 0; i < EK_MODEL_OUTPUT_SIZE; i++) {
        double y = ((double)g_output[i] - (double)EK_MODEL_OUTPUT_ZERO_POINT) * scale * unit;
        int64_t rounded = y < 0.0 ? -(int64_t)(-y + 0.5) : (int64_t)(y + 0.5);

        if (i != 0u) {
            put_str(",");
        }
        put_fixed(rounded, decimals);
    }
    put_str("]\r\n");
}

static void put_shape(const uint32_t *dims, uint32_t rank)
{
    uint32_t i;

    for (i = 0; i < rank; i++) {
        if (i != 0u) {
            put_str("x");
        }
        put_u64(dims[i]);
    }
}

static void put_float_bits(float f)
{
    uint32_t bits;

    memcpy(&bits, &f, sizeof bits);
    put_str("0x");
    put_hex(bits, 8);
}

static void cmd_profile(void)
{
    static const uint32_t input_dims[] = EK_MODEL_INPUT_DIMS;
    static const uint32_t output_dims[] = EK_MODEL_OUTPUT_DIMS;
    static const char *const timer_names[] = { "none", "dwt", "systick", "cmsdk-timer" };
    uint32_t source = board_timer_source();

    put_str("m-profile-[" EE_FW_VERSION "]\r\n");
    put_str("m-model-[" EK_MLPERF_MODEL "]\r\n");
    /* edgekit's additions, one m-<key>-[<value>] line each */
    put_str("m-weights-hash-[" EK_MODEL_WEIGHTS_HASH "]\r\n");
    put_str("m-input-[size=");
    put_u64(EK_MODEL_INPUT_SIZE);
    put_str(",shape=");
    put_shape(input_dims, EK_MODEL_INPUT_RANK);
    put_str(",scale=");
    put_float_bits(EK_MODEL_INPUT_SCALE);
    put_str(",zero-point=");
    put_i64(EK_MODEL_INPUT_ZERO_POINT);
    put_str("]\r\nm-output-[size=");
    put_u64(EK_MODEL_OUTPUT_SIZE);
    put_str(",shape=");
    put_shape(output_dims, EK_MODEL_OUTPUT_RANK);
    put_str(",scale=");
    put_float_bits(EK_MODEL_OUTPUT_SCALE);
    put_str(",zero-point=");
    put_i64(EK_MODEL_OUTPUT_ZERO_POINT);
    put_str("]\r\nm-arena-size-[");
    put_u64(EK_MODEL_ARENA_SIZE);
    put_str("]\r\nm-layers-[");
    put_u64(EK_MODEL_NUM_LAYERS);
    put_str("]\r\nm-timer-[source=");
    put_str(source < 4u ? timer_names[source] : "none");
    put_str(",hz=");
    put_u64(board_timer_hz());
    put_str(",overhead=");
    put_u64(board_timer_overhead());
    put_str("]\r\nm-cpu-[cpuid=0x");
    put_hex(board_cpuid(), 8);
    put_str(",hz=");
    put_u64(board_cpu_hz());
    put_str("]\r\nm-init-status-[");
    put_i64(g_init_status);
    put_str("]\r\n");
}

static void cmd_help(void)
{
    put_str(EE_FW_VERSION "\r\n\r\n"
            "help         : Print this information\r\n"
            "name         : Print the name of the device\r\n"
            "timestamp    : Generate a timestamp\r\n"
            "db SUBCMD    : Manipulate a generic byte buffer\r\n"
            "  load N     : Allocate N bytes and set load counter\r\n"
            "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes\r\n"
            "  print      : Print the loaded bytes as hex\r\n"
            "infer N [W=10]: Load input, execute N inferences after W warmup loops\r\n"
            "results      : Return the result fp32 vector\r\n"
            "exit [code]  : Stop the firmware (the emulator exits)\r\n");
}

static void cmd_db(char **cursor)
{
    char *arg = next_token(cursor);

    if (arg == NULL) {
        put_error("Command 'db' requires a subcommand");
    } else if (strcmp(arg, "load") == 0) {
        char *count = next_token(cursor);
        int64_t size = count == NULL ? 0 : parse_int(count);

        if (count == NULL) {
            put_error("Command 'db load' requires the # of bytes");
        } else if (size <= 0) {
            put_error("Command 'db load' must be >0 bytes");
        } else if (size > (int64_t)EK_MODEL_INPUT_SIZE) {
            put_str("e-[Supplied buffer size ");
            put_i64(size);
            put_str(" exceeds maximum of ");
            put_u64(EK_MODEL_INPUT_SIZE);
            put_str("]\r\n");
        } else {
            g_load_size = (uint32_t)size;
            g_load_pos = 0;
            put_str("m-[Expecting ");
            put_u64(g_load_size);
            put_str(" bytes]\r\n");
        }
    } else if (strcmp(arg, "print") == 0) {
        uint32_t i;

        for (i = 0; i < g_load_pos; i++) {
            put_str(i % 8u == 0u ? "m-buffer-" : "-");
            put_hex((uint8_t)g_input[i], 2);
            if (i % 8u == 7u || i + 1u == g_load_pos) {
                put_str("\r\n");
            }
        }
    } else {
        size_t digits = strlen(arg);
        size_t i;

        if (g_load_size == 0u || g_load_pos >= g_load_size) {
            put_error("No bytes expected: send 'db load N' first");
            return;
        }
        if ((digits & 1u) != 0u) {
            put_error("Insufficient number of hex digits");
            return;
        }
        for (i = 0; i < digits; i += 2u) {
            int hi = hex_digit(arg[i]);
            int lo = hex_digit(arg[i + 1u]);

            if (hi < 0 || lo < 0) {
                put_str("e-[Invalid hex digit '");
                board_serial_write(&arg[i], 2);
                put_str("']\r\n");
                return;
            }
            g_input[g_load_pos++] = (int8_t)(uint8_t)(hi * 16 + lo);
            if (g_load_pos == g_load_size) {
                put_str("m-load-done\r\n");
                return; /* the reference disregards the remaining digits */
            }
        }
    }
}

static void cmd_infer(char **cursor)
{
    char *arg = next_token(cursor);
    int64_t runs = 1;
    int64_t warmup = 10; /* the reference's default */
    uint64_t start;
    uint64_t end;
    uint32_t last;
    int status = 0;
    int64_t i;

    if (arg != NULL) {
        runs = parse_int(arg);
        if (runs <= 0) {
            put_error("Inference iterations must be >0");
            return;
        }
        arg = next_token(cursor);
        if (arg != NULL) {
            warmup = parse_int(arg);
            if (warmup < 0) {
                put_error("Inference warmup must be >=0");
                return;
            }
        }
    }
    if (runs > (int64_t)EK_MAX_INFER_RUNS || warmup > (int64_t)EK_MAX_INFER_RUNS) {
        put_error("Inference iterations must be <=1000000000");
        return;
    }
    if (g_init_status != 0) {
        put_error("ek_model_init() failed: the model cannot run");
        return;
    }
    if (g_load_pos != EK_MODEL_INPUT_SIZE) {
        put_str("e-[Input db has ");
        put_u64(g_load_pos);
        put_str(" bytes, expected ");
        put_u64(EK_MODEL_INPUT_SIZE);
        put_str("]\r\n");
        return;
    }
    put_line_u64("m-warmup-start-", (uint64_t)warmup);
    for (i = 0; i < warmup && status == 0; i++) {
        status = ek_model_invoke(g_input, g_output);
    }
    put_str("m-warmup-done\r\n");
    put_line_u64("m-infer-start-", (uint64_t)runs);
    /* Timed loop: the 32-bit timer is read after every inference so that
     * runs longer than 2^32 ticks (8.9 s at 480 MHz) add up in 64 bits. */
    board_timer_start();
    last = board_timer_now();
    start = g_clock;
    for (i = 0; i < runs && status == 0; i++) {
        uint32_t now;

        status = ek_model_invoke(g_input, g_output);
        now = board_timer_now();
        g_clock += now - last;
        last = now;
    }
    board_timer_stop();
    end = g_clock;
    put_line_u64("m-lap-us-", (uint32_t)ticks_to_us(start));
    put_line_u64("m-lap-us-", (uint32_t)ticks_to_us(end));
    put_str("m-infer-done\r\n");
    if (status != 0) {
        put_str("e-[ek_model_invoke() returned ");
        put_i64(status);
        put_str("]\r\n");
        g_have_results = 0;
        return;
    }
    put_str("m-infer-ticks-[");
    put_u64(end - start);
    put_str("]\r\n");
    g_have_results = 1;
    print_results();
}

/* One command (without its '%'), as the reference's parser splits it. */
static void dispatch(char *command)
{
    char *cursor = command;
    char *name = next_token(&cursor);

    if (name == NULL) {
        /* an empty command only gets m-ready (the runner uses it to flush) */
    } else if (strcmp(name, "name") == 0) {
        put_str("m-name-dut-[" EK_MLPERF_DUT_NAME "]\r\n");
    } else if (strcmp(name, "timestamp") == 0) {
        put_line_u64("m-lap-us-", (uint32_t)ticks_to_us(g_clock));
    } else if (strcmp(name, "profile") == 0) {
        cmd_profile();
    } else if (strcmp(name, "help") == 0) {
        cmd_help();
    } else if (strcmp(name, "db") == 0) {
        cmd_db(&cursor);
    } else if (strcmp(name, "infer") == 0) {
        cmd_infer(&cursor);
    } else if (strcmp(name, "exit") == 0) {
        char *code = next_token(&cursor);

        put_str("m-ready\r\n");
        board_exit(code == NULL || parse_int(code) == 0);
    } else if (strcmp(name, "results") == 0) {
        if (g_have_results) {
            print_results();
        } else {
            put_error("No results: run 'infer' first");
        }
    } else {
        put_str("e-[Unknown command: ");
        put_str(name);
        put_str("]\r\n");
    }
    put_str("m-ready\r\n");
}

int main(void)
{
    size_t length = 0;
    int overflow = 0;

    board_init();
    put_str("m-timestamp-mode-performance\r\n");
    put_line_u64("m-lap-us-", (uint32_t)ticks_to_us(g_clock));
    g_init_status = ek_model_init();
    if (g_init_status != 0) {
        put_str("e-[ek_model_init() failed with status ");
        put_i64(g_init_status);
        put_str("]\r\n");
    }
    put_str("m-init-done\r\n");
    put_str("m-ready\r\n");

    for (;;) {
        char c = (char)board_serial_read();

        if (c == EE_CMD_TERMINATOR) {
            g_command[length] = '\0';
            if (overflow) {
                put_error("Command longer than 256 characters");
                put_str("m-ready\r\n");
            } else {
                dispatch(g_command);
            }
            length = 0;
            overflow = 0;
        } else if (c == '\r' || c == '\n' || c == '\0') {
            /* line endings some hosts add after the '%' */
        } else if (length < EK_MLPERF_CMD_SIZE) {
            g_command[length++] = c;
        } else {
            overflow = 1;
        }
    }
}
