"""`edgekit bench` end to end (edgekit/measure/bench.py, the CLI's `bench`), on the emulated Cortex-M4.

mini_dscnn of tests/opmodels.py, exported for cortex-m4, is measured
  - with --emulate (QEMU under -icount: instruction counts), with every output file
    (--json, --csv, --save-outputs, --plot) and --profile, twice to show the counts repeat;
  - over --port, as a real board would be: a pseudo-terminal (Emulator(transport="pty"), the
    banner gone before the port opens) and a socket:// URL to a QEMU started here: the same
    outputs and the same counts (a port reports ms of the board's 25 MHz timer: x 125,000 =
    instructions under icount);
  - with the MLPerf Tiny runner's protocol;
  - through tests/faultproxy.py, a TCP proxy between the harness and QEMU's serial port that
    damages the link on command: garbage before the banner, a corrupted or a dropped frame, a
    board reset (a real RESET sent by the proxy, or a fake banner), a board that goes silent, a
    wrong baud rate (every byte damaged), and firmware of another model; Ctrl-C.
Each fault is checked for its one-sentence message, a bounded wall time, and (when it cuts the
run short after the first input) a --json file with "complete": false, the error and the inputs
measured before it.

Measured here (gcc 12.2 -O2, QEMU 7.2 mps2-an386): 2,510,965 instructions for the first input
(seed 0) with --warmup 1, identical in every run and over every transport; the number of warm-ups
moves the timer's phase by one tick (2,510,960 with 0, 3 or 4 warm-ups, 2,510,965 with 1 or 2).
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conftest import _need, assert_bit_exact
from edgekit import cli
from edgekit.api import CompiledModel
from edgekit.measure.bench import BenchConfig, bench
from edgekit.build import firmware_elf
from edgekit.run.emulate import Emulator
from edgekit.export import export
from edgekit.run.link import SYNC, BoardReset, Command, encode_frame
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from edgekit.run.verify import boundary_qparams, load_inputs
from faultproxy import TO_DEVICE, TO_HOST, FaultProxy
from opmodels import op_model

pytestmark = pytest.mark.emulator

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INSTRUCTIONS_PER_MS = 125_000  # QEMU icount shift=3: 25 MHz timer ticks x 5 instructions
RUNS = ["--count", "2", "--runs", "3", "--warmup", "1"]
FAULT_RUNS = ["--count", "3", "--runs", "2", "--warmup", "0"]


# ---------------------------------------------------------------------------
# Models, QEMU and the command line


def export_op_model(root: Path, case: str) -> Path:
    src = root / f"{case}.tflite"
    src.write_bytes(op_model(case))
    export(src, root / case, get_target("cortex-m4"))
    return root / case


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """mini_dscnn exported for the Cortex-M4, its firmware built (out/build/firmware.elf).

    Module fixtures are set up before the function-scoped `qemu` fixture: check the tools here too.
    """
    for tool, package in (("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm", "qemu-system-arm")):
        _need(shutil.which(tool) is not None, f"{tool} is not installed (sudo apt-get install {package})")
    out = export_op_model(tmp_path_factory.mktemp("bench"), "mini_dscnn")
    firmware_elf(out)
    return out


def reference(out: Path, count: int, seed: int = 0) -> np.ndarray:
    model = CompiledModel(out)
    x = load_inputs(None, model, count, seed)
    return reference_outputs(model.tflite_path, x, **boundary_qparams(model.report))


@contextmanager
def qemu_tcp(elf: Path):
    """QEMU under icount, its UART0 a loopback TCP server waiting for one client; yields the port.

    Started here (not by Emulator, which would take the one connection itself); killed by PID.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(Emulator(elf, icount=True).command(port), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield port
    finally:
        process.kill()
        process.wait(timeout=5)


def wait_listening(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port, without connecting (QEMU's wait=on
    would take a probe connection as its one client)."""
    deadline = time.monotonic() + timeout
    entry = f"0100007F:{port:04X} 00000000:0000 0A"   # local address, remote, state LISTEN
    while entry not in Path("/proc/net/tcp").read_text():
        assert time.monotonic() < deadline, f"nothing listens on port {port} after {timeout} s"
        time.sleep(0.02)


class Bench:
    """One `edgekit bench` run through the CLI (in this process): status, output, JSON, time."""

    def __init__(self, capsys, argv: list[str], json_path: Path):
        start = time.monotonic()
        self.status = cli.main(["bench", *argv, "--json", str(json_path)])
        self.seconds = time.monotonic() - start
        captured = capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        self.json = json.loads(json_path.read_text()) if json_path.exists() else None

    def assert_one_sentence_error(self, *fragments: str) -> str:
        assert self.status == 2, (self.status, self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgekit: error: "), self.err
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        return lines[0]

    def assert_partial(self, at_least: int = 1) -> None:
        """The --json file of a run cut short: valid, incomplete, the error, the inputs before it."""
        data = self.json
        assert data is not None, "the --json file was not written"
        assert data["complete"] is False and isinstance(data["error"], str) and data["error"]
        assert data["error"] in self.err
        assert len(data["per_input"]) >= at_least and all(e["match"] for e in data["per_input"])
        assert data["outputs_matched"] == len(data["per_input"]) == data["inputs"]
        if at_least:
            assert data["latency"]["min"] > 0


def through_proxy(capsys, tmp_path: Path, elf: Path, out: Path, setup=None, *, preamble: bytes = b"",
                  timeout: float = 2.0, argv=FAULT_RUNS) -> tuple[Bench, FaultProxy]:
    """bench --port socket://<proxy> with the proxy between it and a fresh QEMU; setup(proxy)
    arms the faults before the host connects."""
    with qemu_tcp(elf) as qemu_port, FaultProxy(qemu_port, preamble=preamble, lifetime=60) as proxy:
        if setup is not None:
            setup(proxy)
        run = Bench(capsys, [str(out), "--port", proxy.url, "--timeout", str(timeout), *argv],
                    tmp_path / "bench.json")
    return run, proxy


# ---------------------------------------------------------------------------
# --emulate


@pytest.fixture(scope="module")
def emulated(mini, tmp_path_factory):
    """`edgekit bench out --emulate` with every output file, twice in a row."""
    root = tmp_path_factory.mktemp("emulated")
    runs = []
    for k in range(2):
        json_path = root / f"run{k}.json"
        argv = ["bench", str(mini), "--emulate", *RUNS, "--json", str(json_path), "--csv", str(root / f"run{k}.csv"),
                "--save-outputs", str(root / f"run{k}.npy"), "--plot", str(root / f"plots{k}")]
        status = cli.main(argv)
        runs.append(dict(status=status, json=json.loads(json_path.read_text()), root=root, k=k))
    return runs


def test_emulate_end_to_end_writes_every_file(emulated, mini, qemu):
    run = emulated[0]
    root, data = run["root"], run["json"]
    assert run["status"] == 0
    assert data["complete"] is True and data["error"] is None
    assert (data["model"], data["target"], data["protocol"]) == ("mini_dscnn", "cortex-m4", "edgekit")
    assert (data["runs"], data["warmup"], data["inputs"], data["outputs_matched"]) == (3, 1, 2, 2)
    lat = data["latency"]
    assert lat["unit"] == "instructions" and lat["min"] <= lat["median"] <= lat["p90"] <= lat["max"]
    first = data["per_input"][0]["times"][0]     # instructions of mini_dscnn, input 0, --warmup 1
    assert first > 10_000 and first == int(first)
    assert 0 < data["arena_bytes"] < data["ram_bytes"] and data["flash_bytes"] > 0
    assert data["layers"] is None and data["device"]["timer_source"] == "cmsdk-timer"
    assert data["link_retries"] == 0
    # --save-outputs: the raw int8 outputs, compared here with the reference independently of bench.
    assert_bit_exact(np.load(root / "run0.npy"), reference(mini, 2), "--save-outputs")
    # --csv: one row per timed run.
    rows = (root / "run0.csv").read_text().splitlines()
    assert rows[0] == "input,run,latency_instructions,output_matches" and len(rows) == 1 + 2 * 3
    assert rows[1] == f"0,0,{first},1"
    # --plot: a valid PNG.
    png = (root / "plots0" / "latency_histogram.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    import matplotlib.image
    assert matplotlib.image.imread(root / "plots0" / "latency_histogram.png").ndim == 3


def test_two_emulated_runs_count_the_same_instructions(emulated, qemu):
    first, second = (r["json"] for r in emulated)
    assert [e["times"] for e in first["per_input"]] == [e["times"] for e in second["per_input"]]
    assert first["latency"] == second["latency"]


def test_profile_reports_layers_and_plots_them(mini, tmp_path, capsys, qemu):
    run = Bench(capsys, [str(mini), "--emulate", *RUNS, "--profile", "--plot", str(tmp_path)], tmp_path / "p.json")
    assert run.status == 0, run.err
    layers = run.json["layers"]
    assert [l["op"] for l in layers] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D",
                                         "CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]
    assert abs(sum(l["share"] for l in layers) - 1) < 1e-9 and min(l["value"] for l in layers) > 0
    last_run = run.json["per_input"][-1]["times"][-1]
    assert 0 <= last_run - sum(l["value"] for l in layers) <= 16 * 5   # the call's entry/exit, a reading
    assert "FULLY_CONNECTED" in run.out
    for name in ("latency_histogram.png", "layers.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_mlperf_tiny_protocol_runs_and_matches(mini, emulated, tmp_path, capsys, qemu):
    run = Bench(capsys, [str(mini), "--emulate", *RUNS, "--protocol", "mlperf-tiny"], tmp_path / "m.json")
    assert run.status == 0, run.err
    assert run.json["protocol"] == "mlperf-tiny" and run.json["outputs_matched"] == 2 and run.json["complete"]
    assert "outputs matched: 2/2" in run.out
    # One figure per input (the protocol reports the total of N runs): the framed protocol's
    # per-run count, give or take the timer readings around each run.
    framed = emulated[0]["json"]["per_input"]
    for mlperf_entry, framed_entry in zip(run.json["per_input"], framed):
        assert abs(mlperf_entry["times"][0] - np.mean(framed_entry["times"])) <= 20


# ---------------------------------------------------------------------------
# --port: a pty and a socket:// URL, like a real board


def port_instructions(data: dict) -> list[list[int]]:
    """A --port run reports ms of the board's 25 MHz timer; under icount that is instructions."""
    assert data["latency"]["unit"] == "ms"
    return [[round(t * INSTRUCTIONS_PER_MS) for t in e["times"]] for e in data["per_input"]]


def test_port_socket_url_matches_emulate(mini, emulated, tmp_path, capsys, qemu):
    with qemu_tcp(mini / "build" / "firmware.elf") as port:
        wait_listening(port)
        run = Bench(capsys, [str(mini), "--port", f"socket://127.0.0.1:{port}", *RUNS,
                             "--save-outputs", str(tmp_path / "y.npy")], tmp_path / "s.json")
    assert run.status == 0, run.err
    assert run.json["complete"] and run.json["where"] == f"socket://127.0.0.1:{port}"
    assert_bit_exact(np.load(tmp_path / "y.npy"), reference(mini, 2), "over socket://")
    assert port_instructions(run.json) == [e["times"] for e in emulated[0]["json"]["per_input"]]
    assert run.json["flash_bytes"] == emulated[0]["json"]["flash_bytes"]


def test_port_pty_without_banner_matches_emulate(mini, emulated, tmp_path, qemu):
    results = []
    with Emulator(mini / "build" / "firmware.elf", transport="pty", icount=True) as emu:
        time.sleep(0.3)   # the banner goes out to nobody, as on a board that booted earlier
        r = bench(mini, BenchConfig(runs=3, warmup=1, count=2, timeout=2.0), port=emu.pty,
                  json_path=tmp_path / "t.json", progress=False, on_result=results.append)
    assert results == [r] and r.complete and r.matched == 2
    assert_bit_exact(np.stack(r.outputs), reference(mini, 2), "over a pty")
    data = json.loads((tmp_path / "t.json").read_text())
    assert port_instructions(data) == [e["times"] for e in emulated[0]["json"]["per_input"]]


def test_port_that_nothing_listens_on(mini, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = Bench(capsys, [str(mini), "--port", f"socket://127.0.0.1:{port}"], tmp_path / "n.json")
    run.assert_one_sentence_error(f"cannot open serial port 'socket://127.0.0.1:{port}'")
    run.assert_partial(at_least=0)
    assert run.seconds < 5


# ---------------------------------------------------------------------------
# Faults, through tests/faultproxy.py


def test_garbage_before_the_banner_is_skipped(mini, emulated, tmp_path, capsys, qemu):
    garbage = SYNC + b"\x05\xff\x00edgekit rea\x1b[0m\r\nbootloader 1.2\r\n" + bytes(range(256)) + SYNC
    # Also noise in the middle of the session, right before the reply to the second RUN.
    noise = lambda p: p.inject(TO_HOST, b"\x00\xffnoise\xc5")  # noqa: E731
    run, proxy = through_proxy(capsys, tmp_path, mini / "build" / "firmware.elf", mini,
                               lambda p: p.on_request(Command.RUN, 2, noise), preamble=garbage)
    assert run.status == 0, (run.err, proxy.events)
    assert run.json["complete"] and run.json["outputs_matched"] == 3 and run.json["link_retries"] == 0
    # One tick (5 instructions) off the --emulate figure at most: the count repeats exactly for the
    # same --runs/--warmup, but the warm-ups shift the timer's phase by a tick.
    assert abs(port_instructions(run.json)[0][0] - emulated[0]["json"]["per_input"][0]["times"][0]) <= 5


def test_corrupted_reply_is_retried_and_counted(mini, tmp_path, capsys, qemu):
    def setup(proxy):
        # A bit flipped in the reply to the second GET_OUTPUT (the second input's output), and the
        # reply to the third TIMINGS held 0.5 s: within the time limit, so not a retry.
        proxy.on_request(Command.GET_OUTPUT, 2, lambda p: p.corrupt_frames(TO_HOST, offset=6, mask=0x10))
        proxy.on_request(Command.TIMINGS, 3, lambda p: p.delay(TO_HOST, 0.5))
        # A request damaged on its way: the board answers ERROR BAD_CRC and the link resends it.
        proxy.on_request(Command.TIMINGS, 2, lambda p: p.corrupt_frames(TO_DEVICE))

    run, proxy = through_proxy(capsys, tmp_path, mini / "build" / "firmware.elf", mini, setup)
    assert run.status == 0, (run.err, proxy.events)
    assert run.json["complete"] and run.json["outputs_matched"] == 3
    assert run.json["link_retries"] == 2, proxy.events
    assert proxy.requests[Command.GET_OUTPUT] == proxy.requests[Command.TIMINGS] == 4   # 3 inputs, one resent
    assert "2 requests were sent again" in run.out
    assert run.seconds < 15


def test_dropped_frames_are_retried_or_reported(mini, tmp_path, capsys, qemu):
    elf = mini / "build" / "firmware.elf"

    def lose_two(proxy):
        # The second SET_INPUT never reaches the board; the reply to the second TIMINGS never
        # reaches the host: each times out (2 s), the link resynchronises and sends it again.
        proxy.on_request(Command.SET_INPUT, 2, lambda p: p.drop_frames(TO_DEVICE))
        proxy.on_request(Command.TIMINGS, 2, lambda p: p.drop_frames(TO_HOST))

    run, proxy = through_proxy(capsys, tmp_path, elf, mini, lose_two)
    assert run.status == 0, (run.err, proxy.events)
    assert run.json["complete"] and run.json["outputs_matched"] == 3 and run.json["link_retries"] == 2
    assert run.seconds < 20

    # RUN is never sent again after a time-out (it may just be slow): a lost RUN reply ends the run.
    run, proxy = through_proxy(capsys, tmp_path, elf, mini,
                               lambda p: p.on_request(Command.RUN, 2, lambda q: q.drop_frames(TO_HOST)))
    run.assert_one_sentence_error("no reply to RUN within 4 s: the firmware may have hung or crashed",
                                  f"(1 input measured before it is in {tmp_path / 'bench.json'})")
    run.assert_partial()
    assert len(run.json["per_input"]) == 1
    assert run.seconds < 15   # 2 runs x --timeout 2


@pytest.mark.parametrize("how", ["real RESET", "fake banner"])
def test_board_reset_mid_run_is_reported(how, mini, tmp_path, capsys, qemu):
    def setup(proxy):
        if how == "real RESET":
            # The second SET_INPUT is replaced by RESET: the board reboots and prints its banner.
            proxy.on_request(Command.SET_INPUT, 2, lambda p: encode_frame(Command.RESET))
        else:
            # The second RUN is swallowed and a banner sent back, as if the board had rebooted.
            proxy.on_request(Command.RUN, 2, lambda p: (p.drop_frames(TO_DEVICE), p.inject_banner("mini_dscnn"))[-1])

    run, proxy = through_proxy(capsys, tmp_path, mini / "build" / "firmware.elf", mini, setup)
    waited = "SET_INPUT" if how == "real RESET" else "RUN"
    run.assert_one_sentence_error(f"the board reset while the host waited for the reply to {waited}: "
                                  "its boot banner 'edgekit ready mini_dscnn' arrived")
    run.assert_partial()
    assert len(run.json["per_input"]) == 1 and run.seconds < 10


def test_board_reset_through_the_api_keeps_its_banner(mini, tmp_path, qemu):
    with qemu_tcp(mini / "build" / "firmware.elf") as qemu_port, FaultProxy(qemu_port, lifetime=60) as proxy:
        proxy.on_request(Command.TIMINGS, 2, lambda p: (p.drop_frames(TO_DEVICE), p.inject_banner("mini_dscnn"))[-1])
        with pytest.raises(BoardReset, match=r"reply to TIMINGS: .*\(1 input measured before it is in") as caught:
            bench(mini, BenchConfig(runs=2, warmup=0, count=3, timeout=2.0), port=proxy.url,
                  json_path=tmp_path / "a.json", progress=False)
    assert caught.value.banner == "edgekit ready mini_dscnn"
    assert len(json.loads((tmp_path / "a.json").read_text())["per_input"]) == 1


def test_board_that_goes_silent_times_out(mini, tmp_path, capsys, qemu):
    run, proxy = through_proxy(capsys, tmp_path, mini / "build" / "firmware.elf", mini,
                               lambda p: p.on_request(Command.RUN, 2, lambda q: q.silence()), timeout=1.0)
    run.assert_one_sentence_error("no reply to RUN within 2 s: the firmware may have hung or crashed")
    run.assert_partial()
    assert len(run.json["per_input"]) == 1
    assert run.seconds < 6    # --timeout 1 per inference, 2 runs


def test_wrong_baud_rate_says_so(mini, tmp_path, capsys, qemu):
    # At a wrong baud rate every byte arrives garbled, both ways: the banner becomes noise and no
    # request is understood.
    run, proxy = through_proxy(capsys, tmp_path, mini / "build" / "firmware.elf", mini,
                               lambda p: p.corrupt_all(), timeout=1.0)
    message = run.assert_one_sentence_error("baud rate")
    assert "115200" in message
    run.assert_partial(at_least=0)
    assert run.seconds < 12


def test_firmware_of_another_model_is_refused(mini, tmp_path, capsys, qemu):
    other = export_op_model(tmp_path, "mini_resnet")
    other_hash = json.loads((other / "report.json").read_text())["weights_hash"]
    with Emulator(firmware_elf(other), transport="pty", icount=True) as emu:
        run = Bench(capsys, [str(mini), "--port", emu.pty, "--timeout", "2"], tmp_path / "h.json")
    mini_hash = json.loads((mini / "report.json").read_text())["weights_hash"]
    run.assert_one_sentence_error(f"the board runs model 'mini_resnet' with weights hash {other_hash}, "
                                  f"but {mini} holds {mini_hash}: flash {mini}/build/firmware.elf first")
    run.assert_partial(at_least=0)
    assert run.seconds < 10


def test_ctrl_c_leaves_partial_json_and_stops_qemu(mini, tmp_path, qemu):
    json_path = tmp_path / "c.json"
    argv = [sys.executable, "-m", "edgekit", "bench", str(mini), "--emulate", "--count", "1000", "--runs", "200",
            "--json", str(json_path)]
    # Ctrl-C's default action even when the suite runs as a background job (`make test &`, where the
    # shell starts it with SIGINT ignored and every child would inherit that).
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (json_path.exists() and json.loads(json_path.read_text())["per_input"]):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no input measured within 60 s"
            time.sleep(0.05)
        qemu_pids = [pid for pid in children(proc.pid) if process_name(pid) == "qemu-system-arm"]
        assert len(qemu_pids) == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip().endswith("edgekit: interrupted"), err
    data = json.loads(json_path.read_text())
    assert data["complete"] is False and data["error"] == "interrupted"
    assert 1 <= len(data["per_input"]) < 50 and all(e["match"] for e in data["per_input"])
    assert not Path(f"/proc/{qemu_pids[0]}").exists(), "QEMU outlived an interrupted bench"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# The proxy itself, against a loopback echo server


def test_fault_proxy_forwards_damages_and_stops_by_itself():
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def echo():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    threading.Thread(target=echo, daemon=True).start()
    with pytest.raises(ValueError, match="only connects to a loopback upstream"):
        FaultProxy(("192.0.2.1", 9))
    frame = encode_frame(Command.INFO)
    proxy = FaultProxy(server.getsockname()[1], preamble=b"hi", lifetime=1.0).start()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:

        def exchange(data: bytes, size: int) -> bytes:
            client.sendall(data)
            got = b""
            while len(got) < size:
                got += client.recv(4096)
            return got

        assert exchange(b"", 2) == b"hi"
        assert exchange(frame, len(frame)) == frame                   # an intact round trip
        proxy.corrupt(TO_HOST, count=1, mask=0x80)
        assert exchange(b"ab", 2) == b"\xe1b"                          # one bit flipped on the way back
        proxy.on_request(Command.INFO, 2, lambda p: p.drop_frames(TO_DEVICE))
        assert exchange(frame + b"xy", 2) == b"xy"                    # the 2nd INFO frame is dropped
        assert proxy.requests == {Command.INFO: 2}
        start = time.monotonic()
        while client.recv(4096):                                      # it closes after its lifetime
            assert time.monotonic() - start < 5
    proxy.stop()
    assert not any(t.is_alive() for t in proxy._threads)
    server.close()
