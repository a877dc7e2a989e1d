"""Running the edgekit CLI in tests and checking its one-line user errors (shared by
test_bad_inputs.py and test_cli.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgekit.cli import main


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
