"""Host side of the edgekit serial protocol (firmware/device_main.c).

The firmware prints one ASCII banner line at boot, then answers binary
frames, one reply per request (full description: firmware/PROTOCOL.md)::

    C5 CB | type u8 | length u16 LE | payload | CRC-16/CCITT-FALSE u16 LE

The CRC covers every byte before it (sync, type, length, payload).  A reply
has type ``request | 0x80``; ``0xFF`` is an ERROR reply carrying an error
code and the request type.

:class:`DeviceLink` speaks it over anything pyserial opens: a real board
(``DeviceLink("/dev/ttyACM0")``) or QEMU's TCP serial port
(``DeviceLink("socket://127.0.0.1:4444")``, see :mod:`edgekit.run.emulate`)::

    link = DeviceLink("/dev/ttyACM0")
    link.wait_banner()
    info = link.info()
    link.set_input(x.tobytes())
    link.invoke()
    y = link.get_output(info.output_size)
    link.run(100, warmup=5)          # 100 timed inferences after 5 untimed ones
    ticks = link.timings(100)        # board timer ticks per run (info.timer_source, timer_hz)
    layers = link.profile()          # ticks per layer of the last run (firmware built with PROFILE=1)

Every wait is bounded.  A reply that arrives corrupted, or an ERROR saying
that the request arrived corrupted, makes the request be sent again (at most
``retries`` times); all requests are idempotent except EXIT and RESET, which
are never repeated.  Failures raise a :class:`LinkError` subclass with a
one-sentence message; :class:`BoardReset` when the board's boot banner shows
up in the middle of a session (it rebooted: its input and timings are gone).

:class:`edgekit.run.mlperf_link.MlperfTinyLink` drives firmware built with ``make
PROTOCOL=mlperf-tiny`` (the MLPerf Tiny / EEMBC runner's ASCII protocol) with the same method
names where they make sense, through this module's port handling and errors.
"""

from __future__ import annotations

import enum
import re
import struct
import time
from dataclasses import dataclass, replace
from typing import Any

import serial

from edgekit.errors import EdgekitError

try:
    from termios import error as _TermiosError
except ImportError:  # not POSIX: pyserial raises only SerialException there
    _TermiosError = OSError

# What a port raises once the other end has gone away: SerialException from pyserial's reads and
# writes, and on a POSIX tty (a pty whose emulator has just exited) OSError from in_waiting and
# termios.error from tcdrain (flush) and tcflush (reset_input_buffer). All mean LinkClosed.
_PORT_ERRORS = (serial.SerialException, OSError, _TermiosError)

__all__ = [
    "CRC_INIT",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SYNC",
    "TIMER_SOURCES",
    "BoardReset",
    "Command",
    "DeviceError",
    "DeviceInfo",
    "DeviceLink",
    "ErrorCode",
    "FrameError",
    "LinkClosed",
    "LinkError",
    "LinkTimeout",
    "ProtocolError",
    "crc16",
    "decode_frame",
    "encode_frame",
]

PROTOCOL_VERSION = 2  # version 1 firmware (no RUN/TIMINGS/PROFILE/RESET) is still understood
SYNC = b"\xc5\xcb"  # "EK" with the high bit set: never an ASCII byte
HEADER_SIZE = 5  # sync (2), type (1), payload length (2)
MAX_PAYLOAD = 1024
REPLY_FLAG = 0x80
ERROR_TYPE = 0xFF
CRC_INIT = 0xFFFF
MAX_WRITE = 1024  # bytes per serial write call
_BANNER = re.compile(rb"edgekit (ready|init-failed) ([^\r\n]*)\r?\n")
BANNER_WINDOW = 512  # bytes kept while looking for a banner among skipped bytes
TICKS_PER_FRAME = MAX_PAYLOAD // 4  # u32 values per TIMINGS / PROFILE reply

# INFO's timer source ids (firmware/boards/<board>/timer.h).
TIMER_SOURCES = {0: "none", 1: "dwt", 2: "systick", 3: "cmsdk-timer"}


class Command(enum.IntEnum):
    """Request types (reply type = request | 0x80)."""

    INFO = 0x01
    SET_INPUT = 0x02
    INVOKE = 0x03
    GET_OUTPUT = 0x04
    EXIT = 0x05
    RUN = 0x06
    TIMINGS = 0x07
    PROFILE = 0x08
    RESET = 0x09


class ErrorCode(enum.IntEnum):
    """Codes carried by an ERROR reply, with the sentence shown to users."""

    BAD_CRC = 1
    UNKNOWN_TYPE = 2
    FRAME_TOO_LONG = 3
    BAD_LENGTH = 4
    OUT_OF_RANGE = 5
    NOT_READY = 6
    NOT_SUPPORTED = 7

    @property
    def meaning(self) -> str:
        return _ERROR_MEANINGS[self]


_ERROR_MEANINGS = {
    ErrorCode.BAD_CRC: "the request arrived corrupted (CRC mismatch)",
    ErrorCode.UNKNOWN_TYPE: "the firmware does not know this request type (is it older than this edgekit?)",
    ErrorCode.FRAME_TOO_LONG: f"the request's length field exceeds {MAX_PAYLOAD} bytes",
    ErrorCode.BAD_LENGTH: "the request's payload length is wrong for its type",
    ErrorCode.OUT_OF_RANGE: "the offset or length lies outside the model's input or output tensor",
    ErrorCode.NOT_READY: "ek_model_init() failed on the device, so the model cannot run",
    ErrorCode.NOT_SUPPORTED: "the firmware was built without this feature (the per-layer profile needs `make PROFILE=1`)",
}

# What an error code means for a particular request, where that differs from its general meaning.
_REQUEST_ERROR_MEANINGS = {
    (Command.RUN, ErrorCode.OUT_OF_RANGE): "more timed runs than the firmware can record (max_runs in INFO)",
    (Command.TIMINGS, ErrorCode.OUT_OF_RANGE): "the offset or count lies beyond the runs recorded by the last RUN",
    (Command.PROFILE, ErrorCode.OUT_OF_RANGE): "the offset or count lies beyond the model's layers",
}

# Errors that mean "the request was damaged on the way": sending it again may work.
_TRANSIENT_ERRORS = {ErrorCode.BAD_CRC, ErrorCode.FRAME_TOO_LONG}
# Requests sent once only (their effect cannot be repeated safely)...
_NEVER_RESENT = {Command.EXIT, Command.RESET}
# ... and requests not sent again after a timeout (they may just be slow).
_NOT_RESENT_AFTER_TIMEOUT = {Command.INVOKE, Command.RUN, Command.EXIT, Command.RESET}


class LinkError(EdgekitError):
    """Base class of every error raised by the serial link."""


class LinkTimeout(LinkError):
    """The device did not answer in time."""


class LinkClosed(LinkError):
    """The connection to the device was closed (e.g. the emulator exited)."""


class BoardReset(LinkError):
    """The board rebooted in the middle of a session: its boot banner arrived.

    Everything the device held (input tensor, recorded timings, profile) is
    gone; the link is ready for the new session (no wait_banner() needed).
    """

    def __init__(self, message: str, banner: str = ""):
        super().__init__(message)
        self.banner = banner


class FrameError(LinkError):
    """A frame arrived damaged (bad CRC, impossible length, cut short)."""


class ProtocolError(LinkError):
    """A well-formed reply that makes no sense for the request."""


class DeviceError(LinkError):
    """The device answered with an ERROR reply or a failure status."""

    def __init__(self, message: str, code: ErrorCode | int | None = None):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# Frames


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0).

    >>> hex(crc16(b"123456789"))
    '0x29b1'
    """
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def encode_frame(frame_type: int, payload: bytes = b"") -> bytes:
    """Build a complete frame: sync, type, length, payload, CRC."""
    if not 0 <= frame_type <= 0xFF:
        raise ValueError(f"frame type {frame_type} does not fit in a byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte frame limit")
    body = SYNC + struct.pack("<BH", frame_type, len(payload)) + bytes(payload)
    return body + struct.pack("<H", crc16(body))


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """Split one complete frame into (type, payload), checking it.

    Raises FrameError if the sync, length or CRC is wrong.
    """
    if len(frame) < HEADER_SIZE + 2 or frame[:2] != SYNC:
        raise FrameError("the frame is too short or does not start with the sync bytes C5 CB")
    frame_type, length = struct.unpack_from("<BH", frame, 2)
    if len(frame) != HEADER_SIZE + length + 2:
        raise FrameError(f"the frame's length field says {length} payload bytes but it holds {len(frame) - HEADER_SIZE - 2}")
    (crc,) = struct.unpack_from("<H", frame, HEADER_SIZE + length)
    if crc != crc16(frame[: HEADER_SIZE + length]):
        raise FrameError("the frame's CRC does not match its contents")
    return frame_type, bytes(frame[HEADER_SIZE : HEADER_SIZE + length])


@dataclass(frozen=True)
class DeviceInfo:
    """The INFO reply: what the firmware's model.h and board say about themselves.

    Fields after model_name come with protocol version 2; a version 1
    firmware leaves them at their defaults.  Shapes include the batch
    dimension (e.g. (1, 49, 10, 1)).  timer_source is "dwt" (CPU cycles),
    "systick", "cmsdk-timer" or "none"; timer_hz its rate; timer_overhead
    the ticks one timer reading costs (included in every measured interval).
    """

    protocol_version: int
    max_payload: int
    input_size: int
    output_size: int
    arena_size: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    cpuid: int
    init_status: int
    model_name: str
    weights_hash: str = ""
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    timer_source: str = "none"
    timer_hz: int = 0
    cpu_hz: int = 0
    num_layers: int = 0
    max_runs: int = 0
    has_profile: bool = False
    timer_overhead: int = 0
    budget_levels: int = 0          # a model exported with --budgets: its levels, exits, classes
    exits: int = 0
    classes: int = 0

    _FIXED = struct.Struct("<HHIIIfifiIiB")
    _V2 = struct.Struct("<16sBBHIIII")  # after the name: hash, timer, flags, layers, Hz, Hz, runs, overhead

    @classmethod
    def from_payload(cls, payload: bytes) -> DeviceInfo:
        fixed = cls._FIXED
        if len(payload) < fixed.size:
            raise ProtocolError(f"the INFO reply has {len(payload)} bytes, fewer than the {fixed.size} of protocol version 1")
        *values, name_len = fixed.unpack_from(payload)
        name = payload[fixed.size : fixed.size + name_len]
        if len(name) != name_len:
            raise ProtocolError("the INFO reply is cut short inside the model name")
        info = cls(*values, model_name=name.decode("ascii", errors="replace"))
        if info.protocol_version < 2:
            return info
        # Version 2 fields follow the name; later versions append more, ignored here.
        position = fixed.size + name_len
        try:
            digest, timer, flags, layers, timer_hz, cpu_hz, max_runs, overhead = cls._V2.unpack_from(payload, position)
            position += cls._V2.size
            shapes = []
            for _ in range(2):
                (rank,) = struct.unpack_from("<B", payload, position)
                shapes.append(struct.unpack_from(f"<{rank}I", payload, position + 1))
                position += 1 + 4 * rank
        except struct.error:
            raise ProtocolError("the INFO reply is cut short inside the protocol version 2 fields") from None
        levels = exits = classes = 0
        if len(payload) >= position + 3:        # appended for early exits; older firmware has none
            levels, exits, classes = struct.unpack_from("<BBB", payload, position)
        return replace(
            info,
            weights_hash=digest.decode("ascii", errors="replace"),
            input_shape=tuple(shapes[0]),
            output_shape=tuple(shapes[1]),
            timer_source=TIMER_SOURCES.get(timer, f"unknown-{timer}"),
            timer_hz=timer_hz,
            cpu_hz=cpu_hz,
            num_layers=layers,
            max_runs=max_runs,
            has_profile=bool(flags & 0x01),
            timer_overhead=overhead,
            budget_levels=levels,
            exits=exits,
            classes=classes,
        )


# ---------------------------------------------------------------------------
# The link


def _open_serial(port: str | Any, baudrate: int, poll_interval: float) -> tuple[Any, bool]:
    """(serial object, whether the link owns it): open a pyserial URL / device name, or adopt an
    already open serial-like object; either way reads return after poll_interval."""
    if isinstance(port, str):
        try:
            return serial.serial_for_url(port, baudrate=baudrate, timeout=poll_interval), True
        except (serial.SerialException, ValueError) as exc:
            raise LinkClosed(f"cannot open serial port {port!r}: {exc}") from None
    port.timeout = poll_interval
    return port, False


class PortSession:
    """What both serial protocols' links share: a context manager that closes the port on exit
    if the link opened it (a pyserial object passed in stays the caller's)."""

    _serial: Any
    _owns_serial: bool

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the port if this link opened it."""
        if self._owns_serial:
            self._serial.close()


class DeviceLink(PortSession):
    """A connection to edgekit firmware over a serial port.

    port: a pyserial URL or device name ("/dev/ttyACM0", "socket://host:port",
        "loop://"), or an already open serial.Serial-like object (anything with
        read, write and reset_input_buffer; the link then sets its timeout).
    timeout: seconds to wait for each reply (INVOKE uses invoke_timeout).
    invoke_timeout: seconds to wait for one inference (RUN: for each of its
        inferences, unless run() gets a timeout).
    retries: how many times a damaged request or reply is sent again.
    chunk_size: data bytes per SET_INPUT / GET_OUTPUT frame (1..1020).

    A session starts with the banner (wait_banner) or the first reply; from
    then on a banner among the received bytes means that the board rebooted,
    and the waiting call raises BoardReset.
    """

    POLL_INTERVAL = 0.05  # serial read timeout; the link loops against its own deadlines

    def __init__(
        self,
        port: str | Any,
        timeout: float = 5.0,
        *,
        invoke_timeout: float = 60.0,
        baudrate: int = 115200,
        retries: int = 3,
        chunk_size: int = MAX_PAYLOAD - 4,
    ):
        if not 1 <= chunk_size <= MAX_PAYLOAD - 4:
            raise ValueError(f"chunk_size must be between 1 and {MAX_PAYLOAD - 4}, not {chunk_size}")
        self._serial, self._owns_serial = _open_serial(port, baudrate, self.POLL_INTERVAL)
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.baudrate = baudrate
        self.retries = retries
        self.chunk_size = chunk_size
        self.retries_used = 0  # total requests sent again, for tests and diagnostics
        self.bytes_received = 0  # every byte read from the port, for diagnosing a silent or garbled line
        self.banner: str | None = None
        self._pending = bytearray()  # bytes read from the port but not consumed yet
        self._info: DeviceInfo | None = None
        self._session = False  # a banner or a reply was seen: a new banner means a reboot
        self.runs_done = 0  # timed runs recorded by the last run()
        self.exit_taken: int | None = None  # the exit the last run() with a budget took

    # -- low level: bytes ------------------------------------------------------

    def _read_some(self, deadline: float, what: str, wanted: int = 1) -> bytes:
        """Return at least one byte (from _pending or the port) before deadline.

        wanted: how many bytes the caller needs; asking the port for them in
        one call saves a system call per byte.
        """
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            return data
        while True:
            try:
                size = max(wanted, getattr(self._serial, "in_waiting", 0) or 1)
                data = self._serial.read(min(size, 4096))
            except _PORT_ERRORS as exc:
                raise LinkClosed(f"the device closed the connection while the host waited for {what} ({exc})") from None
            if data:
                self.bytes_received += len(data)
                return data
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"no {what} from the device within the time limit")

    def _read_exact(self, count: int, deadline: float, what: str) -> bytes:
        buffer = bytearray()
        while len(buffer) < count:
            buffer += self._read_some(deadline, what, count - len(buffer))
        self._pending[:0] = buffer[count:]
        return bytes(buffer[:count])

    def write(self, data: bytes) -> None:
        """Send raw bytes, at most MAX_WRITE per write call."""
        try:
            for start in range(0, len(data), MAX_WRITE):
                self._serial.write(data[start : start + MAX_WRITE])
            flush = getattr(self._serial, "flush", None)
            if flush is not None:
                flush()
        except _PORT_ERRORS as exc:
            raise LinkClosed(f"cannot write to the device: the connection is closed ({exc})") from None

    def discard_input(self, quiet: float = 0.1, limit: float = 1.0) -> None:
        """Drop received bytes until the line has been quiet for `quiet` s (at most `limit` s)."""
        self._pending.clear()
        end = time.monotonic() + limit
        last_data = time.monotonic()
        while time.monotonic() < min(end, last_data + quiet):
            try:
                data = self._serial.read(4096)
                if data:
                    self.bytes_received += len(data)
                    last_data = time.monotonic()
            except _PORT_ERRORS:
                return  # a closed port has nothing left to discard

    # -- banner ----------------------------------------------------------------

    def wait_banner(self, timeout: float = 10.0) -> str:
        """Wait for the boot line "edgekit ready <model>"; return the model name.

        Bytes before it (boot noise, a previous session's frames, other text
        lines) are skipped.  A real board prints the banner once at reset: if
        the port was opened later, skip this and call info() directly.
        """
        deadline = time.monotonic() + timeout
        no_banner = f"no banner from the device within {timeout:g} s: check the port and baud rate"
        seen = bytearray()
        while True:
            try:
                seen += self._read_some(deadline, "banner")
            except LinkTimeout:
                raise LinkTimeout(no_banner) from None
            match = _BANNER.search(seen)
            if match:
                self._pending[:0] = seen[match.end() :]
                model = self._start_session(match)
                if match.group(1) == b"ready":
                    return model
                raise DeviceError(f"the firmware started but ek_model_init() failed (banner {self.banner!r})")
            if time.monotonic() >= deadline:  # noise that never stops
                raise LinkTimeout(no_banner)
            # Keep memory bounded while skipping garbage, but keep a partial banner.
            if len(seen) > 4096:
                del seen[:-512]

    def _start_session(self, match: re.Match) -> str:
        """Record a banner: a new session begins; return the model name."""
        self.banner = match.group(0).decode("ascii", errors="replace").strip()
        self._session = True
        self._info = None
        self.runs_done = 0
        return match.group(2).decode("ascii", errors="replace").strip()

    def _check_banner(self, data: bytes | bytearray, end: int, what: str) -> int | None:
        """Look for a banner in data[:end], received bytes that are not part of a frame.

        Before a session it is the boot banner: recorded; returns the index
        after it (the bytes from there are the caller's).  In a session it
        means that the board rebooted: the bytes after it are kept for the
        new session and BoardReset is raised.
        """
        match = _BANNER.search(data, 0, end)
        if match is None:
            return None
        rebooted = self._session
        self._start_session(match)
        if rebooted:
            self._pending[:0] = data[match.end() :]
            raise BoardReset(
                f"the board reset {what}: its boot banner {self.banner!r} arrived, so its input, "
                "timings and profile are gone", self.banner)  # fmt: skip
        return match.end()

    # -- frames ----------------------------------------------------------------

    def send_frame(self, frame_type: int, payload: bytes = b"") -> None:
        """Encode and send one frame."""
        self.write(encode_frame(frame_type, payload))

    def read_frame(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Receive one frame and return (type, payload), skipping bytes before a sync.

        Raises LinkTimeout if no frame starts in time, FrameError if one
        arrives damaged (its bytes are then dropped).
        """
        return self._read_frame(timeout, "while the host waited for a reply")

    def _read_frame(self, timeout: float | None, what: str) -> tuple[int, bytes]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        # Hunt for the sync pair; the bytes skipped on the way may hold a banner.
        buffer = bytearray()
        while True:
            buffer += self._read_some(deadline, "reply")
            index = buffer.find(SYNC)
            banner_end = self._check_banner(buffer, len(buffer) if index < 0 else index, what)
            if banner_end is not None:  # the boot banner before the session: skip it
                self._pending[:0] = buffer[banner_end:]
                buffer.clear()
                continue
            if index >= 0:
                self._pending[:0] = buffer[index + len(SYNC) :]
                break
            del buffer[:-BANNER_WINDOW]  # keep a partial banner or a trailing first sync byte
            if time.monotonic() >= deadline:  # a stream of noise must not keep us here
                raise LinkTimeout("no reply from the device within the time limit (only bytes without a sync)")
        # Once a frame has started, its bytes follow at line speed.
        frame_deadline = max(deadline, time.monotonic() + 2.0)
        try:
            header = SYNC + self._read_exact(HEADER_SIZE - len(SYNC), frame_deadline, "reply header")
            (length,) = struct.unpack_from("<H", header, 3)
            if length > MAX_PAYLOAD:
                raise FrameError(f"a reply's length field says {length} bytes, more than the {MAX_PAYLOAD} allowed")
            rest = self._read_exact(length + 2, frame_deadline, "rest of the reply")
        except LinkTimeout:
            raise FrameError("a reply was cut short: the device stopped sending in the middle of a frame") from None
        return decode_frame(header + rest)

    def request(self, command: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a request and return its reply payload, retrying damaged exchanges."""
        name = _command_name(command)
        attempts = 1 if command in _NEVER_RESENT else 1 + self.retries
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                self.retries_used += 1
                self.discard_input()
            self._drop_stale_input(name)
            self.send_frame(command, payload)
            try:
                reply_type, reply = self._read_reply(command, timeout, f"while the host waited for the reply to {name}")
            except FrameError as exc:
                last_problem = str(exc)
                continue
            except LinkTimeout:
                if command in _NOT_RESENT_AFTER_TIMEOUT or attempt + 1 == attempts:
                    limit = self.timeout if timeout is None else timeout
                    raise LinkTimeout(f"no reply to {name} within {limit:g} s: {self._no_reply_cause()}") from None
                # The device may be stuck inside a truncated frame: flush it out.
                last_problem = f"no reply to {name}"
                self.resync()
                continue
            self._session = True
            if reply_type == ERROR_TYPE:
                code, meaning = _parse_error(reply)
                meaning = _REQUEST_ERROR_MEANINGS.get((command, code), meaning)
                if code in _TRANSIENT_ERRORS:
                    last_problem = meaning
                    continue
                raise DeviceError(f"the device rejected {name}: {meaning}", code)
            return reply
        unreliable = "the serial line is unreliable" + ("" if self._session else f" or its baud rate ({self.baudrate}) is wrong")
        raise FrameError(f"{name} failed {attempts} times ({last_problem}): {unreliable}")

    def _no_reply_cause(self) -> str:
        """Why a request went unanswered: in a session (a banner or a reply was seen) the firmware
        stopped answering; before one, the line itself is the suspect."""
        if self._session:
            return "the firmware may have hung or crashed"
        if self.bytes_received:
            return (f"the device sent {self.bytes_received} bytes but never its banner nor a valid frame, "
                    f"as at a wrong baud rate: check the baud rate ({self.baudrate} here) and that the board "
                    "runs edgekit firmware")  # fmt: skip
        return (f"the device sent nothing: check the port, the baud rate ({self.baudrate} here) and that "
                "the board runs edgekit firmware")  # fmt: skip

    def _drop_stale_input(self, name: str = "the request") -> None:
        """Forget bytes received before a request: they cannot be its reply.

        What has already arrived is read first and checked for a banner, so
        that a reboot between two requests is not missed (BoardReset).
        """
        stale = bytearray(self._pending)
        self._pending.clear()
        waiting = _read_waiting(self._serial)
        self.bytes_received += len(waiting)
        stale += waiting
        if stale:
            self._check_banner(stale, len(stale), f"before {name} was sent")
        reset = getattr(self._serial, "reset_input_buffer", None)
        if reset is not None:
            try:
                reset()
            except _PORT_ERRORS as exc:
                raise LinkClosed(f"the connection to the device is closed ({exc})") from None

    def _read_reply(self, command: int, timeout: float | None, what: str) -> tuple[int, bytes]:
        """Read frames until the reply to `command` or an ERROR arrives."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame_type, payload = self._read_frame(max(0.0, deadline - time.monotonic()), what)
            if frame_type in (command | REPLY_FLAG, ERROR_TYPE):
                return frame_type, payload
            # A stale reply from an earlier, retried request: skip it.

    def resync(self) -> None:
        """Bring the device's parser back to hunting for a sync.

        Sends MAX_PAYLOAD + 2 filler bytes (never a sync byte), which completes
        any frame the device is stuck inside (it answers with one ERROR),
        then drops whatever came back.
        """
        self.write(b"\x00" * (MAX_PAYLOAD + 2))
        self.discard_input(quiet=0.3, limit=3.0)

    # -- commands ----------------------------------------------------------------

    def info(self) -> DeviceInfo:
        """Ask the firmware about its model (sizes, quantization, name)."""
        info = DeviceInfo.from_payload(self.request(Command.INFO))
        if not 1 <= info.protocol_version <= PROTOCOL_VERSION:
            raise ProtocolError(
                f"the firmware speaks protocol version {info.protocol_version}, this edgekit speaks 1 to {PROTOCOL_VERSION}: "
                "rebuild the firmware with this edgekit"
            )
        self._info = info
        return info

    def set_input(self, data: bytes, offset: int = 0) -> None:
        """Store data in the model's input tensor at offset, chunk by chunk."""
        data = bytes(data)
        for start in range(0, max(len(data), 1), self.chunk_size):
            chunk = data[start : start + self.chunk_size]
            self.request(Command.SET_INPUT, struct.pack("<I", offset + start) + chunk)

    def invoke(self) -> None:
        """Run the model once on the current input; raise DeviceError if it fails."""
        reply = self.request(Command.INVOKE, timeout=self.invoke_timeout)
        if len(reply) < 4:
            raise ProtocolError(f"the INVOKE reply has {len(reply)} bytes instead of 4")
        (status,) = struct.unpack_from("<i", reply)
        if status != 0:
            raise DeviceError(f"ek_model_invoke() returned {status} on the device")

    def get_output(self, length: int | None = None, offset: int = 0) -> bytes:
        """Read `length` bytes of the output tensor (all of it if None)."""
        if length is None:
            length = (self._info or self.info()).output_size - offset
        result = bytearray()
        while len(result) < length:
            count = min(self.chunk_size, length - len(result))
            chunk = self.request(Command.GET_OUTPUT, struct.pack("<IH", offset + len(result), count))
            if len(chunk) != count:
                raise ProtocolError(f"asked for {count} output bytes, the device sent {len(chunk)}")
            result += chunk
        return bytes(result)

    def exit(self, success: bool = True) -> None:
        """Tell the firmware to stop (QEMU then exits with status 0, or 1 if not success).

        The firmware exits right after its reply, and an emulator's pty or socket closes with it,
        possibly before the host has flushed its request or read the reply: a port that closes
        here is the normal end of the session, not an error (QEMU's exit status tells how it
        ended)."""
        try:
            self.request(Command.EXIT, b"" if success else b"\x01")
        except LinkClosed:
            pass

    def _require_v2(self, what: str) -> DeviceInfo:
        info = self._info or self.info()
        if info.protocol_version < 2:
            raise DeviceError(
                f"the firmware speaks protocol version {info.protocol_version}, which has no {what}: "
                "rebuild it with this edgekit", ErrorCode.UNKNOWN_TYPE)  # fmt: skip
        return info

    def run(self, runs: int, warmup: int = 0, timeout: float | None = None, budget: int | None = None) -> int:
        """Invoke the model `warmup` times untimed, then `runs` times, each timed by the board.

        The input is the one set last.  Returns the number of timed runs done
        (= runs); read their ticks with timings().  timeout: seconds for the
        whole RUN (default: invoke_timeout per inference).  Raises DeviceError
        if an inference fails (after timings of the runs before it were kept).
        budget: a budget level of a model exported with --budgets (runs
        ek_model_invoke_budget; the exit the last run took is then in
        self.exit_taken); a level the firmware lacks is DeviceError OUT_OF_RANGE.
        """
        if runs < 0 or warmup < 0 or runs >= 1 << 32 or warmup >= 1 << 32:
            raise ValueError(f"runs and warmup must be between 0 and 2**32 - 1, not {runs} and {warmup}")
        info = self._require_v2("RUN")
        if runs > info.max_runs:
            raise ValueError(f"the firmware records at most {info.max_runs} runs per RUN, not {runs}: "
                             "run in batches or rebuild it with -DEK_MAX_RUNS")  # fmt: skip
        if timeout is None:
            timeout = self.invoke_timeout * max(1, runs + warmup)
        self.runs_done = 0
        self.exit_taken = None
        payload = struct.pack("<II", runs, warmup)
        if budget is not None:
            if not -1 <= budget < 1 << 31:
                raise ValueError(f"budget must be a level from 0 (or -1: the whole model), not {budget}")
            payload += struct.pack("<i", budget)
        reply = self.request(Command.RUN, payload, timeout=timeout)
        want = 8 if budget is None else 12
        if len(reply) < want:
            raise ProtocolError(f"the RUN reply has {len(reply)} bytes instead of {want}")
        status, done = struct.unpack_from("<iI", reply)
        if budget is not None:
            (self.exit_taken,) = struct.unpack_from("<i", reply, 8)
        self.runs_done = done
        if status != 0:
            raise DeviceError(f"ek_model_invoke() returned {status} on the device after {done} of {runs} timed runs")
        if done != runs:
            raise ProtocolError(f"RUN reported {done} timed runs instead of {runs}")
        return done

    def _u32_values(self, command: Command, count: int) -> list[int]:
        values: list[int] = []
        while len(values) < count:
            chunk = min(TICKS_PER_FRAME, count - len(values))
            reply = self.request(command, struct.pack("<IH", len(values), chunk))
            if len(reply) != 4 * chunk:
                raise ProtocolError(f"asked {command.name} for {chunk} values, the device sent {len(reply)} bytes")
            values += struct.unpack(f"<{chunk}I", reply)
        return values

    def timings(self, count: int | None = None) -> list[int]:
        """Board timer ticks of each timed run of the last run() (the first `count`; all if None).

        Convert with info().timer_hz, or edgekit.run.emulate.tick_units().
        """
        self._require_v2("TIMINGS")
        return self._u32_values(Command.TIMINGS, self.runs_done if count is None else count)

    def profile(self) -> list[int]:
        """Ticks of each layer of the last inference (of the last timed run after run()).

        Needs firmware built with `make PROFILE=1`; otherwise DeviceError
        with code NOT_SUPPORTED.
        """
        info = self._require_v2("PROFILE")
        if not info.has_profile:
            raise DeviceError(
                f"the firmware of {info.model_name!r} was built without the per-layer profile: "
                "rebuild it with `make PROFILE=1`", ErrorCode.NOT_SUPPORTED)  # fmt: skip
        return self._u32_values(Command.PROFILE, info.num_layers)

    def reset(self, timeout: float = 10.0, wait: bool = True) -> str | None:
        """Reset the board (the firmware's RESET: SYSRESETREQ) and wait for its banner.

        Returns the model name from the new banner, or None with wait=False
        (then the next banner is expected, not a BoardReset).  Everything the
        device held is gone: set the input again.
        """
        self._require_v2("RESET")
        try:
            self.request(Command.RESET)
        except BoardReset:  # the reply was lost but the banner came: done
            return self._banner_model()
        self._session = False
        self._info = None
        self.runs_done = 0
        return self.wait_banner(timeout) if wait else None

    def _banner_model(self) -> str | None:
        """The model name in the last banner seen, or None."""
        match = _BANNER.search((self.banner or "").encode() + b"\n")
        return match.group(2).decode("ascii", errors="replace").strip() if match else None


def _read_waiting(port: Any, limit: int = 1 << 16) -> bytes:
    """The bytes already received by the port (without waiting), at most `limit`.

    Bounded, so a device that never stops talking cannot keep the host here.
    A socket:// port's in_waiting only says whether something is there, so
    this may take a few reads.
    """
    data = bytearray()
    try:
        while len(data) < limit:
            waiting = getattr(port, "in_waiting", 0) or 0
            if not waiting:
                break
            chunk = port.read(min(waiting, limit - len(data)))
            if not chunk:
                break
            data += chunk
    except _PORT_ERRORS as exc:
        raise LinkClosed(f"the connection to the device is closed ({exc})") from None
    return bytes(data)


def _command_name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return f"request type 0x{command:02X}"


def _parse_error(payload: bytes) -> tuple[ErrorCode | int, str]:
    """Return (code, one-sentence meaning) of an ERROR reply payload."""
    if not payload:
        return 0, "an ERROR reply without a code"
    try:
        code: ErrorCode | int = ErrorCode(payload[0])
        return code, code.meaning
    except ValueError:
        return payload[0], f"unknown error code {payload[0]}"
