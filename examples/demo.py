"""`make demo`: the main job end to end on the default board.

Exports the bundled Fashion-MNIST model (examples/fashion_dscnn.h5, trained by
examples/train_fashion_dscnn.py) for the Cortex-M4, builds the firmware with arm-none-eabi-gcc,
runs 200 test images on the emulated board (QEMU mps2-an386) over the serial link, and compares
every output byte with TensorFlow Lite's int8 reference interpreter, then measures latency on the
emulated board with `edgekit bench` (instructions per inference, QEMU under -icount).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "build" / "demo"


def main() -> int:
    from edgekit.api import load
    from edgekit.measure.bench import BenchConfig, bench
    from edgekit.build import firmware_elf, firmware_size
    from edgekit.run.emulate import run_firmware
    from edgekit.errors import EdgekitError
    from edgekit.export import export
    from edgekit.run.reference import reference_outputs
    from edgekit.targets import get_target

    target = get_target("cortex-m4")
    try:
        t0 = time.time()
        print(f"1. edgekit export examples/fashion_dscnn.h5 --target {target.name} "
              f"--calib examples/fashion_calib.npy -o {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
        result = export(HERE / "fashion_dscnn.h5", OUT, target, calib=HERE / "fashion_calib.npy")
        print(result.summary)
        print(f"   ({time.time() - t0:.1f} s)\n")

        print(f"2. make -C {OUT.name}: arm-none-eabi-gcc for {target.name}")
        elf = firmware_elf(OUT)
        size = firmware_size(elf)
        print(f"   {elf}: flash {size['flash_bytes']:,} bytes (code + weights), "
              f"RAM {size['ram_bytes']:,} bytes (arena {result.report['totals']['arena_bytes']:,}, "
              f"stack, I/O and serial buffers)\n")

        data = np.load(HERE / "fashion_test_subset.npz")
        x, labels = data["x"], data["y"]
        model = load(OUT)
        print(f"3. run {len(x)} Fashion-MNIST test images on the emulated board ({target.qemu_machine})")
        t0 = time.time()
        y, machine = run_firmware(model, x)
        print(f"   ({time.time() - t0:.1f} s in QEMU)")
        xq = model.quantize(x)
        ref = reference_outputs(model.tflite_path, xq)
        matched = int((y == ref).all(axis=1).sum())
        accuracy = float((y.argmax(axis=1) == labels).mean())

        print(f"\n4. edgekit bench {OUT.name} --emulate --runs 10 --warmup 2 --inputs (3 test images)")
        np.save(OUT / "bench_inputs.npy", x[:3])
        timing = bench(OUT, BenchConfig(runs=10, warmup=2, inputs=str(OUT / "bench_inputs.npy")),
                       emulate=True, progress=False)
        lat = timing.latency()

        print(f"\n{matched}/{len(x)} outputs match the TFLite reference (bit-exact, on {machine})")
        print(f"accuracy of the firmware on these {len(x)} test images: {accuracy:.1%}")
        print(f"latency: {lat['median']:,.0f} {lat['unit']} per inference (median of {len(timing.times)} runs, "
              f"min {lat['min']:,.0f}, max {lat['max']:,.0f}; QEMU -icount counts instructions, not cycles); "
              f"bench outputs matched {timing.matched}/{len(timing.per_input)}")
        print(f"flash {size['flash_bytes']:,} bytes, RAM {size['ram_bytes']:,} bytes, "
              f"model arena {result.report['totals']['arena_bytes']:,} bytes")
        all_match = matched == len(x) and timing.matched == len(timing.per_input)
        return 0 if all_match else 1
    except EdgekitError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
