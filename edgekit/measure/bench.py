"""`edgekit bench`: latency and correctness of the generated firmware, measured on the device.

The same host code drives a real board (`--port /dev/ttyACM0`, any pyserial URL) and the emulated
one (`--emulate`: QEMU started here, under `-icount shift=3,sleep=off`, so its timers count guest
instructions deterministically). For every input it loads the input, runs W untimed warm-ups and
N timed inferences, reads each run's time and the output buffer (every output of the model), and
compares it byte for byte with TFLite's reference interpreter on out/model.tflite.

Units are honest: QEMU gives *instructions* (never cycles or ms); the DWT counter of a real
Cortex-M3/M4/M7/M33 gives *cycles* (ms when the clock is known); other timers give ms.

Results are never lost: the JSON file is rewritten atomically after every input, so a run cut
short (a fault, Ctrl-C) leaves the figures measured so far with "complete": false.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekit.api import CompiledModel, saved_outputs
from edgekit.budget import format_shares
from edgekit.errors import EdgekitError

PROTOCOLS = ("edgekit", "mlperf-tiny")


@dataclass
class BenchConfig:
    runs: int = 20              # timed inferences per input
    warmup: int = 3             # untimed inferences before them
    count: int = 3              # fixed-seed random inputs when `inputs` is None
    seed: int = 0
    inputs: str | None = None   # .npy/.npz batch [N, *input_shape]
    profile: bool = False       # per-layer times (firmware built with PROFILE=1)
    protocol: str = "edgekit"
    clock_hz: int | None = None  # CPU clock of a real board, for ms and inferences/s
    timeout: float = 10.0       # seconds for the banner, each reply and each inference of a RUN
    budget: str | None = None   # a model with budget levels (--budgets): a level, or 'all'
    labels: str | None = None   # .npy/.npz class labels of `inputs`: accuracy (per budget level)

    def check(self) -> None:
        if self.runs < 1:
            raise EdgekitError(f"--runs must be at least 1, not {self.runs}")
        if self.warmup < 0:
            raise EdgekitError(f"--warmup cannot be negative ({self.warmup})")
        if self.count < 1:
            raise EdgekitError(f"--count must be at least 1, not {self.count}")
        if self.protocol not in PROTOCOLS:
            raise EdgekitError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not {self.protocol!r}")
        if self.profile and self.protocol != "edgekit":
            raise EdgekitError("--profile needs edgekit's protocol: the MLPerf Tiny protocol has no "
                               "per-layer times")
        if self.budget is not None and self.protocol != "edgekit":
            raise EdgekitError("--budget needs edgekit's protocol: the MLPerf Tiny protocol has no budget levels")
        if self.labels is not None and self.inputs is None:
            raise EdgekitError("--labels needs --inputs: the labels of those inputs")

    def levels(self, budget: dict | None) -> list[int]:
        """The budget levels to measure (none without --budget); one sentence when the model has no
        levels or the level is not one of them."""
        if self.budget is None:
            return []
        if not budget:
            raise EdgekitError("--budget: this export has no budget levels; export the model with early exits "
                               "and --budgets N --val val.npz")
        n = len(budget["levels"])
        if self.budget == "all":
            return list(range(n))
        try:
            level = int(self.budget)
        except ValueError:
            raise EdgekitError(f"--budget {self.budget}: pass a level (0 to {n - 1}) or 'all'") from None
        if not 0 <= level < n:
            raise EdgekitError(f"--budget {level}: the model has budget levels 0 to {n - 1}")
        return [level]


@dataclass
class BenchResults:
    """Everything measured so far; to_json() is what --json writes."""
    model: str
    target: str
    where: str
    config: BenchConfig
    unit: str = "ticks"
    scale: float = 1.0                  # unit per timer tick
    clock_hz: int | None = None
    device: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    # {index, times, match, first_diff (index in the output), first_diff_output (which output)}
    per_input: list[dict] = field(default_factory=list)
    layers: list[dict] | None = None
    # --budget: per level {level, per_input: [{index, times, exit, match}]} (and the calibration's figures)
    levels: list[dict] = field(default_factory=list)
    labels: np.ndarray | None = None
    outputs: list[np.ndarray] = field(default_factory=list)   # per input: [*output_shape], or all bytes
    num_outputs: int = 1
    retries: int = 0                    # requests the link sent again (damaged or lost frames)
    complete: bool = False
    error: str | None = None

    @property
    def times(self) -> list[float]:
        return [t for entry in self.per_input for t in entry["times"]]

    @property
    def matched(self) -> int:
        return sum(1 for entry in self.per_input if entry["match"])

    def latency(self) -> dict | None:
        t = np.array(self.times, dtype=np.float64)
        if t.size == 0:
            return None
        stats = dict(unit=self.unit, min=float(t.min()), median=float(np.median(t)),
                     p90=float(np.percentile(t, 90)), max=float(t.max()), mean=float(t.mean()))
        if self.unit == "instructions" and np.all(t == np.round(t)):
            stats.update({k: int(v) for k, v in stats.items() if k in ("min", "max")})
        return stats

    def level_summary(self) -> list[dict]:
        """Per measured budget level: inputs, outputs and exits matching the reference, mean / p90
        latency, the share of inputs at each exit, accuracy on --labels."""
        rows = []
        for lv in self.levels:
            entries = lv["per_input"]
            times = np.array([t for e in entries for t in e["times"]], np.float64)
            exits = np.array([e["exit"] for e in entries], np.int64)
            row = dict(level=lv["level"], inputs=len(entries), matched=sum(1 for e in entries if e["match"]),
                       mean=float(times.mean()) if times.size else None,
                       p90=float(np.percentile(times, 90)) if times.size else None,
                       exits=[float(v) for v in np.bincount(exits[exits >= 0], minlength=lv["exits"]) / max(len(exits), 1)],
                       accuracy=None, expected_accuracy=lv.get("expected_accuracy"))
            if self.labels is not None and entries:
                predicted = np.array([e["prediction"] for e in entries])
                row["accuracy"] = float((predicted == self.labels[:len(predicted)]).mean())
            rows.append(row)
        return rows

    def latency_ms(self) -> dict | None:
        lat = self.latency()
        if lat is None:
            return None
        if self.unit == "ms":
            return {k: lat[k] for k in ("min", "median", "p90", "max", "mean")}
        if self.unit == "cycles" and self.clock_hz:
            return {k: lat[k] * 1000.0 / self.clock_hz for k in ("min", "median", "p90", "max", "mean")}
        return None

    def to_json(self) -> dict:
        ms = self.latency_ms()
        return dict(
            model=self.model, target=self.target, where=self.where, protocol=self.config.protocol,
            runs=self.config.runs, warmup=self.config.warmup, inputs=len(self.per_input),
            outputs_matched=self.matched, outputs_total=len(self.per_input),
            latency=self.latency(), latency_ms=ms,
            inferences_per_second=(1000.0 / ms["median"]) if ms and ms["median"] > 0 else None,
            clock_hz=self.clock_hz,
            flash_bytes=self.sizes.get("flash_bytes"), ram_bytes=self.sizes.get("ram_bytes"),
            arena_bytes=self.sizes.get("arena_bytes"),
            layers=self.layers, device=self.device, per_input=self.per_input,
            budget_levels=self.level_summary() if self.levels else None,
            budget_per_input=self.levels or None,
            link_retries=self.retries, complete=self.complete, error=self.error,
        )


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON to a temp file beside `path`, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _progress(done: int, total: int, label: str, enabled: bool) -> None:
    if not enabled:
        return
    width = 30
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _open_link(protocol: str, port, timeout: float, baud: int):
    """The link, with `timeout` also the limit per inference: a RUN of N inferences waits at
    most N x timeout for its reply (the links' own default is 60 s per inference)."""
    from edgekit.run.link import DeviceLink
    from edgekit.run.mlperf_link import MlperfTinyLink
    cls = MlperfTinyLink if protocol == "mlperf-tiny" else DeviceLink
    return cls(port, timeout=timeout, invoke_timeout=timeout, baudrate=baud)


def _start_session(link, emulate: bool, timeout: float):
    """Banner, then INFO. A real board may have printed its banner before the port was opened,
    so there a missing banner is not an error: INFO decides."""
    from edgekit.run.link import LinkTimeout
    try:
        link.wait_banner(timeout if emulate else min(timeout, 2.0))
    except LinkTimeout:
        if emulate:
            raise
    return link.info()


def _check_device(info, model: CompiledModel) -> None:
    expected_hash = model.report.get("weights_hash", "")
    if info.weights_hash and expected_hash and info.weights_hash != expected_hash:
        raise EdgekitError(
            f"the board runs model '{info.model_name}' with weights hash {info.weights_hash}, but "
            f"{model.out_dir} holds {expected_hash}: flash {model.out_dir}/build/firmware.elf first")
    in_size, out_size = int(np.prod(model.input_shape)), model.output_size
    if (info.input_size, info.output_size) != (in_size, out_size):
        raise EdgekitError(
            f"the board's model '{info.model_name}' takes {info.input_size} input and gives "
            f"{info.output_size} output bytes, but {model.out_dir} has {in_size} and {out_size}: "
            "flash the firmware of this export")


def bench(out_dir: str | Path, config: BenchConfig, *, emulate: bool = False, port: str | None = None,
          baud: int = 115200, json_path: str | Path | None = None, progress: bool | None = None,
          on_result=None) -> BenchResults:
    """Measure an export directory's firmware. Raises EdgekitError on any fault, after writing
    the partial results to json_path."""
    from edgekit.build import firmware_elf, firmware_size
    from edgekit.run.emulate import Emulator, tick_units
    from edgekit.targets import get_target
    from edgekit.run.verify import Comparison, load_inputs, reference_flat

    config.check()
    if emulate == (port is not None):
        raise EdgekitError("choose where to run: --emulate (QEMU) or --port DEVICE (a board)")
    model = CompiledModel(out_dir)
    target = get_target(model.report["target"])
    if target.is_host:
        raise EdgekitError(f"{out_dir} was exported for the host: export it for a Cortex-M target to bench it")
    if emulate and not target.can_emulate:
        raise EdgekitError(f"{target.name} has no emulator board; run it on a board with --port")
    progress = sys.stderr.isatty() if progress is None else progress

    x = load_inputs(config.inputs, model, config.count, config.seed)
    budget = model.report.get("budget")
    levels = config.levels(budget)
    labels = None
    if config.labels is not None:
        from edgekit.datasets import load_array, prepare_labels
        classes = budget["classes"] if budget else model.output_layout[0]["size"]
        labels = prepare_labels(load_array(config.labels, "--labels", "y"), config.labels, len(x), classes)
    reference = reference_flat(model, x)
    where = f"{target.qemu_machine} (QEMU)" if emulate else str(port)
    results = BenchResults(model=model.report["model"], target=target.name, where=where, config=config,
                           num_outputs=len(model.output_layout), labels=labels)
    expected = {}
    if levels:
        from edgekit.api import split_outputs
        from edgekit.budget import reference_budget
        ref_outputs = split_outputs(reference, model.output_layout)
        expected = {lv: reference_budget(budget, ref_outputs, lv) for lv in levels}
        results.levels = [dict(level=lv, exits=len(budget["exits"]), per_input=[],
                               expected_accuracy=budget["levels"][lv]["accuracy"]) for lv in levels]

    if emulate:
        elf = firmware_elf(model.out_dir, profile=config.profile, protocol=config.protocol)
    else:
        elf = model.out_dir / "build" / "firmware.elf"
    if elf.exists():
        results.sizes = dict(firmware_size(elf))
    results.sizes["arena_bytes"] = model.report["totals"]["arena_bytes"]

    link = None

    def save():
        results.retries = getattr(link, "retries_used", 0)
        if json_path is not None:
            write_json_atomic(json_path, results.to_json())

    try:
        with ExitStack() as stack:
            if emulate:
                emu = stack.enter_context(Emulator(elf, target.qemu_machine, icount=True,
                                                   link_timeout=config.timeout))
                link = _open_link(config.protocol, emu.serial, config.timeout, baud)
                per_tick = emu.instructions_per_tick
            else:
                link = stack.enter_context(_open_link(config.protocol, port, config.timeout, baud))
                per_tick = None
            info = _start_session(link, emulate, config.timeout)
            _check_device(info, model)
            if config.profile and not info.has_profile:
                raise EdgekitError("the firmware has no per-layer profile: build it with "
                                   f"`make -C {model.out_dir} PROFILE=1` and flash build/profile/firmware.elf")
            if config.protocol == "edgekit" and info.max_runs and config.runs > info.max_runs:
                raise EdgekitError(f"--runs {config.runs} is more than the firmware records ({info.max_runs}); "
                                   "lower --runs or rebuild with EXTRA_CFLAGS=-DEK_MAX_RUNS=...")
            results.device = dict(model_name=info.model_name, weights_hash=info.weights_hash,
                                  timer_source=info.timer_source, timer_hz=info.timer_hz, cpu_hz=info.cpu_hz,
                                  protocol_version=info.protocol_version, cpuid=f"0x{info.cpuid:08x}")
            results.scale, results.unit = tick_units(1, info.timer_source, info.timer_hz, per_tick)
            results.clock_hz = config.clock_hz or (info.cpu_hz if not emulate else None) or None
            if levels and info.budget_levels != len(budget["levels"]):
                raise EdgekitError(f"the board's firmware has {info.budget_levels} budget levels but {model.out_dir} has "
                                   f"{len(budget['levels'])}: flash the firmware of this export")
            _progress(0, len(x), "inputs", progress)
            for i, sample in enumerate(x):
                link.set_input(sample.tobytes())
                for lv, record in zip(levels, results.levels):
                    done = link.run(config.runs, config.warmup, budget=lv)
                    ticks = link.timings(done)
                    scores = np.frombuffer(link.get_output(budget["classes"]), dtype=np.int8)
                    want_exit, want_scores = expected[lv][0][i], expected[lv][1][i]
                    record["per_input"].append(dict(
                        index=i, times=[t * results.scale for t in ticks], exit=int(link.exit_taken),
                        prediction=int(np.argmax(scores)),
                        match=bool(link.exit_taken == want_exit and np.array_equal(scores, want_scores))))
                if levels and config.budget != "all":
                    save()
                    _progress(i + 1, len(x), "inputs", progress)
                    continue
                done = link.run(config.runs, config.warmup)
                if config.protocol == "edgekit":
                    ticks = link.timings(done)
                else:     # the MLPerf Tiny protocol reports the total of the N runs only
                    ticks = [link.last_inference.ticks / max(done, 1)]
                got = np.frombuffer(link.get_output(model.output_size), dtype=np.int8)
                diff = Comparison(got[None], reference[i:i + 1], model.output_layout).first_difference()
                results.outputs.append(saved_outputs(got[None], model.output_layout)[0])
                results.per_input.append(dict(
                    index=i, times=[t * results.scale for t in ticks], match=diff is None,
                    first_diff=None if diff is None else diff.index,
                    first_diff_output=None if diff is None else diff.output))
                save()
                _progress(i + 1, len(x), "inputs", progress)
            if config.profile:
                layer_ticks = link.profile()
                report_layers = model.report["layers"]
                total = sum(layer_ticks) or 1
                results.layers = [dict(index=j, op=report_layers[j]["op"] if j < len(report_layers) else "?",
                                       name=report_layers[j]["name"] if j < len(report_layers) else "",
                                       value=t * results.scale, share=t / total)
                                  for j, t in enumerate(layer_ticks)]
            if emulate:
                from edgekit.run.link import LinkClosed
                try:
                    link.exit()
                except LinkClosed:
                    pass     # QEMU may close the socket right after the reply; its status decides
                emu.wait_exit(config.timeout)
            results.complete = True
    except EdgekitError as e:
        results.error = str(e)
        save()
        n = len(results.per_input)
        kept = (f" ({n} input{'' if n == 1 else 's'} measured before it {'is' if n == 1 else 'are'} in {json_path})"
                if json_path and n else "")
        raised = type(e)(f"{e}{kept}")
        raised.__dict__.update(e.__dict__)   # BoardReset.banner, DeviceError.code
        raise raised from None
    except KeyboardInterrupt:
        results.error = "interrupted"
        save()
        raise
    save()
    if on_result is not None:
        on_result(results)
    return results


def format_summary(r: BenchResults) -> str:
    lat = r.latency()
    lines = [f"edgekit bench: {r.model} ({r.target}) on {r.where}, {r.config.protocol} protocol, "
             f"timer {r.device.get('timer_source', '?')}"]
    n_in = len(r.per_input)
    lines.append(f"{n_in} inputs x {r.config.runs} timed runs (after {r.config.warmup} warm-up runs each)")
    if lat:
        fmt = (lambda v: f"{v:,.0f}") if r.unit in ("instructions", "cycles", "ticks") else (lambda v: f"{v:,.3f}")
        lines.append(f"latency ({r.unit}): min {fmt(lat['min'])}  median {fmt(lat['median'])}  "
                     f"p90 {fmt(lat['p90'])}  max {fmt(lat['max'])}")
        ms = r.latency_ms()
        if ms and r.unit != "ms":
            lines.append(f"latency (ms at {r.clock_hz / 1e6:g} MHz): min {ms['min']:.3f}  median {ms['median']:.3f}  "
                         f"p90 {ms['p90']:.3f}  max {ms['max']:.3f}")
        if ms and ms["median"] > 0:
            lines.append(f"inferences per second: {1000.0 / ms['median']:.1f}")
        if r.unit == "instructions":
            lines.append("(QEMU under -icount counts guest instructions: a proxy for cycles, not cycles)")
    if r.per_input:
        lines.append(f"outputs matched: {r.matched}/{n_in} (TFLite reference interpreter, bit-exact)")
    if r.retries:
        lines.append(f"{r.retries} request{' was' if r.retries == 1 else 's were'} sent again "
                     "(damaged or lost frames: the serial line is unreliable)")
    for entry in r.per_input:
        if not entry["match"]:
            k = entry.get("first_diff_output")
            where = f"output {k}, index {entry['first_diff']}" if r.num_outputs > 1 else f"{entry['first_diff']}"
            lines.append(f"  input {entry['index']}: first difference at {where}")
    if r.levels:
        lines += format_levels(r)
    s = r.sizes
    if s.get("flash_bytes") is not None:
        lines.append(f"flash {s['flash_bytes']:,} bytes, RAM {s['ram_bytes']:,} bytes "
                     f"(arena {s['arena_bytes']:,} bytes)")
    if r.layers:
        lines.append(f"{'#':>3}  {'op':<18} {r.unit:>14} {'share':>6}  layer")
        for l in r.layers:
            lines.append(f"{l['index']:>3}  {l['op']:<18} {l['value']:>14,.0f} {l['share']:>6.1%}  {l['name'][:40]}")
    return "\n".join(lines)


def format_levels(r: BenchResults) -> list[str]:
    """The budget levels measured: latency, exits taken, accuracy, agreement with the reference."""
    full = r.latency()
    lines = [f"budget levels ({r.unit} per inference; exits and scores checked against the reference's decision):"]
    for row in r.level_summary():
        ratio = f" ({full['mean'] / row['mean']:.2f}x fewer than ek_model_invoke)" if full and row["mean"] else ""
        acc = f"  accuracy {100 * row['accuracy']:.2f}%" if row["accuracy"] is not None else ""
        lines.append(f"  level {row['level']}: mean {row['mean']:,.0f}  p90 {row['p90']:,.0f}{ratio}  exits "
                     + format_shares(row["exits"]) + acc
                     + f"  matched {row['matched']}/{row['inputs']}")
    return lines


def write_csv(path: str | Path, r: BenchResults) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "run", f"latency_{r.unit}", "output_matches"])
        for entry in r.per_input:
            for k, t in enumerate(entry["times"]):
                w.writerow([entry["index"], k, t, int(entry["match"])])


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(directory: str | Path, r: BenchResults) -> list[Path]:
    """latency_histogram.png, layers.png when profiled, budget_levels.png (accuracy against mean
    latency per level) with --budget and --labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(r.times, bins=min(30, max(5, len(r.times) // 2)), color="#3b6ea5")
    ax.set_xlabel(f"latency per inference ({r.unit})")
    ax.set_ylabel("runs")
    ax.set_title(f"{r.model} on {r.where}")
    written.append(_save(fig, directory / "latency_histogram.png"))
    if r.layers:
        fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(r.layers) + 1)))
        labels = [f"{l['index']} {l['op']}" for l in r.layers]
        ax.barh(labels[::-1], [l["value"] for l in r.layers][::-1], color="#a5553b")
        ax.set_xlabel(f"{r.unit} per layer (last timed run)")
        ax.set_title(f"{r.model}: per-layer profile")
        written.append(_save(fig, directory / "layers.png"))
    rows = [row for row in r.level_summary() if row["accuracy"] is not None and row["mean"]]
    if rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([row["mean"] for row in rows], [100 * row["accuracy"] for row in rows], "o-", color="#3b6ea5")
        for row in rows:
            ax.annotate(f"level {row['level']}", (row["mean"], 100 * row["accuracy"]), textcoords="offset points",
                        xytext=(4, -10))
        ax.set_xlabel(f"mean {r.unit} per inference")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{r.model}: budget levels on {r.where}")
        written.append(_save(fig, directory / "budget_levels.png"))
    return written

