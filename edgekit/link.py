"""Host side of the edgekit serial protocol (firmware/device_main.c).

The firmware prints one ASCII banner line at boot, then answers binary
frames, one reply per request (full description: firmware/PROTOCOL.md)::

    C5 CB | type u8 | length u16 LE | payload | CRC-16/CCITT-FALSE u16 LE

The CRC covers every byte before it (sync, type, length, payload).  A reply
has type ``request | 0x80``; ``0xFF`` is an ERROR reply carrying an error
code and the request type.

:class:`DeviceLink` speaks it over anything pyserial opens: a real board
(``DeviceLink("/dev/ttyACM0")``) or QEMU's TCP serial port
(``DeviceLink("socket://127.0.0.1:4444")``, see :mod:`edgekit.emulate`)::

    link = DeviceLink("/dev/ttyACM0")
    link.wait_banner()
    info = link.info()
    link.set_input(x.tobytes())
    link.invoke()
    y = link.get_output(info.output_size)

Every wait is bounded.  A reply that arrives corrupted, or an ERROR saying
that the request arrived corrupted, makes the request be sent again (at most
``retries`` times); all requests are idempotent except EXIT, which is never
repeated.  Failures raise a :class:`LinkError` subclass with a one-sentence
message.
"""

from __future__ import annotations

import enum
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

import serial

from edgekit.errors import EdgekitError

__all__ = [
    "CRC_INIT",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SYNC",
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

PROTOCOL_VERSION = 1
SYNC = b"\xc5\xcb"  # "EK" with the high bit set: never an ASCII byte
HEADER_SIZE = 5  # sync (2), type (1), payload length (2)
MAX_PAYLOAD = 1024
REPLY_FLAG = 0x80
ERROR_TYPE = 0xFF
CRC_INIT = 0xFFFF
MAX_WRITE = 1024  # bytes per serial write call
_BANNER = re.compile(rb"edgekit (ready|init-failed) ([^\r\n]*)\r?\n")


class Command(enum.IntEnum):
    """Request types (reply type = request | 0x80)."""

    INFO = 0x01
    SET_INPUT = 0x02
    INVOKE = 0x03
    GET_OUTPUT = 0x04
    EXIT = 0x05


class ErrorCode(enum.IntEnum):
    """Codes carried by an ERROR reply, with the sentence shown to users."""

    BAD_CRC = 1
    UNKNOWN_TYPE = 2
    FRAME_TOO_LONG = 3
    BAD_LENGTH = 4
    OUT_OF_RANGE = 5
    NOT_READY = 6

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
}

# Errors that mean "the request was damaged on the way": sending it again may work.
_TRANSIENT_ERRORS = {ErrorCode.BAD_CRC, ErrorCode.FRAME_TOO_LONG}


class LinkError(EdgekitError):
    """Base class of every error raised by the serial link."""


class LinkTimeout(LinkError):
    """The device did not answer in time."""


class LinkClosed(LinkError):
    """The connection to the device was closed (e.g. the emulator exited)."""


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
    """The INFO reply: what the firmware's model.h says about the model."""

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

    _FIXED = struct.Struct("<HHIIIfifiIiB")

    @classmethod
    def from_payload(cls, payload: bytes) -> DeviceInfo:
        fixed = cls._FIXED
        if len(payload) < fixed.size:
            raise ProtocolError(f"the INFO reply has {len(payload)} bytes, fewer than the {fixed.size} of protocol version 1")
        *values, name_len = fixed.unpack_from(payload)
        name = payload[fixed.size : fixed.size + name_len]
        if len(name) != name_len:
            raise ProtocolError("the INFO reply is cut short inside the model name")
        # Fields added by later protocol versions follow the name: ignored here.
        return cls(*values, model_name=name.decode("ascii", errors="replace"))


# ---------------------------------------------------------------------------
# The link


class DeviceLink:
    """A connection to edgekit firmware over a serial port.

    port: a pyserial URL or device name ("/dev/ttyACM0", "socket://host:port",
        "loop://"), or an already open serial.Serial-like object (anything with
        read, write and reset_input_buffer; the link then sets its timeout).
    timeout: seconds to wait for each reply (INVOKE uses invoke_timeout).
    invoke_timeout: seconds to wait for one inference.
    retries: how many times a damaged request or reply is sent again.
    chunk_size: data bytes per SET_INPUT / GET_OUTPUT frame (1..1020).
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
        if isinstance(port, str):
            try:
                self._serial = serial.serial_for_url(port, baudrate=baudrate, timeout=self.POLL_INTERVAL)
            except (serial.SerialException, ValueError) as exc:
                raise LinkClosed(f"cannot open serial port {port!r}: {exc}") from None
            self._owns_serial = True
        else:
            self._serial = port
            self._serial.timeout = self.POLL_INTERVAL
            self._owns_serial = False
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.retries = retries
        self.chunk_size = chunk_size
        self.retries_used = 0  # total requests sent again, for tests and diagnostics
        self.banner: str | None = None
        self._pending = bytearray()  # bytes read from the port but not consumed yet
        self._info: DeviceInfo | None = None

    # -- context manager -----------------------------------------------------

    def __enter__(self) -> DeviceLink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the port if this link opened it."""
        if self._owns_serial:
            self._serial.close()

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
            except serial.SerialException as exc:
                raise LinkClosed(f"the device closed the connection while the host waited for {what} ({exc})") from None
            if data:
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
        except serial.SerialException as exc:
            raise LinkClosed(f"cannot write to the device: the connection is closed ({exc})") from None

    def discard_input(self, quiet: float = 0.1, limit: float = 1.0) -> None:
        """Drop received bytes until the line has been quiet for `quiet` s (at most `limit` s)."""
        self._pending.clear()
        end = time.monotonic() + limit
        last_data = time.monotonic()
        while time.monotonic() < min(end, last_data + quiet):
            try:
                if self._serial.read(4096):
                    last_data = time.monotonic()
            except serial.SerialException:
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
                self.banner = match.group(0).decode("ascii", errors="replace").strip()
                status, rest = match.group(1).decode(), match.group(2).decode("ascii", errors="replace").strip()
                if status == "ready":
                    return rest
                raise DeviceError(f"the firmware started but ek_model_init() failed (banner {self.banner!r})")
            if time.monotonic() >= deadline:  # noise that never stops
                raise LinkTimeout(no_banner)
            # Keep memory bounded while skipping garbage, but keep a partial banner.
            if len(seen) > 4096:
                del seen[:-512]

    # -- frames ----------------------------------------------------------------

    def send_frame(self, frame_type: int, payload: bytes = b"") -> None:
        """Encode and send one frame."""
        self.write(encode_frame(frame_type, payload))

    def read_frame(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Receive one frame and return (type, payload), skipping bytes before a sync.

        Raises LinkTimeout if no frame starts in time, FrameError if one
        arrives damaged (its bytes are then dropped).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        # Hunt for the sync pair.
        buffer = bytearray()
        while True:
            buffer += self._read_some(deadline, "reply")
            index = buffer.find(SYNC)
            if index >= 0:
                self._pending[:0] = buffer[index + len(SYNC) :]
                break
            del buffer[:-1]  # keep a trailing first sync byte
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
        attempts = 1 if command == Command.EXIT else 1 + self.retries
        last_problem = ""
        for attempt in range(attempts):
            if attempt:
                self.retries_used += 1
                self.discard_input()
            self._drop_stale_input()
            self.send_frame(command, payload)
            try:
                reply_type, reply = self._read_reply(command, timeout)
            except FrameError as exc:
                last_problem = str(exc)
                continue
            except LinkTimeout:
                if command in (Command.INVOKE, Command.EXIT) or attempt + 1 == attempts:
                    limit = self.timeout if timeout is None else timeout
                    raise LinkTimeout(f"no reply to {name} within {limit:g} s: the firmware may have hung or crashed") from None
                # The device may be stuck inside a truncated frame: flush it out.
                last_problem = f"no reply to {name}"
                self.resync()
                continue
            if reply_type == ERROR_TYPE:
                code, meaning = _parse_error(reply)
                if code in _TRANSIENT_ERRORS:
                    last_problem = meaning
                    continue
                raise DeviceError(f"the device rejected {name}: {meaning}", code)
            return reply
        raise FrameError(f"{name} failed {attempts} times ({last_problem}): the serial line is unreliable")

    def _drop_stale_input(self) -> None:
        """Forget bytes received before a request: they cannot be its reply."""
        self._pending.clear()
        reset = getattr(self._serial, "reset_input_buffer", None)
        if reset is not None:
            try:
                reset()
            except serial.SerialException as exc:
                raise LinkClosed(f"the connection to the device is closed ({exc})") from None

    def _read_reply(self, command: int, timeout: float | None) -> tuple[int, bytes]:
        """Read frames until the reply to `command` or an ERROR arrives."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame_type, payload = self.read_frame(max(0.0, deadline - time.monotonic()))
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
        if info.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the firmware speaks protocol version {info.protocol_version}, this edgekit speaks {PROTOCOL_VERSION}: rebuild the firmware"
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
        """Tell the firmware to stop (QEMU then exits with status 0, or 1 if not success)."""
        self.request(Command.EXIT, b"" if success else b"\x01")


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
