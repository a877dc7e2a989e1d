"""`pip install` outside the checkout works: the wheel carries templates/ and firmware/, and an
export made from the installed package builds and runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    sys.path.insert(0, str(REPO / "tests"))
    from opmodels import op_model
    src.write_bytes(op_model("mini_dscnn"))
    script = (
        "import edgekit, edgekit.codegen as c, numpy as np, sys\n"
        "assert 'site' in edgekit.__file__, edgekit.__file__\n"
        "assert '_data' in str(c.resource_dir('templates')), c.resource_dir('templates')\n"
        f"m = edgekit.compile({str(src)!r}, out_dir={str(tmp_path / 'out')!r})\n"
        "x = np.zeros((2, *m.input_shape[1:]), np.int8)\n"
        "print(m.predict(x).shape)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "(2, 10)" or proc.stdout.strip().startswith("(2,")
