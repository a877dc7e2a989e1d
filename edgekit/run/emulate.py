"""Run edgekit firmware on an emulated Cortex-M board (QEMU's Arm MPS2 FPGA images).

The firmware's UART0 is connected to a loopback TCP port, and the host talks
to it with :class:`edgekit.run.link.DeviceLink` exactly as it would to a real
board on /dev/ttyACM0.  The firmware stops QEMU through semihosting (EXIT
request: status 0; fault: status 1 and one "edgekit fault: ..." line on
QEMU's stderr).

    with Emulator("build/firmware.elf", board="mps2-an386") as emu:
        emu.link.wait_banner()
        print(emu.link.info())

    y = run_on_device("build/firmware.elf", x)    # x: int8 [N, input_size]

Timing: with ``icount=True`` QEMU runs under ``-icount shift=3,sleep=off``:
virtual time advances 2**3 = 8 ns per guest instruction, so the board's
25 MHz timers (SysTick, CMSDK TIMER0) advance one tick per 5 instructions
(``Emulator.instructions_per_tick``) and two sessions count exactly the same.
These are instruction counts, not Cortex-M cycles.  Without icount the timers
follow the host's wall clock.  :func:`tick_units` turns ticks into the unit
that means something for the run.

``transport="pty"`` connects UART0 to a pseudo-terminal instead
(``-serial pty``); ``Emulator.pty`` is its path ("/dev/pts/N"), which any
serial program can open like a USB port.  QEMU does not wait for it to be
opened: the boot banner is usually gone by then, as with a real board.

A guest reset (the firmware's RESET request: SYSRESETREQ) reboots the board;
``reboot=False`` makes QEMU exit instead (``-no-reboot``).

QEMU is always killed (by its PID) when the ``with`` block ends, also on an
exception or Ctrl-C, and every wait has a time limit.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import serial

from edgekit.errors import EdgekitError, ToolMissingError
from edgekit.run.link import DeviceLink, LinkClosed, LinkError
from edgekit.targets import TARGETS, Target

__all__ = [
    "MPS2_MEMORY",
    "Emulator",
    "EmulatorError",
    "QemuNotFound",
    "find_qemu",
    "machine_target",
    "qemu_machine",
    "run_firmware",
    "run_on_device",
    "tick_units",
]

QEMU = "qemu-system-arm"
DEFAULT_MACHINE = "mps2-an386"
ICOUNT_SHIFT = 3  # -icount shift=3: 8 ns of virtual time per instruction
MPS2_TIMER_HZ = 25_000_000  # SysTick and CMSDK TIMER0 on QEMU's MPS2 boards
_PTY_LINE = re.compile(r"char device redirected to (\S+)")

# Memory map shared by QEMU's mps2-an385/an386/an500 (firmware/boards/mps2/board.h):
# 4 MB of "flash" at 0 (QEMU loads the ELF there) and 4 MB of RAM at 0x20000000.
MPS2_MEMORY = dict(flash_origin=0x00000000, flash_size=0x00400000, ram_origin=0x20000000, ram_size=0x00400000)


def qemu_machine(name: str) -> str:
    """The QEMU machine for a machine name ("mps2-an386") or a target name ("cortex-m4").

    The target -> machine table is edgekit.targets.TARGETS (qemu_machine).
    """
    machines = {t.qemu_machine: t for t in TARGETS.values() if t.qemu_machine}
    if name in machines:
        return name
    target = TARGETS.get(name)
    if target is not None and target.qemu_machine:
        return target.qemu_machine
    choices = ", ".join(sorted(machines) + sorted(t.name for t in machines.values()))
    raise EmulatorError(f"no emulator board for {name!r}: use one of {choices}")


def machine_target(machine: str) -> Target:
    """The edgekit target (CPU flags, ...) that a QEMU machine emulates."""
    machine = qemu_machine(machine)
    return next(t for t in TARGETS.values() if t.qemu_machine == machine)


def tick_units(ticks: float, timer_source: str, timer_hz: int, instructions_per_tick: float | None = None) -> tuple[float, str]:
    """Express board timer ticks (DeviceLink.timings(), profile()) in a meaningful unit.

    timer_source, timer_hz: from DeviceLink.info().  instructions_per_tick:
    Emulator.instructions_per_tick (QEMU under icount), None on a real board.

    - QEMU under icount: (ticks x 5, "instructions") - exact instruction counts;
    - the DWT cycle counter: (ticks, "cycles");
    - another timer of known rate: (milliseconds, "ms");
    - otherwise: (ticks, "ticks").

    >>> tick_units(1000, "cmsdk-timer", 25_000_000, instructions_per_tick=5)
    (5000, 'instructions')
    >>> tick_units(25_000, "systick", 25_000_000)
    (1.0, 'ms')
    """
    if instructions_per_tick:
        return ticks * instructions_per_tick, "instructions"
    if timer_source == "dwt":
        return ticks, "cycles"
    if timer_hz:
        return ticks * 1000 / timer_hz, "ms"
    return ticks, "ticks"


class EmulatorError(EdgekitError):
    """QEMU could not be started, or the firmware misbehaved under it."""


class QemuNotFound(ToolMissingError, EmulatorError):
    """qemu-system-arm is not installed."""


def find_qemu() -> str:
    """Path of qemu-system-arm, or QemuNotFound with the command that installs it."""
    path = shutil.which(QEMU)
    if path is None:
        raise QemuNotFound(f"{QEMU} was not found on PATH: install it: sudo apt-get install qemu-system-arm")
    return path


# QEMU processes not yet stopped, killed at interpreter exit as a last resort.
_LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_LIVE):
        _kill(process)


def _kill(process: subprocess.Popen) -> None:
    """Kill one QEMU by its PID and reap it (bounded)."""
    if process.poll() is None:
        try:
            process.kill()
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass  # left for the kernel; nothing else can be done
    _LIVE.discard(process)


def _close_port(port) -> None:
    """Close a socket:// port at once.

    pyserial's close() of a socket:// port sleeps 0.3 s "in case of quick
    reconnects"; each emulator run uses a fresh port, so close the socket
    directly when it is there.
    """
    sock = getattr(port, "_socket", None)
    try:
        if sock is not None:
            sock.close()
            port._socket = None
            port.is_open = False
        else:
            port.close()
    except (OSError, serial.SerialException):
        pass


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Emulator:
    """One QEMU run of a firmware image, with its serial link.

    elf_path: the firmware (ELF linked for the board).
    board: QEMU machine ("mps2-an386", "mps2-an500", "mps2-an385") or
        target name ("cortex-m4", "cortex-m7", "cortex-m3").
    icount: run with `-icount shift=3,sleep=off`: deterministic timers, one
        25 MHz tick = 5 instructions (instructions_per_tick).
    icount_shift: the same with another shift N (2**N ns per instruction).
    transport: "tcp" (a loopback socket; QEMU waits for the host before the
        firmware starts) or "pty" (a pseudo-terminal, path in `pty`).
    reboot: a guest reset reboots the board (True) or ends QEMU (False).
    start_timeout: seconds allowed for QEMU to open its serial port.
    link_timeout / invoke_timeout: passed on to DeviceLink.
    """

    def __init__(
        self,
        elf_path: str | os.PathLike,
        board: str = DEFAULT_MACHINE,
        *,
        icount: bool = False,
        icount_shift: int | None = None,
        transport: str = "tcp",
        reboot: bool = True,
        start_timeout: float = 10.0,
        link_timeout: float = 5.0,
        invoke_timeout: float = 60.0,
    ):
        if transport not in ("tcp", "pty"):
            raise EmulatorError(f"transport must be 'tcp' or 'pty', not {transport!r}")
        self.elf_path = Path(elf_path)
        self.machine = qemu_machine(board)
        self.icount_shift = ICOUNT_SHIFT if icount and icount_shift is None else icount_shift
        self.transport = transport
        self.reboot = reboot
        self.start_timeout = start_timeout
        self.link_timeout = link_timeout
        self.invoke_timeout = invoke_timeout
        self.port: int | None = None
        self.pty: str | None = None
        self._process: subprocess.Popen | None = None
        self._log = None
        self._last_log = ""
        self._serial = None
        self._link: DeviceLink | None = None

    @property
    def icount(self) -> bool:
        return self.icount_shift is not None

    @property
    def instructions_per_tick(self) -> float | None:
        """Guest instructions per tick of the board's 25 MHz timers under icount, else None.

        40 ns per tick / 2**shift ns per instruction: 5 with shift=3.
        """
        if self.icount_shift is None:
            return None
        value = (1e9 / MPS2_TIMER_HZ) / 2**self.icount_shift
        return int(value) if value == int(value) else value

    # -- lifetime ----------------------------------------------------------------

    def command(self, port: int | None) -> list[str]:
        """The QEMU command line for a serial port number (or the pty when None)."""
        serial_arg = "pty" if port is None else f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"
        cmd = [
            find_qemu(),
            "-M", self.machine,
            "-display", "none",
            "-monitor", "none",
            "-semihosting-config", "enable=on,target=native",
            "-serial", serial_arg,
            "-kernel", str(self.elf_path),
        ]  # fmt: skip
        if not self.reboot:
            cmd.append("-no-reboot")
        if self.icount_shift is not None:
            cmd += ["-icount", f"shift={self.icount_shift},sleep=off"]
        return cmd

    def start(self) -> Emulator:
        """Start QEMU and connect to its serial port (called by `with`)."""
        if not self.elf_path.is_file():
            raise EmulatorError(f"firmware file {self.elf_path} does not exist: build it first")
        find_qemu()
        try:
            deadline = time.monotonic() + self.start_timeout
            if self.transport == "pty":
                self._launch_pty(deadline)
                return self  # the link opens the pty on first use (`link`)
            for _ in range(3):  # another process may grab the port first
                if self._launch(deadline):
                    break
            else:
                raise EmulatorError("QEMU could not listen on a free loopback port after 3 attempts")
            self._link = DeviceLink(self._serial, timeout=self.link_timeout, invoke_timeout=self.invoke_timeout)
        except BaseException:  # includes KeyboardInterrupt: never leave QEMU behind
            self.stop()
            raise
        return self

    def _spawn(self, port: int | None) -> None:
        self._log = tempfile.TemporaryFile(prefix="edgekit-qemu-")
        self._process = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches Python, which then kills QEMU
        )
        _LIVE.add(self._process)

    def _launch_pty(self, deadline: float) -> None:
        """Start QEMU with -serial pty and read the pty's path from its output."""
        self.stop()
        self._spawn(None)
        while True:
            match = _PTY_LINE.search(self.log())
            if match:
                self.pty = match.group(1)
                return
            status = self._process.poll()
            if status is not None:
                raise EmulatorError(f"QEMU exited with status {status} before opening its pty: {self.log_summary()}")
            if time.monotonic() >= deadline:
                raise EmulatorError(f"QEMU did not report its pty within {self.start_timeout:g} s: {self.log_summary()}")
            time.sleep(0.01)

    def _launch(self, deadline: float) -> bool:
        """Start QEMU on a fresh port; False if the port turned out to be taken."""
        self.stop()
        self.port = _free_port()
        self._spawn(self.port)
        url = f"socket://127.0.0.1:{self.port}"
        while True:
            status = self._process.poll()
            if status is not None:
                if "Address already in use" in self.log():
                    return False
                raise EmulatorError(
                    f"QEMU exited with status {status} before opening its serial port: {self.log_summary()}"
                )
            try:
                self._serial = serial.serial_for_url(url, timeout=DeviceLink.POLL_INTERVAL)
                return True
            except serial.SerialException:
                pass
            if time.monotonic() >= deadline:
                raise EmulatorError(f"QEMU did not open its serial port within {self.start_timeout:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill QEMU (if still running) and release the port and log."""
        self._link = None
        if self._serial is not None:
            _close_port(self._serial)
            self._serial = None
        if self._process is not None:
            _kill(self._process)
        if self._log is not None:
            self._last_log = self.log()
            self._log.close()
            self._log = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- use ---------------------------------------------------------------------

    @property
    def link(self) -> DeviceLink:
        """The serial link to the firmware (after start(); with a pty, opened on first use)."""
        if self._link is None and self.transport == "pty" and self.pty and self.returncode() is None:
            self._link = DeviceLink(self.serial, timeout=self.link_timeout, invoke_timeout=self.invoke_timeout)
        if self._link is None:
            raise EmulatorError("the emulator is not running: use it in a `with` block or call start()")
        return self._link

    @property
    def serial(self):
        """The raw pyserial port connected to the firmware's UART0 (after start(); a pty opens here)."""
        if self._serial is None and self.transport == "pty" and self.pty and self.returncode() is None:
            try:
                self._serial = serial.serial_for_url(self.pty, timeout=DeviceLink.POLL_INTERVAL)
            except serial.SerialException as exc:
                raise EmulatorError(f"cannot open QEMU's pty {self.pty}: {exc}") from None
        if self._serial is None:
            raise EmulatorError("the emulator is not running: use it in a `with` block or call start()")
        return self._serial

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def returncode(self) -> int | None:
        """QEMU's exit status, or None while it runs."""
        return None if self._process is None else self._process.poll()

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for QEMU to exit by itself and return its exit status."""
        if self._process is None:
            raise EmulatorError("the emulator was never started")
        try:
            status = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EmulatorError(f"QEMU did not exit within {timeout:g} s: the firmware did not stop") from None
        _LIVE.discard(self._process)
        return status

    def log(self) -> str:
        """Everything QEMU printed so far (its messages and the firmware's semihosting output)."""
        if self._log is None:
            return self._last_log
        size = os.fstat(self._log.fileno()).st_size
        # pread: the file offset is shared with QEMU and must not move.
        return os.pread(self._log.fileno(), size, 0).decode("utf-8", errors="replace")

    def log_summary(self) -> str:
        """QEMU's last three output lines, without its "waiting for connection" notice."""
        lines = [
            line.strip()
            for line in self.log().splitlines()
            if line.strip() and "QEMU waiting for connection" not in line
        ]
        return " | ".join(lines[-3:]) if lines else "it printed nothing"

    def explain(self, error: LinkError, wait: float = 1.0) -> EmulatorError:
        """Turn a link failure into an error that says what QEMU and the firmware did."""
        try:
            status = self._process.wait(timeout=wait) if self._process else None
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            return EmulatorError(f"{error} (QEMU is still running; its output: {self.log_summary()})")
        return EmulatorError(f"{error} (QEMU exited with status {status}; its output: {self.log_summary()})")


def run_on_device(
    elf_path: str | os.PathLike,
    inputs: np.ndarray,
    board: str = DEFAULT_MACHINE,
    *,
    icount_shift: int | None = None,
    boot_timeout: float = 10.0,
    invoke_timeout: float = 60.0,
) -> np.ndarray:
    """Run a firmware's model on each input sample in QEMU and return the outputs.

    inputs: int8 array of shape [N, input_size] (or [N, ...] with
        input_size elements per sample).
    Returns int8 [N, output_size].  Boots the firmware, checks the sizes it
    reports with INFO, runs SET_INPUT / INVOKE / GET_OUTPUT per sample, sends
    EXIT and checks that QEMU exits with status 0.
    """
    x = np.asarray(inputs)
    if x.dtype != np.int8:
        raise EdgekitError(f"inputs must be int8, not {x.dtype}: quantize them with the model's input scale and zero point")
    if x.ndim < 2 or x.shape[0] == 0:
        raise EdgekitError(f"inputs must have shape [N, input_size] with N >= 1, not {list(x.shape)}")
    x = np.ascontiguousarray(x.reshape(x.shape[0], -1))

    with Emulator(elf_path, board, icount_shift=icount_shift, start_timeout=boot_timeout, invoke_timeout=invoke_timeout) as emu:
        link = emu.link
        try:
            link.wait_banner(boot_timeout)
            info = link.info()
            if info.input_size != x.shape[1]:
                raise EmulatorError(
                    f"the firmware's model {info.model_name!r} takes {info.input_size} input bytes, "
                    f"but each input sample has {x.shape[1]}"
                )
            outputs = np.empty((x.shape[0], info.output_size), dtype=np.int8)
            for index, sample in enumerate(x):
                link.set_input(sample.tobytes())
                link.invoke()
                outputs[index] = np.frombuffer(link.get_output(info.output_size), dtype=np.int8)
            try:
                link.exit()
            except LinkClosed:
                pass  # QEMU may close the socket right after the reply; its status decides
        except LinkError as exc:
            raise emu.explain(exc) from exc
        status = emu.wait_exit(boot_timeout)
        if status != 0:
            raise EmulatorError(f"QEMU exited with status {status} after EXIT: {emu.log_summary()}")
    return outputs


def run_firmware_flat(model, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Build an export directory's firmware and run a batch on its emulated board.

    model: an edgekit.api.CompiledModel (export directory + report.json).
    Returns (int8 [N, total output bytes]: every output of each sample back to
    back, as the firmware's output buffer holds them; QEMU machine name); used by
    `edgekit verify --emulate`.
    """
    from edgekit.build import firmware_elf  # the build step, imported when needed

    target = TARGETS.get(model.report["target"])
    if target is None or not target.qemu_machine:
        emulated = ", ".join(t.name for t in TARGETS.values() if t.qemu_machine)
        raise EmulatorError(
            f"{model.out_dir} was exported for {model.report['target']}, which has no emulator board: "
            f"export it for {emulated} to run it in QEMU"
        )
    y = run_on_device(firmware_elf(model.out_dir), model.quantize(x), board=target.qemu_machine)
    if y.shape[1] != model.output_size:
        raise EmulatorError(f"the firmware gives {y.shape[1]} output bytes, but {model.out_dir} has "
                            f"{model.output_size}: export and build it again")
    return y, target.qemu_machine


def run_firmware(model, x: np.ndarray):
    """run_firmware_flat's outputs as CompiledModel.predict answers: (int8 [N, *output_shape],
    or for a model with several outputs a list of them, one per output; QEMU machine name)."""
    from edgekit.api import model_answer

    y, machine = run_firmware_flat(model, x)
    return model_answer(y, model.output_layout), machine
