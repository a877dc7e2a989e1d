"""Device side and host<->device link: firmware/, edgekit/run/link.py, edgekit/run/emulate.py.

A hand-written stand-in model (tests/data/fake_model) is compiled
  - into the host runner (firmware/host_main.c) with gcc and the sanitizers,
  - into the firmware (firmware/device_main.c + firmware/boards/mps2) for the
    emulated Cortex-M3, M4F and M7 boards,
and every output is compared byte for byte with a numpy version of it.  The
firmware tests also check the protocol's error replies and the link's
recovery from damaged frames and from noise before the banner, and the
version 2 requests: RUN/TIMINGS, PROFILE, RESET (the board really reboots)
and BoardReset when a board reboots in the middle of a session; the
pseudo-terminal transport.  Timing on a real model: test_device_timing.py;
the MLPerf Tiny protocol: test_mlperf_protocol.py.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path

import jinja2
import numpy as np
import pytest
import serial

from conftest import assert_bit_exact
from edgekit.run import emulate
from edgekit.run.emulate import MPS2_MEMORY, Emulator, EmulatorError, machine_target, run_on_device
from edgekit.run.link import (
    SYNC,
    BoardReset,
    Command,
    DeviceError,
    DeviceInfo,
    DeviceLink,
    ErrorCode,
    FrameError,
    LinkTimeout,
    ProtocolError,
    crc16,
    decode_frame,
    encode_frame,
)

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
FAKE_MODEL = ROOT / "tests" / "data" / "fake_model"
IN_SIZE, OUT_SIZE = 300, 40  # the fake model's default sizes (model.h)

# Tests marked "emulator" use conftest's fixtures `arm_toolchain` / `qemu`, which
# skip them when the tools are missing (and fail them under CI).


# ---------------------------------------------------------------------------
# Building: every compile command the tests use is in build().

COMMON_CFLAGS = ["-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror"]
FIRMWARE_CFLAGS = ["-ffunction-sections", "-fdata-sections"]
FIRMWARE_LDFLAGS = ["--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections"]
HOST_CFLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
STACK_SIZE = 16 * 1024


def render_link_script(path: Path, **memory: int) -> None:
    template = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    ).get_template("link.ld.j2")
    path.write_text(template.render(**memory))


def build(target: str, out_dir: Path, defines: tuple[str, ...] = (), memory: dict | None = None, check: bool = True,
          main: str = "device_main.c"):
    """Compile the fake model for `target` ("host" or a QEMU machine) into out_dir.

    Host:   gcc  COMMON_CFLAGS HOST_CFLAGS  host_main.c model.c
    Device: arm-none-eabi-gcc  <target arch_flags> COMMON_CFLAGS FIRMWARE_CFLAGS
            <main> board/*.c model.c  FIRMWARE_LDFLAGS -T link.ld
    main: the firmware's main file in firmware/ (device_main.c, or mlperf_main.c
    for the MLPerf Tiny protocol); memory overrides the board's flash/RAM/stack
    sizes in link.ld.
    Returns the executable's path, or the CompletedProcess if check is False.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model_sources = [str(FAKE_MODEL / "model.c")]
    defs = [f"-D{d}" for d in defines]
    if target == "host":
        exe = out_dir / "model_host"
        cmd = ["gcc", *COMMON_CFLAGS, *HOST_CFLAGS, *defs, f"-I{FAKE_MODEL}",
               str(FIRMWARE / "host_main.c"), *model_sources, "-o", str(exe)]  # fmt: skip
    else:
        arch_flags = machine_target(target).arch_flags
        board_dir = FIRMWARE / "boards" / "mps2"
        render_link_script(out_dir / "link.ld", **{**MPS2_MEMORY, "stack_size": STACK_SIZE, **(memory or {})})
        exe = out_dir / "firmware.elf"
        cmd = ["arm-none-eabi-gcc", *arch_flags, *COMMON_CFLAGS, *FIRMWARE_CFLAGS, *defs,
               f"-I{FAKE_MODEL}", f"-I{board_dir}", f"-I{FIRMWARE}",
               str(FIRMWARE / main), *map(str, sorted(board_dir.glob("*.c"))), *model_sources,
               *FIRMWARE_LDFLAGS, f"-Wl,-T,{out_dir / 'link.ld'}", f"-Wl,-Map,{out_dir / 'firmware.map'}",
               "-o", str(exe)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not check:
        return result
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    return exe


def fake_model(x: np.ndarray, in_size: int = IN_SIZE, out_size: int = OUT_SIZE) -> np.ndarray:
    """numpy twin of tests/data/fake_model/model.c."""
    x = x.reshape(-1, in_size).astype(np.int32)
    j = np.arange(out_size) % in_size
    back = x[:, in_size - 1 - j]
    value = 2 * x[:, j] - 1 + np.trunc(back / 4).astype(np.int32)  # C division truncates
    return np.clip(value, -128, 127).astype(np.int8)


def samples(n: int, size: int = IN_SIZE, seed: int = 0) -> np.ndarray:
    """Mixed samples: small values (no saturation) and the full int8 range."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, size), dtype=np.int8)
    x[::2] //= 4
    x[0, :4] = [-128, 127, 0, -1]
    return x


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """Build the fake-model firmware once per (board, defines) and cache it.

    Module-scoped, so it cannot use the function-scoped `arm_toolchain`
    fixture: every test that calls it uses the `qemu` fixture instead.
    """
    cache: dict = {}

    def get(board: str = "mps2-an386", defines: tuple[str, ...] = ()) -> Path:
        key = (board, defines)
        if key not in cache:
            cache[key] = build(board, tmp_path_factory.mktemp(board), defines)
        return cache[key]

    return get


# ---------------------------------------------------------------------------
# Pure Python: frames and banner


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_frame_round_trip_and_corruption():
    frame = encode_frame(Command.SET_INPUT, b"\x01\x02\x03")
    assert frame[:2] == SYNC and frame[2] == 0x02 and frame[3:5] == b"\x03\x00"
    assert decode_frame(frame) == (0x02, b"\x01\x02\x03")
    for index in range(len(frame)):  # every single-byte corruption is caught
        damaged = bytearray(frame)
        damaged[index] ^= 0x10
        with pytest.raises(FrameError):
            decode_frame(bytes(damaged))
    with pytest.raises(ValueError, match="exceeds the 1024-byte frame limit"):
        encode_frame(Command.SET_INPUT, bytes(1025))


def test_wait_banner_skips_noise_and_is_bounded():
    port = serial.serial_for_url("loop://", timeout=0.05)
    noise = b"\x00\xff\xc5\xcbboot rom v1\r\nedgekit rea" + bytes(range(256)) + b"\r\n"
    port.write(noise + b"edgekit ready tiny_cnn\r\n" + encode_frame(0x81, b"tail"))
    link = DeviceLink(port, timeout=1.0)
    assert link.wait_banner(timeout=1.0) == "tiny_cnn"
    assert link.read_frame() == (0x81, b"tail")  # bytes after the banner are kept

    start = time.monotonic()
    port.write(b"noise without a banner")
    with pytest.raises(LinkTimeout, match=r"no banner from the device within 0\.3 s: check the port and baud rate"):
        link.wait_banner(timeout=0.3)
    assert time.monotonic() - start < 1.0


def test_banner_in_a_session_raises_board_reset():
    port = serial.serial_for_url("loop://", timeout=0.05)
    link = DeviceLink(port, timeout=1.0)
    # Before a session a banner is just the boot banner: skipped and recorded.
    port.write(b"edgekit ready tiny_cnn\r\n" + encode_frame(0x81, b"first"))
    assert link.read_frame() == (0x81, b"first") and link.banner == "edgekit ready tiny_cnn"
    # In a session (a banner or a reply was seen) it means the board rebooted,
    port.write(b"\x00edgekit ready tiny_cnn\r\n" + encode_frame(0x81, b"after"))
    with pytest.raises(BoardReset, match=r"the board reset while the host waited for a reply: its boot banner "
                                          r"'edgekit ready tiny_cnn' arrived, so its input, timings and profile are gone"):
        link.read_frame()
    assert link.read_frame() == (0x81, b"after")  # the new session goes on
    # also when it arrived between two requests (found among the stale bytes).
    port.write(b"edgekit init-failed -3 tiny_cnn\r\n")
    with pytest.raises(BoardReset, match="the board reset before INFO was sent") as caught:
        link.info()
    assert caught.value.banner == "edgekit init-failed -3 tiny_cnn"
    assert port.in_waiting == 0  # INFO was not sent


def info_payload(version: int, name: bytes = b"m") -> bytes:
    v1 = struct.pack("<HHIIIfifiIiB", version, 1024, 300, 40, 256, 0.5, -128, 0.125, 3, 0x410FC241, 0, len(name)) + name
    v2 = struct.pack("<16sBBHIIII", b"0123456789abcdef", 3, 1, 7, 25_000_000, 25_000_000, 1000, 2)
    shapes = struct.pack("<B4I", 4, 1, 10, 10, 3) + struct.pack("<B2I", 2, 1, 40)
    return v1 if version == 1 else v1 + v2 + shapes + b"later fields"


def test_device_info_reads_versions_1_and_2():
    old = DeviceInfo.from_payload(info_payload(1))
    assert (old.protocol_version, old.model_name, old.input_size, old.output_scale) == (1, "m", 300, 0.125)
    assert (old.weights_hash, old.input_shape, old.timer_source, old.has_profile) == ("", (), "none", False)
    new = DeviceInfo.from_payload(info_payload(2))
    assert (new.weights_hash, new.timer_source, new.has_profile, new.num_layers) == ("0123456789abcdef", "cmsdk-timer", True, 7)
    assert (new.timer_hz, new.cpu_hz, new.max_runs, new.timer_overhead) == (25_000_000, 25_000_000, 1000, 2)
    assert (new.input_shape, new.output_shape) == ((1, 10, 10, 3), (1, 40))
    with pytest.raises(ProtocolError, match="cut short inside the protocol version 2 fields"):
        DeviceInfo.from_payload(info_payload(2)[:-30])


def test_missing_qemu_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    elf = tmp_path / "fw.elf"
    elf.write_bytes(b"\x7fELF")
    with pytest.raises(emulate.QemuNotFound, match="install it: sudo apt-get install qemu-system-arm"):
        run_on_device(elf, np.zeros((1, 4), np.int8))


# ---------------------------------------------------------------------------
# Host runner


def test_host_runner_matches_numpy(tmp_path):
    exe = build("host", tmp_path)
    x = samples(7)
    result = subprocess.run([exe], input=x.tobytes(), capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert_bit_exact(np.frombuffer(result.stdout, np.int8).reshape(7, OUT_SIZE), fake_model(x), "host runner")


def test_host_runner_rejects_partial_and_empty_input(tmp_path):
    exe = build("host", tmp_path)
    partial = subprocess.run([exe], input=bytes(IN_SIZE + 10), capture_output=True, timeout=60)
    assert partial.returncode != 0
    assert b"stdin ended inside sample 1 (10 of 300 bytes)" in partial.stderr
    empty = subprocess.run([exe], input=b"", capture_output=True, timeout=60)
    assert empty.returncode != 0 and b"no input on stdin" in empty.stderr


# ---------------------------------------------------------------------------
# Firmware in QEMU


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an385", "mps2-an500"])
def test_firmware_matches_numpy(firmware, board):
    x = samples(4, seed=1)
    assert_bit_exact(run_on_device(firmware(board), x, board=board), fake_model(x), board)


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_firmware_transfers_tensors_larger_than_a_frame(firmware):
    in_size, out_size = 2500, 1100  # 3 SET_INPUT and 2 GET_OUTPUT frames per sample
    elf = firmware("mps2-an386", (f"FAKE_INPUT_SIZE={in_size}", f"FAKE_OUTPUT_SIZE={out_size}"))
    x = samples(2, size=in_size, seed=2)
    assert_bit_exact(run_on_device(elf, x), fake_model(x, in_size, out_size), "2500 -> 1100 bytes")


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_info_error_replies_and_recovery(firmware):
    with Emulator(firmware("mps2-an386"), link_timeout=2.0) as emu:
        link = emu.link
        assert link.wait_banner() == "fake_model"

        info = link.info()
        assert (info.input_size, info.output_size, info.arena_size) == (IN_SIZE, OUT_SIZE, 256)
        assert (info.input_scale, info.input_zero_point) == (1 / 256, -128)
        assert (info.output_scale, info.output_zero_point) == (0.125, 3)
        assert info.model_name == "fake_model" and info.init_status == 0 and info.max_payload == 1024
        assert (info.cpuid >> 4) & 0xFFF == 0xC24  # Cortex-M4

        def raw_exchange(frame: bytes) -> tuple[int, bytes]:
            link.write(frame)
            return link.read_frame()

        # A frame with a bad CRC gets ERROR(BAD_CRC, type) and the link recovers.
        bad_crc = bytearray(encode_frame(Command.INFO))
        bad_crc[-1] ^= 0xFF
        assert raw_exchange(bytes(bad_crc)) == (0xFF, bytes([ErrorCode.BAD_CRC, Command.INFO]))
        assert link.info() == info
        # Unknown type, length field too long, wrong payload length for the command.
        assert raw_exchange(encode_frame(0x42)) == (0xFF, bytes([ErrorCode.UNKNOWN_TYPE, 0x42]))
        too_long = SYNC + struct.pack("<BH", Command.SET_INPUT, 5000)
        assert raw_exchange(too_long + struct.pack("<H", crc16(too_long))) == (
            0xFF, bytes([ErrorCode.FRAME_TOO_LONG, Command.SET_INPUT]))  # fmt: skip
        assert raw_exchange(encode_frame(Command.INVOKE, b"x")) == (0xFF, bytes([ErrorCode.BAD_LENGTH, Command.INVOKE]))
        # Out-of-range offsets are refused through the public API too.
        with pytest.raises(DeviceError, match="outside the model's input or output tensor") as caught:
            link.set_input(b"ab", offset=IN_SIZE - 1)
        assert caught.value.code == ErrorCode.OUT_OF_RANGE
        with pytest.raises(DeviceError, match="outside"):
            link.get_output(OUT_SIZE + 1)

        # Small chunks: 300 input bytes in 5 frames, 40 output bytes in 3.
        link.chunk_size = 64
        x = samples(1, seed=3)
        link.set_input(x.tobytes())
        link.invoke()
        assert_bit_exact(np.frombuffer(link.get_output(OUT_SIZE), np.int8), fake_model(x)[0], "64-byte chunks")

        # A truncated request leaves the device inside a frame: the reply
        # times out, the link resynchronises and the retry succeeds.
        link.write(SYNC + struct.pack("<BH", Command.SET_INPUT, 10) + b"abc")
        retries = link.retries_used
        assert link.info() == info
        assert link.retries_used == retries + 1

        # A reply damaged on the way back is detected and the request sent again.
        flaky = CorruptOneReply(emu.serial, index=20)  # inside the INFO reply's payload
        flaky_link = DeviceLink(flaky, timeout=2.0)
        assert flaky_link.info() == info
        assert flaky.corrupted and flaky_link.retries_used == 1

        link.exit()
        assert emu.wait_exit(timeout=10) == 0


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_noise_before_banner_is_skipped_and_exit_code_is_passed(firmware):
    with Emulator(firmware("mps2-an385"), board="mps2-an385") as emu:
        noisy = NoiseFirst(emu.serial, b"\xc5\xcb\x05\xff\x00edgekit rea\x1b[0m\r\nbootloader 1.2\r\n" + bytes(range(256)))
        link = DeviceLink(noisy)
        assert link.wait_banner() == "fake_model"
        assert (link.info().cpuid >> 4) & 0xFFF == 0xC23  # Cortex-M3
        link.exit(success=False)
        assert emu.wait_exit(timeout=10) == 1


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_failed_model_init_is_reported(firmware):
    with Emulator(firmware("mps2-an386", ("FAKE_MODEL_INIT_FAIL",))) as emu:
        link = emu.link
        with pytest.raises(DeviceError, match=r"ek_model_init\(\) failed \(banner 'edgekit init-failed -3 fake_model'\)"):
            link.wait_banner()
        assert link.info().init_status == -3
        with pytest.raises(DeviceError, match=r"ek_model_init\(\) failed on the device") as caught:
            link.invoke()
        assert caught.value.code == ErrorCode.NOT_READY
        with pytest.raises(DeviceError, match=r"ek_model_init\(\) failed on the device") as caught:
            link.run(1)
        assert caught.value.code == ErrorCode.NOT_READY
        link.exit()
        assert emu.wait_exit(timeout=10) == 0


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_fault_is_reported_and_ends_qemu(firmware):
    elf = firmware("mps2-an386", ("FAKE_MODEL_TRAP",))
    with pytest.raises(EmulatorError, match=r"QEMU exited with status 1.*edgekit fault: HardFault .*pc=0x"):
        run_on_device(elf, samples(1))


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_hung_firmware_times_out_and_qemu_is_killed(firmware):
    with pytest.raises(EmulatorError, match=r"no reply to INVOKE within 1 s.*QEMU is still running"):
        run_on_device(firmware("mps2-an386", ("FAKE_MODEL_HANG",)), samples(1), invoke_timeout=1.0)


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_qemu_is_killed_when_the_block_raises(firmware):
    with pytest.raises(KeyboardInterrupt):
        with Emulator(firmware("mps2-an386")) as emu:
            pid = emu.pid
            raise KeyboardInterrupt
    assert emu.returncode() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_input_size_mismatch_is_reported(firmware):
    with pytest.raises(EmulatorError, match="takes 300 input bytes, but each input sample has 299"):
        run_on_device(firmware("mps2-an386"), np.zeros((1, 299), np.int8))


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_run_timings_and_their_errors(firmware):
    with Emulator(firmware("mps2-an386"), icount=True, link_timeout=2.0) as emu:
        link = emu.link
        link.wait_banner()
        info = link.info()
        assert (info.protocol_version, info.weights_hash, info.num_layers) == (2, "0123456789abcdef", 2)
        assert (info.input_shape, info.output_shape) == ((1, IN_SIZE), (1, OUT_SIZE))
        assert (info.timer_source, info.timer_hz, info.cpu_hz) == ("cmsdk-timer", 25_000_000, 25_000_000)
        assert (info.max_runs, info.has_profile) == (1000, False) and 0 < info.timer_overhead < 10

        x = samples(1, seed=5)
        link.set_input(x.tobytes())
        assert link.run(5, warmup=2) == 5
        ticks = link.timings()
        assert len(ticks) == 5 and min(ticks) > 0 and max(ticks) - min(ticks) <= 1, ticks
        assert link.timings(2) == ticks[:2]
        assert_bit_exact(np.frombuffer(link.get_output(), np.int8), fake_model(x)[0], "after RUN")
        assert link.run(0, warmup=3) == 0 and link.timings() == []

        with pytest.raises(DeviceError, match="beyond the runs recorded by the last RUN") as caught:
            link.timings(1)
        assert caught.value.code == ErrorCode.OUT_OF_RANGE
        with pytest.raises(ValueError, match="records at most 1000 runs per RUN, not 1001"):
            link.run(1001)
        with pytest.raises(DeviceError, match=r"more timed runs than the firmware can record \(max_runs in INFO\)"):
            link.request(Command.RUN, struct.pack("<II", 1001, 0))
        with pytest.raises(DeviceError, match="payload length is wrong"):
            link.request(Command.RUN, struct.pack("<I", 1))
        with pytest.raises(DeviceError, match=r"built without the per-layer profile: rebuild it with `make PROFILE=1`") as caught:
            link.profile()
        assert caught.value.code == ErrorCode.NOT_SUPPORTED
        with pytest.raises(DeviceError, match=r"built without this feature") as caught:
            link.request(Command.PROFILE, struct.pack("<IH", 0, 2))
        assert caught.value.code == ErrorCode.NOT_SUPPORTED
        link.exit()
        assert emu.wait_exit(timeout=10) == 0


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_profile_of_the_fake_model(firmware):
    with Emulator(firmware("mps2-an386", ("EK_PROFILE",)), icount=True) as emu:
        link = emu.link
        link.wait_banner()
        assert link.info().has_profile
        link.set_input(samples(1, seed=6).tobytes())
        link.run(3)
        run_ticks = link.timings()[-1]
        layers = link.profile()
        assert len(layers) == 2 and min(layers) > 0
        assert 0 <= run_ticks - sum(layers) <= 16, (run_ticks, layers)
        with pytest.raises(DeviceError, match="beyond the model's layers"):
            link.request(Command.PROFILE, struct.pack("<IH", 1, 2))


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_reset_reboots_the_board_and_its_banner_reappears(firmware):
    with Emulator(firmware("mps2-an386")) as emu:
        link = emu.link
        link.wait_banner()
        x = samples(1, seed=7)
        link.set_input(x.tobytes())
        assert link.reset() == "fake_model"
        assert link.banner == "edgekit ready fake_model"
        # The reboot cleared RAM: the input is zeros again.
        link.invoke()
        assert_bit_exact(np.frombuffer(link.get_output(), np.int8), fake_model(np.zeros_like(x))[0], "after RESET")
        # A reset the host did not ask for is noticed at the next request.
        link.write(encode_frame(Command.RESET))
        time.sleep(0.3)
        with pytest.raises(BoardReset, match="the board reset before INFO was sent"):
            link.info()
        assert link.info().model_name == "fake_model"  # the new session works
        assert emu.returncode() is None
    # With reboot=False (QEMU's -no-reboot) a guest reset ends QEMU instead.
    with Emulator(firmware("mps2-an386"), reboot=False) as emu:
        emu.link.wait_banner()
        emu.link.reset(wait=False)
        assert emu.wait_exit(timeout=10) == 0


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_board_reset_in_the_middle_of_a_run_raises_board_reset(firmware):
    # The fake model resets the chip at its 3rd inference after boot, like a watchdog.
    with Emulator(firmware("mps2-an386", ("FAKE_MODEL_RESET_AT=3",)), icount=True) as emu:
        link = emu.link
        link.wait_banner()
        link.set_input(samples(1).tobytes())
        with pytest.raises(BoardReset, match=r"the board reset while the host waited for the reply to RUN: "
                                              r"its boot banner 'edgekit ready fake_model' arrived") as caught:
            link.run(5, warmup=0)
        assert caught.value.banner == "edgekit ready fake_model" and link.runs_done == 0
        link.set_input(samples(1).tobytes())  # the new session goes on
        assert link.run(2) == 2 and len(link.timings()) == 2


@pytest.mark.emulator
@pytest.mark.usefixtures("qemu")
def test_pty_transport(firmware):
    with Emulator(firmware("mps2-an386"), transport="pty", icount=True) as emu:
        assert emu.pty.startswith("/dev/pts/") and emu.port is None
        # Any serial program can open it, like a board's USB port (the banner
        # went out before the port was opened, as on a real board).
        with DeviceLink(emu.pty, timeout=5.0) as link:
            assert link.info().model_name == "fake_model"
            x = samples(1, seed=8)
            link.set_input(x.tobytes())
            assert link.run(3) == 3 and min(link.timings()) > 0
            assert_bit_exact(np.frombuffer(link.get_output(), np.int8), fake_model(x)[0], "over the pty")
            assert link.reset() == "fake_model"  # the banner after a reset comes through
            link.exit()
        assert emu.wait_exit(timeout=10) == 0


# The emulator's side of a pty, by hand: a port that closes as the firmware exits.

def _pty_port():
    """(master fd, pyserial port on the slave): closing the master is QEMU exiting."""
    master, slave = os.openpty()
    port = serial.serial_for_url(os.ttyname(slave), timeout=0.05)
    os.close(slave)
    return master, port


def test_exit_when_the_pty_closes_before_the_flush():
    """test_pty_transport once failed under load with termios.error (5, 'Input/output error')
    from tcdrain in link.exit(): the firmware had read EXIT, replied and exited, QEMU had closed
    the pty, and only then did the host's flush run. Here the master closes right after the
    request is written, before the flush, every time: exit() returns, it is the normal end."""
    master, port = _pty_port()
    write = port.write

    def write_then_the_firmware_exits(data):
        n = write(data)
        os.close(master)
        return n

    port.write = write_then_the_firmware_exits
    with DeviceLink(port, timeout=2.0) as link:
        start = time.monotonic()
        link.exit()
        assert time.monotonic() - start < 1.5    # not a reply timeout
    port.close()


def test_exit_after_the_reply_and_the_close():
    """The usual order: the EXIT reply, then the port closes."""
    master, port = _pty_port()

    def firmware():
        frame = b""
        while len(frame) < 7:                 # sync, type, length, CRC: EXIT has no payload
            frame += os.read(master, 64)
        assert decode_frame(frame)[0] == Command.EXIT
        os.write(master, encode_frame(Command.EXIT | 0x80, b""))
        time.sleep(0.05)
        os.close(master)

    import threading
    thread = threading.Thread(target=firmware, daemon=True)
    thread.start()
    with DeviceLink(port, timeout=2.0) as link:
        link.exit()
    thread.join(timeout=5)
    port.close()


def test_a_closed_pty_is_link_closed_for_other_requests():
    """Only EXIT takes a closed port as its answer; any other request raises LinkClosed (not
    OSError or termios.error, which a hung-up pty's in_waiting, flush and tcflush raise)."""
    from edgekit.run.link import LinkClosed
    from edgekit.run.mlperf_link import MlperfTinyLink
    for kind in (DeviceLink, MlperfTinyLink):
        master, port = _pty_port()
        with kind(port, timeout=1.0) as link:
            os.close(master)
            with pytest.raises(LinkClosed):
                link.info()
            link.exit()
        port.close()


@pytest.mark.emulator
@pytest.mark.usefixtures("arm_toolchain")
@pytest.mark.parametrize(
    "memory, message",
    [
        (dict(flash_size=1024), "region `FLASH' overflowed"),
        (dict(ram_size=8 * 1024), "region `RAM' overflowed"),  # the 16 KiB stack alone does not fit
    ],
)
def test_link_fails_when_memory_is_too_small(tmp_path, memory, message):
    result = build("mps2-an386", tmp_path, memory=memory, check=False)
    assert result.returncode != 0
    assert message in result.stderr


# ---------------------------------------------------------------------------
# Serial wrappers that damage the byte stream on purpose


class _SerialProxy:
    """Delegates to a pyserial port; subclasses alter what read() returns."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def timeout(self):
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value):
        self.inner.timeout = value

    @property
    def in_waiting(self):
        return self.inner.in_waiting

    def write(self, data):
        return self.inner.write(data)

    def reset_input_buffer(self):
        self.inner.reset_input_buffer()


class CorruptOneReply(_SerialProxy):
    """Flips one bit in the received byte at position `index` (counted from 0)."""

    def __init__(self, inner, index: int):
        super().__init__(inner)
        self.index = index
        self.received = 0
        self.corrupted = False

    def read(self, size=1):
        data = bytearray(self.inner.read(size))
        position = self.index - self.received
        if 0 <= position < len(data):
            data[position] ^= 0x01
            self.corrupted = True
        self.received += len(data)
        return bytes(data)


class NoiseFirst(_SerialProxy):
    """Returns `noise` before anything the device sends."""

    def __init__(self, inner, noise: bytes):
        super().__init__(inner)
        self.noise = noise

    def read(self, size=1):
        if self.noise:
            data, self.noise = self.noise[:size], self.noise[size:]
            return data
        return self.inner.read(size)
