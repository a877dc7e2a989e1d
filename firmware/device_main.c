/*
 * device_main.c - edgekit firmware main loop: runs the generated model
 * (model.h / model.c) on commands received over the board's serial link.
 *
 * Boot: ek_model_init(), then one ASCII line
 *     "edgekit ready <model name>\r\n"               (init returned 0)
 *     "edgekit init-failed <status> <model name>\r\n" (it did not)
 * then binary frames, one reply frame per request frame.  Full description:
 * firmware/PROTOCOL.md.  Summary (all integers little-endian):
 *
 *   offset  size  field
 *   0       2     sync: 0xC5 0xCB ("EK" with the high bit set, so that an
 *                 ASCII protocol can be told apart by its first byte)
 *   2       1     type: request 0x01..0x7E, reply = request | 0x80,
 *                 0xFF = ERROR reply
 *   3       2     payload length n, 0..1024 (EK_MAX_PAYLOAD)
 *   5       n     payload
 *   5+n     2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
 *                 reflection, xorout 0) of bytes 0..5+n-1 (sync, type,
 *                 length and payload)
 *
 *   type  request payload             reply payload
 *   0x01  INFO        -               see cmd_info() below
 *   0x02  SET_INPUT   u32 offset, data  -
 *   0x03  INVOKE      -               i32 ek_model_invoke() status
 *   0x04  GET_OUTPUT  u32 offset, u16 length   the bytes
 *   0x05  EXIT        [u8 code]       -   then stop (QEMU: exit status
 *                                         0 if code is 0 or absent, else 1)
 *   0x06  RUN         u32 runs, u32 warmup[, i32 budget]
 *                                       i32 status, u32 runs done[, i32 exit]
 *   0x07  TIMINGS     u32 offset, u16 count  count x u32 ticks per timed run
 *   0x08  PROFILE     u32 offset, u16 count  count x u32 ticks per layer
 *   0x09  RESET       -               -   then the chip resets (banner again)
 *   0x0A..0x7E reserved for later commands
 *
 * ERROR reply (type 0xFF) payload: u8 error code, u8 request type (0 if
 * unknown).  A frame with a bad CRC, an unknown type or a bad length gets an
 * ERROR reply and the parser goes back to hunting for the next sync.
 * Compatibility rule: replies may grow new fields at their end in later
 * protocol versions; hosts must ignore bytes they do not know.
 *
 * Build options: -DEK_PROFILE (`make PROFILE=1`) compiles in the per-layer
 * profile (ek_profile.h); -DEK_MAX_RUNS=N sets how many timed runs one RUN
 * may record (default 1000, 4 bytes of RAM each).
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "model.h"
#ifdef EK_PROFILE
#include "ek_profile.h"
#endif

#define EK_PROTOCOL_VERSION 2u
#define EK_SYNC0            0xC5u
#define EK_SYNC1            0xCBu
#define EK_HEADER_SIZE      5u    /* sync0 sync1 type len_lo len_hi */
#define EK_MAX_PAYLOAD      1024u
#define EK_REPLY_FLAG       0x80u
#define EK_MAX_NAME         64u   /* longest model name sent in INFO */
#define EK_HASH_LEN         16u   /* EK_MODEL_WEIGHTS_HASH: 16 hex digits */
#define EK_MAX_RANK         8u    /* longest tensor shape sent in INFO */
#define EK_TICKS_PER_FRAME  (EK_MAX_PAYLOAD / 4u) /* u32 values per TIMINGS/PROFILE reply */

#ifndef EK_MAX_RUNS
#define EK_MAX_RUNS         1000u /* timed runs one RUN can record */
#endif

#ifdef EK_PROFILE
#define EK_HAS_PROFILE      1u
#else
#define EK_HAS_PROFILE      0u
#endif

/* INFO flags (u8). */
#define EK_INFO_FLAG_PROFILE 0x01u /* PROFILE is compiled in */

/* Request types. */
enum {
    EK_CMD_INFO = 0x01,
    EK_CMD_SET_INPUT = 0x02,
    EK_CMD_INVOKE = 0x03,
    EK_CMD_GET_OUTPUT = 0x04,
    EK_CMD_EXIT = 0x05,
    EK_CMD_RUN = 0x06,
    EK_CMD_TIMINGS = 0x07,
    EK_CMD_PROFILE = 0x08,
    EK_CMD_RESET = 0x09,
    EK_MSG_ERROR = 0xFF
};

/* Error codes carried by an ERROR reply. */
enum {
    EK_OK = 0,
    EK_ERR_BAD_CRC = 1,       /* frame CRC mismatch: resend it */
    EK_ERR_UNKNOWN_TYPE = 2,  /* no such request type */
    EK_ERR_FRAME_TOO_LONG = 3,/* length field > EK_MAX_PAYLOAD: frame skipped */
    EK_ERR_BAD_LENGTH = 4,    /* payload length wrong for this request */
    EK_ERR_OUT_OF_RANGE = 5,  /* offset/length outside the tensor, the timings or the profile */
    EK_ERR_NOT_READY = 6,     /* ek_model_init() failed: cannot invoke */
    EK_ERR_NOT_SUPPORTED = 7  /* not compiled into this firmware (PROFILE without EK_PROFILE) */
};

typedef char ek_check_hash_len[sizeof EK_MODEL_WEIGHTS_HASH - 1u == EK_HASH_LEN ? 1 : -1];
typedef char ek_check_rank[EK_MODEL_INPUT_RANK <= EK_MAX_RANK && EK_MODEL_OUTPUT_RANK <= EK_MAX_RANK ? 1 : -1];

/* Tensors and frame buffers; 8-byte aligned for kernels that load words. */
static int8_t g_input[EK_MODEL_INPUT_SIZE] __attribute__((aligned(8)));
static int8_t g_output[EK_MODEL_OUTPUT_SIZE] __attribute__((aligned(8)));
static uint8_t g_request[EK_MAX_PAYLOAD];
static uint8_t g_reply[EK_MAX_PAYLOAD];

static uint32_t g_run_ticks[EK_MAX_RUNS]; /* per timed run of the last RUN */
static uint32_t g_runs_done;               /* valid entries of g_run_ticks */

static int g_init_status;   /* ek_model_init() result */
static int g_exit_requested;
static int g_exit_success;
static int g_reset_requested;

/* ---- little helpers ---------------------------------------------------- */

/* CRC-16/CCITT-FALSE, one byte at a time (check value "123456789" -> 0x29B1). */
static uint16_t crc16_update(uint16_t crc, uint8_t byte)
{
    int bit;

    crc ^= (uint16_t)((uint16_t)byte << 8);
    for (bit = 0; bit < 8; bit++) {
        crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t float_bits(float f)
{
    uint32_t bits;

    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* Write a NUL-terminated string on the serial link. */
static void serial_puts(const char *s)
{
    board_serial_write(s, strlen(s));
}

/* Write a signed decimal number on the serial link. */
static void serial_put_int(long value)
{
    char digits[12];
    int n = 0;
    unsigned long magnitude = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;

    if (value < 0) {
        serial_puts("-");
    }
    do {
        digits[n++] = (char)('0' + magnitude % 10u);
        magnitude /= 10u;
    } while (magnitude != 0u);
    while (n > 0) {
        board_serial_write(&digits[--n], 1);
    }
}

/* ---- framing ----------------------------------------------------------- */

/* Send one frame: header, payload, CRC. */
static void send_frame(uint8_t type, const uint8_t *payload, uint16_t len)
{
    uint8_t header[EK_HEADER_SIZE];
    uint8_t trailer[2];
    uint16_t crc = 0xFFFFu;
    uint16_t i;

    header[0] = EK_SYNC0;
    header[1] = EK_SYNC1;
    header[2] = type;
    put_u16(&header[3], len);
    for (i = 0; i < EK_HEADER_SIZE; i++) {
        crc = crc16_update(crc, header[i]);
    }
    for (i = 0; i < len; i++) {
        crc = crc16_update(crc, payload[i]);
    }
    put_u16(trailer, crc);

    board_serial_write(header, sizeof header);
    board_serial_write(payload, len);
    board_serial_write(trailer, sizeof trailer);
}

static void send_error(uint8_t code, uint8_t request_type)
{
    uint8_t payload[2];

    payload[0] = code;
    payload[1] = request_type;
    send_frame(EK_MSG_ERROR, payload, sizeof payload);
}

/* Read one byte and fold it into the running CRC. */
static uint8_t read_byte_crc(uint16_t *crc)
{
    uint8_t b = board_serial_read();

    *crc = crc16_update(*crc, b);
    return b;
}

/*
 * Wait for the next well-formed request frame and store its payload in
 * g_request.  Bytes before a sync pair are skipped.  Frames with a length
 * above EK_MAX_PAYLOAD or a bad CRC are answered with an ERROR reply here and
 * the hunt for a sync starts again.  Returns the frame's type.
 */
static uint8_t receive_frame(uint16_t *len_out)
{
    for (;;) {
        uint16_t crc = 0xFFFFu;
        uint16_t len;
        uint16_t received;
        uint8_t type;
        uint8_t b;
        uint8_t lo;
        uint8_t hi;

        /* Hunt for SYNC0 SYNC1; a run of SYNC0 before SYNC1 is fine. */
        if (board_serial_read() != EK_SYNC0) {
            continue;
        }
        do {
            b = board_serial_read();
        } while (b == EK_SYNC0);
        if (b != EK_SYNC1) {
            continue;
        }
        crc = crc16_update(crc, EK_SYNC0);
        crc = crc16_update(crc, EK_SYNC1);

        type = read_byte_crc(&crc);
        lo = read_byte_crc(&crc);
        len = (uint16_t)(lo | (read_byte_crc(&crc) << 8));
        if (len > EK_MAX_PAYLOAD) {
            /* Do not consume a payload this long: resynchronise on its bytes. */
            send_error(EK_ERR_FRAME_TOO_LONG, type);
            continue;
        }
        for (received = 0; received < len; received++) {
            g_request[received] = read_byte_crc(&crc);
        }
        lo = board_serial_read();
        hi = board_serial_read();
        if ((uint16_t)(lo | (hi << 8)) != crc) {
            send_error(EK_ERR_BAD_CRC, type);
            continue;
        }
        *len_out = len;
        return type;
    }
}

/* ---- commands ---------------------------------------------------------- */

/*
 * A command handler gets the request payload, writes its reply payload to
 * `reply` (room for EK_MAX_PAYLOAD bytes) and sets *reply_len.  It returns
 * EK_OK to send that reply, or an EK_ERR_* code to send an ERROR instead.
 */
typedef uint8_t (*command_fn)(const uint8_t *request, uint16_t len,
                              uint8_t *reply, uint16_t *reply_len);

/* Append a tensor shape: u8 rank, then rank x u32 dims. */
static uint16_t put_shape(uint8_t *p, uint32_t rank, const uint32_t *dims)
{
    uint32_t i;

    p[0] = (uint8_t)rank;
    for (i = 0; i < rank; i++) {
        put_u32(&p[1u + 4u * i], dims[i]);
    }
    return (uint16_t)(1u + 4u * rank);
}

/*
 * INFO reply (little-endian):
 *   0  u16 protocol version        2  u16 max payload (1024)
 *   4  u32 input size (bytes)      8  u32 output size (bytes)
 *   12 u32 arena size (bytes)
 *   16 u32 input scale (IEEE-754 binary32 bits)   20 i32 input zero point
 *   24 u32 output scale (binary32 bits)           28 i32 output zero point
 *   32 u32 SCB CPUID               36 i32 ek_model_init() status
 *   40 u8  name length n           41 n bytes model name (no NUL)
 * then, from protocol version 2, at p = 41 + n:
 *   p+0  16 bytes weights hash (EK_MODEL_WEIGHTS_HASH, ASCII hex)
 *   p+16 u8  timer source (0 none, 1 dwt, 2 systick, 3 cmsdk-timer)
 *   p+17 u8  flags: bit 0 = PROFILE compiled in
 *   p+18 u16 number of layers (EK_MODEL_NUM_LAYERS)
 *   p+20 u32 timer rate (Hz)       p+24 u32 CPU clock (Hz)
 *   p+28 u32 max runs per RUN      p+32 u32 ticks one timer reading costs
 *   p+36 u8 input rank r, r x u32 input dims, u8 output rank, its dims
 *   then u8 budget levels (0: none), u8 exits, u8 classes (--budgets)
 */
static uint8_t cmd_info(const uint8_t *request, uint16_t len,
                        uint8_t *reply, uint16_t *reply_len)
{
    static const char name[] = EK_MODEL_NAME;
    static const uint32_t input_dims[] = EK_MODEL_INPUT_DIMS;
    static const uint32_t output_dims[] = EK_MODEL_OUTPUT_DIMS;
    size_t name_len = strlen(name) < EK_MAX_NAME ? strlen(name) : EK_MAX_NAME;
    uint8_t *p;

    (void)request;
    if (len != 0) {
        return EK_ERR_BAD_LENGTH;
    }
    put_u16(&reply[0], EK_PROTOCOL_VERSION);
    put_u16(&reply[2], EK_MAX_PAYLOAD);
    put_u32(&reply[4], EK_MODEL_INPUT_SIZE);
    put_u32(&reply[8], EK_MODEL_OUTPUT_SIZE);
    put_u32(&reply[12], EK_MODEL_ARENA_SIZE);
    put_u32(&reply[16], float_bits(EK_MODEL_INPUT_SCALE));
    put_u32(&reply[20], (uint32_t)(int32_t)EK_MODEL_INPUT_ZERO_POINT);
    put_u32(&reply[24], float_bits(EK_MODEL_OUTPUT_SCALE));
    put_u32(&reply[28], (uint32_t)(int32_t)EK_MODEL_OUTPUT_ZERO_POINT);
    put_u32(&reply[32], board_cpuid());
    put_u32(&reply[36], (uint32_t)(int32_t)g_init_status);
    reply[40] = (uint8_t)name_len;
    memcpy(&reply[41], name, name_len);

    p = &reply[41u + name_len];
    memcpy(p, EK_MODEL_WEIGHTS_HASH, EK_HASH_LEN);
    p[16] = (uint8_t)board_timer_source();
    p[17] = EK_HAS_PROFILE ? EK_INFO_FLAG_PROFILE : 0u;
    put_u16(&p[18], (uint16_t)EK_MODEL_NUM_LAYERS);
    put_u32(&p[20], board_timer_hz());
    put_u32(&p[24], board_cpu_hz());
    put_u32(&p[28], EK_MAX_RUNS);
    put_u32(&p[32], board_timer_overhead());
    p += 36;
    p += put_shape(p, EK_MODEL_INPUT_RANK, input_dims);
    p += put_shape(p, EK_MODEL_OUTPUT_RANK, output_dims);
#ifdef EK_MODEL_NUM_BUDGETS
    *p++ = (uint8_t)EK_MODEL_NUM_BUDGETS;
    *p++ = (uint8_t)EK_MODEL_NUM_EXITS;
    *p++ = (uint8_t)EK_MODEL_NUM_CLASSES;
#else
    *p++ = 0u;
    *p++ = 0u;
    *p++ = 0u;
#endif
    *reply_len = (uint16_t)(p - reply);
    return EK_OK;
}

/* SET_INPUT: u32 offset, then the bytes to store at g_input[offset..]. */
static uint8_t cmd_set_input(const uint8_t *request, uint16_t len,
                             uint8_t *reply, uint16_t *reply_len)
{
    uint32_t offset;
    uint32_t count;

    (void)reply;
    if (len < 4u) {
        return EK_ERR_BAD_LENGTH;
    }
    offset = get_u32(request);
    count = len - 4u;
    if (offset > EK_MODEL_INPUT_SIZE || count > EK_MODEL_INPUT_SIZE - offset) {
        return EK_ERR_OUT_OF_RANGE;
    }
    memcpy(&g_input[offset], &request[4], count);
    *reply_len = 0;
    return EK_OK;
}

/* INVOKE: run the model once on g_input; reply with its i32 status. */
static uint8_t cmd_invoke(const uint8_t *request, uint16_t len,
                          uint8_t *reply, uint16_t *reply_len)
{
    int status;

    (void)request;
    if (len != 0) {
        return EK_ERR_BAD_LENGTH;
    }
    if (g_init_status != 0) {
        return EK_ERR_NOT_READY;
    }
    board_timer_start(); /* for the per-layer profile (PROFILE) */
    status = ek_model_invoke(g_input, g_output);
    board_timer_stop();
    put_u32(reply, (uint32_t)(int32_t)status);
    *reply_len = 4;
    return EK_OK;
}

/* GET_OUTPUT: u32 offset, u16 length; reply with g_output[offset..+length]. */
static uint8_t cmd_get_output(const uint8_t *request, uint16_t len,
                              uint8_t *reply, uint16_t *reply_len)
{
    uint32_t offset;
    uint16_t count;

    if (len != 6u) {
        return EK_ERR_BAD_LENGTH;
    }
    offset = get_u32(request);
    count = get_u16(&request[4]);
    if (count > EK_MAX_PAYLOAD) {
        return EK_ERR_BAD_LENGTH;
    }
    if (offset > EK_MODEL_OUTPUT_SIZE || count > EK_MODEL_OUTPUT_SIZE - offset) {
        return EK_ERR_OUT_OF_RANGE;
    }
    memcpy(reply, &g_output[offset], count);
    *reply_len = count;
    return EK_OK;
}

/* EXIT: optional u8 code (0 = success); the reply goes out before stopping. */
static uint8_t cmd_exit(const uint8_t *request, uint16_t len,
                        uint8_t *reply, uint16_t *reply_len)
{
    (void)reply;
    if (len > 1u) {
        return EK_ERR_BAD_LENGTH;
    }
    g_exit_requested = 1;
    g_exit_success = (len == 0u || request[0] == 0u);
    *reply_len = 0;
    return EK_OK;
}

/* One inference: the whole model, or with budget >= 0 ek_model_invoke_budget
 * (a model exported with --budgets), the exit it took in *taken. */
static int invoke_at(int32_t budget, int32_t *taken)
{
#ifdef EK_MODEL_NUM_BUDGETS
    if (budget >= 0) {
        return ek_model_invoke_budget(g_input, g_output, budget, taken);
    }
#endif
    (void)budget;
    *taken = -1;
    return ek_model_invoke(g_input, g_output);
}

/*
 * RUN: u32 runs, u32 warmup[, i32 budget].  Invokes the model on g_input
 * `warmup` times untimed, then `runs` times, each timed on its own with the
 * board timer (g_run_ticks, read back with TIMINGS).  Stops at the first
 * non-zero status.  Reply: i32 status (0 = all succeeded), u32 timed runs
 * done, and with a budget field i32 the exit the last run took.  budget -1:
 * the whole model (ek_model_invoke); 0..EK_MODEL_NUM_BUDGETS-1: that budget
 * level (ek_model_invoke_budget); any other level is OUT_OF_RANGE, and a
 * level on firmware without budget levels NOT_SUPPORTED.
 */
static uint8_t cmd_run(const uint8_t *request, uint16_t len,
                       uint8_t *reply, uint16_t *reply_len)
{
    uint32_t runs;
    uint32_t warmup;
    uint32_t i;
    int32_t budget = -1;
    int32_t taken = -1;
    int status = 0;

    if (len != 8u && len != 12u) {
        return EK_ERR_BAD_LENGTH;
    }
    runs = get_u32(request);
    warmup = get_u32(&request[4]);
    if (len == 12u) {
        budget = (int32_t)get_u32(&request[8]);
    }
    if (runs > EK_MAX_RUNS) {
        return EK_ERR_OUT_OF_RANGE;
    }
#ifdef EK_MODEL_NUM_BUDGETS
    if (budget < -1 || budget >= EK_MODEL_NUM_BUDGETS) {
        return EK_ERR_OUT_OF_RANGE;
    }
#else
    if (budget != -1) {
        return EK_ERR_NOT_SUPPORTED;
    }
#endif
    if (g_init_status != 0) {
        return EK_ERR_NOT_READY;
    }
    g_runs_done = 0;
    board_timer_start(); /* from 0: the same tick phase in every session (timer.h) */
    for (i = 0; i < warmup && status == 0; i++) {
        status = invoke_at(budget, &taken);
    }
    for (i = 0; i < runs && status == 0; i++) {
        uint32_t start = board_timer_now();

        status = invoke_at(budget, &taken);
        g_run_ticks[i] = board_timer_now() - start;
        if (status == 0) {
            g_runs_done = i + 1u;
        }
    }
    board_timer_stop();
    put_u32(reply, (uint32_t)(int32_t)status);
    put_u32(&reply[4], g_runs_done);
    *reply_len = 8;
    if (len == 12u) {
        put_u32(&reply[8], (uint32_t)taken);
        *reply_len = 12;
    }
    return EK_OK;
}

/* Reply with values[offset .. offset+count) as u32s; request: u32 offset, u16 count. */
static uint8_t reply_u32_range(const uint8_t *request, uint16_t len, const uint32_t *values,
                               uint32_t available, uint8_t *reply, uint16_t *reply_len)
{
    uint32_t offset;
    uint16_t count;
    uint16_t i;

    if (len != 6u) {
        return EK_ERR_BAD_LENGTH;
    }
    offset = get_u32(request);
    count = get_u16(&request[4]);
    if (count > EK_TICKS_PER_FRAME) {
        return EK_ERR_BAD_LENGTH;
    }
    if (offset > available || count > available - offset) {
        return EK_ERR_OUT_OF_RANGE;
    }
    for (i = 0; i < count; i++) {
        put_u32(&reply[4u * i], values[offset + i]);
    }
    *reply_len = (uint16_t)(4u * count);
    return EK_OK;
}

/* TIMINGS: u32 offset, u16 count (<= 256); ticks of the last RUN's timed runs. */
static uint8_t cmd_timings(const uint8_t *request, uint16_t len,
                           uint8_t *reply, uint16_t *reply_len)
{
    return reply_u32_range(request, len, g_run_ticks, g_runs_done, reply, reply_len);
}

/* PROFILE: u32 offset, u16 count (<= 256); ticks per layer of the last invoke. */
static uint8_t cmd_profile(const uint8_t *request, uint16_t len,
                           uint8_t *reply, uint16_t *reply_len)
{
#ifdef EK_PROFILE
    return reply_u32_range(request, len, ek_profile_ticks, EK_MODEL_NUM_LAYERS, reply, reply_len);
#else
    (void)request;
    (void)len;
    (void)reply;
    (void)reply_len;
    return EK_ERR_NOT_SUPPORTED;
#endif
}

/* RESET: reply, then reset the chip (SYSRESETREQ); it boots and prints the banner. */
static uint8_t cmd_reset(const uint8_t *request, uint16_t len,
                         uint8_t *reply, uint16_t *reply_len)
{
    (void)request;
    (void)reply;
    if (len != 0u) {
        return EK_ERR_BAD_LENGTH;
    }
    g_reset_requested = 1;
    *reply_len = 0;
    return EK_OK;
}

/* The dispatch table: add a row (and a PROTOCOL.md entry) per new command. */
static const struct {
    uint8_t type;
    command_fn handler;
} k_commands[] = {
    { EK_CMD_INFO, cmd_info },
    { EK_CMD_SET_INPUT, cmd_set_input },
    { EK_CMD_INVOKE, cmd_invoke },
    { EK_CMD_GET_OUTPUT, cmd_get_output },
    { EK_CMD_EXIT, cmd_exit },
    { EK_CMD_RUN, cmd_run },
    { EK_CMD_TIMINGS, cmd_timings },
    { EK_CMD_PROFILE, cmd_profile },
    { EK_CMD_RESET, cmd_reset },
};

static void dispatch(uint8_t type, uint16_t len)
{
    size_t i;

    for (i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++) {
        if (k_commands[i].type == type) {
            uint16_t reply_len = 0;
            uint8_t error = k_commands[i].handler(g_request, len, g_reply, &reply_len);

            if (error != EK_OK) {
                send_error(error, type);
            } else {
                send_frame((uint8_t)(type | EK_REPLY_FLAG), g_reply, reply_len);
            }
            return;
        }
    }
    send_error(EK_ERR_UNKNOWN_TYPE, type);
}

int main(void)
{
    board_init();
    g_init_status = ek_model_init();

    if (g_init_status == 0) {
        serial_puts("edgekit ready ");
    } else {
        serial_puts("edgekit init-failed ");
        serial_put_int(g_init_status);
        serial_puts(" ");
    }
    serial_puts(EK_MODEL_NAME);
    serial_puts("\r\n");

    while (!g_exit_requested) {
        uint16_t len = 0;
        uint8_t type = receive_frame(&len);

        dispatch(type, len);
        if (g_reset_requested) {
            board_reset(); /* after the reply went out */
        }
    }
    board_exit(g_exit_success);
    return 0;
}
