"""Running the edgekit CLI in tests, checking its one-line user errors and that a failed export
wrote nothing, and editing .tflite files (shared by test_bad_inputs.py, test_cli.py and
test_refusals_direct.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgekit.cli import main


def leftovers(out: Path) -> list[str]:
    """Temp or backup directories an export left beside `out` (.out.tmp-*, .out.old-*)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def assert_not_written(out: Path) -> None:
    assert not out.exists(), f"a failed export created {out}: {sorted(os.listdir(out))}"
    assert leftovers(out) == [], f"a failed export left {leftovers(out)} beside {out}"


def patched(tflite: bytes, edit) -> bytes:
    """Parse a .tflite into the object API, let `edit(model)` change it, re-serialize."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    edit(model)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def run_edgekit(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in a fresh process: tracebacks and stray output would show here."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def call(capsys, *args) -> tuple[int, str, str]:
    """edgekit.cli.main in this process (TensorFlow stays imported between cases)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *words: str) -> str:
    """Exit 2, exactly one line 'edgekit: error: ...', no traceback, and every key word in it."""
    assert "Traceback" not in err, err
    assert rc == 2, f"exit status {rc}, stderr: {err!r}"
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith("edgekit: error: "), err
    assert "\x1b" not in err and "\r" not in err, repr(err)
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in {err!r}"
    return lines[0]
