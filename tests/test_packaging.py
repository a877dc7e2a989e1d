"""`pip install` outside the checkout works: the wheel carries templates/ and firmware/, and an
export made from the installed package builds and runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import assert_bit_exact, test_inputs
from edgekit.run.reference import reference_outputs
from opmodels import describe, op_model

REPO = Path(__file__).resolve().parent.parent


def test_wheel_installs_and_exports_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("edgekit-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    src = tmp_path / "m.tflite"
    src.write_bytes(op_model("mini_dscnn"))
    x = test_inputs(tuple(describe(src.read_bytes())["inputs"][0]["shape"][1:]), n=3, seed=5)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import edgekit, edgekit.emit.codegen as c, numpy as np, sys\n"
        "assert 'site' in edgekit.__file__, edgekit.__file__\n"
        "assert '_data' in str(c.resource_dir('templates')), c.resource_dir('templates')\n"
        f"m = edgekit.compile({str(src)!r}, out_dir={str(tmp_path / 'out')!r})\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r})))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # The installed package's generated C gives TFLite's bytes.
    assert_bit_exact(np.load(tmp_path / "y.npy"), reference_outputs(src, x), "the wheel's export")
