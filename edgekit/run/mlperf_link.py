"""Host side of the MLPerf Tiny / EEMBC runner's ASCII protocol (firmware/mlperf_main.c, built
with `make PROTOCOL=mlperf-tiny`; firmware/PROTOCOL.md, "MLPerf Tiny protocol").

:class:`MlperfTinyLink` has the method names of edgekit's own framed protocol
(:class:`edgekit.run.link.DeviceLink`) where they make sense, and shares its port handling and
errors.
"""
from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from typing import Any

from edgekit.run.link import (_PORT_ERRORS, BoardReset, DeviceError, DeviceInfo, DeviceLink, ErrorCode, LinkClosed, PortSession,
                              LinkTimeout, ProtocolError, _open_serial, _read_waiting)

MLPERF_READY = "m-ready"
MLPERF_BOOT = "m-init-done"  # printed once per boot: in a session it means a reboot
_MLPERF_KEY_VALUE = re.compile(r"^m-([a-z-]+)-\[(.*)\]$")
_MLPERF_LAP = re.compile(r"^m-lap-us-(\d+)$")


@dataclass(frozen=True)
class MlperfInference:
    """What one `infer N W%` reported."""

    runs: int
    warmup: int
    start_us: int  # the two m-lap-us-<t> timestamps around the N timed runs
    end_us: int
    ticks: int | None  # m-infer-ticks-[..]: board timer ticks of the N runs (edgekit firmware only)
    results: tuple[float, ...]  # m-results-[..]: dequantized outputs of the last run

    @property
    def elapsed_us(self) -> int:
        return self.end_us - self.start_us


class MlperfTinyLink(PortSession):
    """A connection to firmware speaking the MLPerf Tiny / EEMBC runner protocol.

    ASCII commands end with '%'; the device answers with lines and ends every
    answer with "m-ready" (firmware/PROTOCOL.md, "MLPerf Tiny protocol").
    Same method names as DeviceLink where they make sense: wait_banner,
    info, set_input, invoke, run, get_output, exit (an edgekit addition to
    the protocol); plus name(), results(), infer() and command() for the
    raw protocol.  timings() and profile()
    raise DeviceError (NOT_SUPPORTED): this protocol only reports the total
    time of N runs (last_inference.ticks / elapsed_us).

    port: as for DeviceLink.  chunk_size: input bytes per `db` command; 32
    keeps each command under the reference firmware's 80 characters
    (edgekit's mlperf_main.c accepts up to 126).
    """

    POLL_INTERVAL = DeviceLink.POLL_INTERVAL

    def __init__(
        self,
        port: str | Any,
        timeout: float = 5.0,
        *,
        invoke_timeout: float = 60.0,
        baudrate: int = 115200,
        chunk_size: int = 32,
    ):
        if not 1 <= chunk_size <= 126:
            raise ValueError(f"chunk_size must be between 1 and 126, not {chunk_size}")
        self._serial, self._owns_serial = _open_serial(port, baudrate, self.POLL_INTERVAL)
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.chunk_size = chunk_size
        self.last_inference: MlperfInference | None = None
        self._buffer = bytearray()
        self._session = False
        self._info: DeviceInfo | None = None

    # -- lines -------------------------------------------------------------------

    def _read_line(self, deadline: float, what: str) -> str:
        """One line without its line ending, before deadline."""
        while b"\n" not in self._buffer:
            try:
                data = self._serial.read(max(1, getattr(self._serial, "in_waiting", 0) or 1))
            except _PORT_ERRORS as exc:
                raise LinkClosed(f"the device closed the connection while the host waited for {what} ({exc})") from None
            self._buffer += data
            if not data and time.monotonic() >= deadline:
                raise LinkTimeout(f"no complete line from the device within the time limit while the host waited for {what}")
            if len(self._buffer) > 1 << 20:
                raise ProtocolError(f"the device sent over 1 MB without a line ending while the host waited for {what}")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line.decode("ascii", errors="replace").strip("\r\0 ")

    def _drop_stale_input(self, what: str) -> None:
        stale = bytearray(self._buffer)
        self._buffer.clear()
        stale += _read_waiting(self._serial)
        if self._session and MLPERF_BOOT.encode() in stale:
            after_boot = stale[stale.rindex(MLPERF_BOOT.encode()):]
            if MLPERF_READY.encode() not in after_boot:
                self._finish_boot_lines(what)
            raise BoardReset(f"the board reset before {what} was sent: it printed {MLPERF_BOOT!r} again")

    def _finish_boot_lines(self, what: str, limit: float = 2.0) -> None:
        """After a reboot was seen, consume the boot output up to its "m-ready", so that the
        next command's answer does not start with it (bounded; a silent board is left as is)."""
        deadline = time.monotonic() + limit
        try:
            while self._read_line(deadline, what) != MLPERF_READY:
                pass
        except LinkTimeout:
            pass

    def wait_banner(self, timeout: float = 10.0) -> str:
        """Wait for the boot lines ("m-init-done", then "m-ready"); return the model name (profile%).

        A board that booted before the port was opened (a real one, or QEMU
        with a pty) printed them already: call info() or name() directly.
        """
        deadline = time.monotonic() + timeout
        booted = False
        while True:
            try:
                line = self._read_line(deadline, "the boot lines")
            except LinkTimeout:
                raise LinkTimeout(f"no 'm-init-done' / 'm-ready' from the device within {timeout:g} s: "
                                  "check the port, the baud rate and that the firmware speaks the MLPerf Tiny protocol") from None  # fmt: skip
            booted = booted or line == MLPERF_BOOT
            if booted and line == MLPERF_READY:
                break
        self._session = True
        self._info = None
        return self.info().model_name

    def command(self, text: str, timeout: float | None = None) -> list[str]:
        """Send `text` + '%' and return the answer's lines up to (without) "m-ready".

        An "e-[...]" line raises DeviceError once the answer is complete; the
        boot line "m-init-done" in a session raises BoardReset.
        """
        if "%" in text or "\n" in text:
            raise ValueError(f"an MLPerf Tiny command cannot contain '%' or a line break: {text!r}")
        what = f"the answer to '{text}%'"
        self._drop_stale_input(f"'{text}%'")
        try:
            self._serial.write(f"{text}%".encode("ascii"))
        except _PORT_ERRORS as exc:
            raise LinkClosed(f"cannot write to the device: the connection is closed ({exc})") from None
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        while True:
            line = self._read_line(deadline, what)
            if line == MLPERF_READY:
                break
            if line == MLPERF_BOOT and self._session:
                self._finish_boot_lines(what)
                raise BoardReset(f"the board reset while the host waited for {what}: it printed {MLPERF_BOOT!r} again")
            if line:
                lines.append(line)
        self._session = True
        errors = [line[3:-1] for line in lines if line.startswith("e-[") and line.endswith("]")]
        if errors:
            raise DeviceError(f"the device rejected '{text}%': {'; '.join(errors)}")
        return lines

    @staticmethod
    def _values(lines: list[str]) -> dict[str, str]:
        """{key: value} of the answer's "m-<key>-[<value>]" lines."""
        values = {}
        for line in lines:
            match = _MLPERF_KEY_VALUE.match(line)
            if match:
                values[match.group(1)] = match.group(2)
        return values

    # -- commands ------------------------------------------------------------------

    def name(self) -> str:
        """The device name from `name%` ("m-name-dut-[<name>]")."""
        values = self._values(self.command("name"))
        if "name-dut" not in values:
            raise ProtocolError("the answer to 'name%' has no 'm-name-dut-[...]' line")
        return values["name-dut"]

    def info(self) -> DeviceInfo:
        """The model and board, from `profile%` (edgekit's m-<key>-[...] lines)."""
        values = self._values(self.command("profile"))
        try:
            inp, out = _mlperf_fields(values["input"]), _mlperf_fields(values["output"])
            timer, cpu = _mlperf_fields(values["timer"]), _mlperf_fields(values["cpu"])
            info = DeviceInfo(
                protocol_version=0,  # not edgekit's framed protocol
                max_payload=self.chunk_size,
                input_size=int(inp["size"]),
                output_size=int(out["size"]),
                arena_size=int(values["arena-size"]),
                input_scale=_float_from_bits(inp["scale"]),
                input_zero_point=int(inp["zero-point"]),
                output_scale=_float_from_bits(out["scale"]),
                output_zero_point=int(out["zero-point"]),
                cpuid=int(cpu["cpuid"], 16),
                init_status=int(values["init-status"]),
                model_name=values["model"],
                weights_hash=values["weights-hash"],
                input_shape=tuple(int(d) for d in inp["shape"].split("x")),
                output_shape=tuple(int(d) for d in out["shape"].split("x")),
                timer_source=timer["source"],
                timer_hz=int(timer["hz"]),
                cpu_hz=int(cpu["hz"]),
                num_layers=int(values["layers"]),
                max_runs=1_000_000_000,
                has_profile=False,
                timer_overhead=int(timer["overhead"]),
            )
        except (KeyError, ValueError) as exc:
            raise ProtocolError(f"the answer to 'profile%' lacks edgekit's model lines or garbles them ({exc}): "
                                "is this edgekit firmware built with PROTOCOL=mlperf-tiny?") from None  # fmt: skip
        self._info = info
        return info

    def set_input(self, data: bytes) -> None:
        """Load the input tensor: `db load N%`, then `db <hex>%` in chunks."""
        data = bytes(data)
        self.command(f"db load {len(data)}")
        lines: list[str] = []
        for start in range(0, len(data), self.chunk_size):
            lines = self.command(f"db {data[start : start + self.chunk_size].hex()}")
        if "m-load-done" not in lines:
            raise ProtocolError(f"the device did not confirm the {len(data)} input bytes with 'm-load-done'")

    def infer(self, runs: int, warmup: int = 0, timeout: float | None = None) -> MlperfInference:
        """`infer N W%`: W untimed then N timed inferences on the loaded input."""
        if runs < 1 or warmup < 0:
            raise ValueError(f"infer needs runs >= 1 and warmup >= 0, not {runs} and {warmup}")
        if timeout is None:
            timeout = self.invoke_timeout * (runs + warmup)
        lines = self.command(f"infer {runs} {warmup}", timeout=timeout)
        laps = [int(m.group(1)) for m in map(_MLPERF_LAP.match, lines) if m]
        values = self._values(lines)
        if len(laps) != 2 or "results" not in values:
            raise ProtocolError(f"the answer to 'infer {runs} {warmup}%' lacks its two m-lap-us lines or its m-results line")
        ticks = int(values["infer-ticks"]) if "infer-ticks" in values else None
        self.last_inference = MlperfInference(runs, warmup, laps[0], laps[1], ticks, _parse_results(values["results"]))
        return self.last_inference

    def run(self, runs: int, warmup: int = 0, timeout: float | None = None) -> int:
        """Like DeviceLink.run: returns the timed runs done; details in last_inference."""
        return self.infer(runs, warmup, timeout).runs

    def invoke(self) -> None:
        """Run the model once on the loaded input (`infer 1 0%`)."""
        self.infer(1, 0, timeout=self.invoke_timeout)

    def results(self) -> list[float]:
        """`results%`: the dequantized outputs of the last inference."""
        values = self._values(self.command("results"))
        if "results" not in values:
            raise ProtocolError("the answer to 'results%' has no 'm-results-[...]' line")
        return list(_parse_results(values["results"]))

    def get_output(self, length: int | None = None) -> bytes:
        """The int8 output tensor of the last inference, recovered from `results%`.

        edgekit's firmware prints each value with enough decimals that
        round(y / scale) + zero_point gives back the int8 exactly.
        """
        info = self._info or self.info()
        values = self.results()
        if len(values) != info.output_size:
            raise ProtocolError(f"'results%' sent {len(values)} values, the model has {info.output_size} outputs")
        q = bytes((max(-128, min(127, round(v / info.output_scale) + info.output_zero_point))) & 0xFF for v in values)
        return q[:length] if length is not None else q

    def exit(self, success: bool = True) -> None:
        """Stop the firmware (edgekit's `exit%`; QEMU then exits with status 0, or 1 if not success).
        As for DeviceLink.exit, a port that closes as the firmware exits is no error."""
        try:
            self.command("exit" if success else "exit 1")
        except LinkClosed:
            pass

    def timings(self, count: int | None = None) -> list[int]:
        raise DeviceError("the MLPerf Tiny protocol reports only the total time of N runs "
                          "(last_inference.ticks or elapsed_us), not each run's", ErrorCode.NOT_SUPPORTED)  # fmt: skip

    def profile(self) -> list[int]:
        raise DeviceError("the MLPerf Tiny protocol has no per-layer profile: use edgekit's protocol "
                          "with firmware built by `make PROFILE=1`", ErrorCode.NOT_SUPPORTED)  # fmt: skip


def _mlperf_fields(text: str) -> dict[str, str]:
    """"size=490,shape=1x49x10x1" -> {"size": "490", "shape": "1x49x10x1"}."""
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def _float_from_bits(text: str) -> float:
    return struct.unpack("<f", struct.pack("<I", int(text, 16)))[0]


def _parse_results(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ProtocolError(f"the m-results line holds something other than numbers: {text[:80]!r}") from None
