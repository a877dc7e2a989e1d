"""The cache of compiled kernel objects (edgekit/build/objcache.py, used by edgekit.build.run_make):
the key follows everything that changes an object and nothing that does not, a partial or
corrupt entry is never used, a cached build is the same program, and a plain `make -C out`
still builds without it."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.build import objcache
from edgekit.api import load
from edgekit.build import firmware_elf, host_binary
from edgekit.errors import EdgekitError
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from opmodels import op_model


def _export(tmp_path: Path, name: str, target: str = "host", case: str = "mini_dscnn") -> Path:
    src = tmp_path / f"{case}.tflite"
    if not src.exists():
        src.write_bytes(op_model(case))
    export(src, tmp_path / name, get_target(target))
    return tmp_path / name


def _entries(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in cache.glob("*/*.o")}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of its own for the test (the session's is shared by every other test)."""
    path = tmp_path / "objs"
    monkeypatch.setenv("EDGEKIT_OBJ_CACHE", str(path))
    return path


# ---- the key -------------------------------------------------------------------------------

@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """kernels/k.c -> kernels/k.h -> kernels/common.h; k.h reads EK_BUF, nothing reads EK_OTHER."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "common.h").write_text("#include <stdint.h>\ntypedef int32_t word;\n")
    (tmp_path / "kernels" / "k.h").write_text('#include "common.h"\nstatic word buf[EK_BUF];\n')
    (tmp_path / "kernels" / "k.c").write_text('#include "k.h"\nword *k(void) { return buf; }\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


FLAGS = ["-std=c99", "-O2", "-I.", "-Ikernels", "-DEK_BUF=16", "-DEK_OTHER=8"]


def _key(flags=FLAGS, cc=("cc",)):
    return objcache.cache_key(list(cc), list(flags), "kernels/k.c")


def test_key_follows_source_headers_compiler_and_flags(tree):
    key = _key()
    assert key == _key()
    (tree / "kernels" / "common.h").write_text("#include <stdint.h>\ntypedef int64_t word;\n")
    assert _key() != key, "a header two includes down"
    key = _key()
    (tree / "kernels" / "k.c").write_text('#include "k.h"\nword *k(void) { return buf + 1; }\n')
    assert _key() != key, "the source"
    key = _key()
    assert _key([f.replace("-O2", "-O1") for f in FLAGS]) != key, "an option"
    assert _key(FLAGS + ["-DNDEBUG"]) != key, "a define that is not edgekit's"
    assert _key([f.replace("EK_BUF=16", "EK_BUF=32") for f in FLAGS]) != key, "a size the source reads"
    assert _key(["-std=c99", "-O2", "-I.", "-I", "kernels", "-D", "EK_BUF=16"]) == \
        _key(["-std=c99", "-O2", "-I.", "-Ikernels", "-DEK_BUF=16"]), "the same options spelled apart"
    assert _key(cc=("gcc", "-m32")) != key, "the compiler"


def test_key_follows_the_compilers_headers_too(tree):
    """<...> headers from the compiler's own directories (`cc -E -v`) are keyed by content, through
    their includes and #include_next: a C library upgrade that changes them misses the cache."""
    sysdir, nextdir = tree / "sys", tree / "sys2"
    sysdir.mkdir()
    nextdir.mkdir()
    (sysdir / "lib.h").write_text("#include <bits.h>\n#include_next <lib.h>\n")
    (sysdir / "bits.h").write_text("typedef int word_t;\n")
    (nextdir / "lib.h").write_text("#define LIB_NEXT 1\n")
    (tree / "kernels" / "k.c").write_text('#include <lib.h>\nword_t k(void) { return 1; }\n')

    def key():
        return objcache.cache_key(["cc"], FLAGS, "kernels/k.c", sysdirs=[str(sysdir), str(nextdir)])

    before = key()
    (sysdir / "bits.h").write_text("typedef long word_t;\n")
    assert key() != before, "a system header two includes down"
    before = key()
    (nextdir / "lib.h").write_text("#define LIB_NEXT 22\n")     # another size too: mtimes are coarse
    assert key() != before, "the header #include_next reaches"
    assert objcache.system_dirs(["cc"], FLAGS), "the host compiler lists its directories"


def test_system_dirs_are_remembered_until_a_skipped_one_appears(tmp_path):
    """`cc -E -v` runs once per compiler and options; again when a directory it skipped as
    absent exists (a header there would come first)."""
    calls, later = tmp_path / "calls", tmp_path / "later"
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho x >> " + str(calls) + "\n"
                    f"echo 'ignoring nonexistent directory \"{later}\"' >&2\n"
                    "echo '#include <...> search starts here:' >&2\n"
                    f"echo ' {tmp_path}' >&2\necho 'End of search list.' >&2\n")
    fake.chmod(0o755)
    cache = str(tmp_path / "objs")
    for _ in range(2):
        assert objcache.system_dirs([str(fake)], ["-O2"], cache) == [str(tmp_path)]
    assert calls.read_text().count("x") == 1
    later.mkdir()
    objcache.system_dirs([str(fake)], ["-O2"], cache)
    assert calls.read_text().count("x") == 2


def test_key_ignores_edgekit_sizes_the_source_never_reads(tree):
    key = _key()
    assert _key([f.replace("EK_OTHER=8", "EK_OTHER=4096") for f in FLAGS]) == key
    assert _key([f for f in FLAGS if "EK_OTHER" not in f]) == key


def test_a_header_that_appears_changes_the_key(tree):
    key = _key()
    (tree / "kernels" / "k.h").write_text('#include "common.h"\n#include "extra.h"\nstatic word buf[EK_BUF];\n')
    missing = _key()
    assert missing != key
    (tree / "kernels" / "extra.h").write_text("/* now here */\n")
    assert _key() != missing


def test_an_include_it_cannot_follow_is_not_cached(tree):
    (tree / "kernels" / "k.c").write_text('#define H "k.h"\n#include H\nword *k(void) { return buf; }\n')
    assert _key() is None


# ---- entries -------------------------------------------------------------------------------

def test_partial_or_corrupt_entries_are_never_used(tmp_path):
    cache, key, obj = str(tmp_path), "ab" * 32, b"\x7fELF object bytes" * 100
    objcache.store(cache, key, obj)
    assert objcache.load(cache, key) == obj
    entry = Path(objcache._entry(cache, key))
    assert [p.name for p in entry.parent.iterdir()] == [entry.name], "no temporary file left behind"
    whole = entry.read_bytes()
    for bad in (whole[: len(whole) // 2],                      # cut short
                whole[:10] + bytes([whole[10] ^ 1]) + whole[11:],   # one bit flipped in the object
                whole[:-1] + bytes([whole[-1] ^ 1]),          # ... in the checksum
                b""):
        entry.write_bytes(bad)
        assert objcache.load(cache, key) is None
        assert not entry.exists(), "a bad entry is removed"
    assert objcache.load(cache, "cd" * 32) is None


def test_a_corrupt_cache_still_builds_the_right_program(tmp_path, cache):
    first = _export(tmp_path, "a")
    host_binary(first)
    entries = _entries(cache)
    assert entries and all(p.parent.name == p.name[:2] for p in entries)
    for p in entries:                          # every entry damaged
        p.write_bytes(p.read_bytes()[:100])
    second = _export(tmp_path, "b")
    model = load(second)
    x = test_inputs(model.input_shape[1:], n=4, seed=1)
    assert_bit_exact(model.predict(x), reference_outputs(op_model("mini_dscnn"), x), "after corruption")
    assert set(_entries(cache)) == set(entries)
    assert all(objcache.load(str(cache), p.stem) is not None for p in entries), "rewritten whole"


def test_a_second_export_takes_its_kernels_from_the_cache(tmp_path, cache):
    host_binary(_export(tmp_path, "a"), sanitize=True)
    entries = _entries(cache)
    kernels = len(list((tmp_path / "a" / "kernels").glob("*.c")))
    assert len(entries) == kernels, "one entry per kernel source; model.c and host_main.c are the export's own"
    model = load(_export(tmp_path, "b"), sanitize=True)
    x = test_inputs(model.input_shape[1:], n=4, seed=2)
    assert_bit_exact(model.predict(x), reference_outputs(op_model("mini_dscnn"), x), "from the cache")
    assert _entries(cache) == entries, "nothing compiled again"
    host_binary(tmp_path / "b")                 # other flags (not the sanitizers): other objects
    assert len(_entries(cache)) == 2 * kernels


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_OBJ_CACHE", "off")
    model = load(_export(tmp_path, "a"))
    x = test_inputs(model.input_shape[1:], n=2, seed=3)
    assert_bit_exact(model.predict(x), reference_outputs(op_model("mini_dscnn"), x), "without the cache")


def test_firmware_is_the_same_with_and_without_the_cache(tmp_path, cache, monkeypatch, arm_toolchain):
    """Same loadable bytes (objcopy -O binary) cold, warm and without the cache."""
    images = {}
    for name, setting in (("off", "off"), ("cold", str(cache)), ("warm", str(cache))):
        monkeypatch.setenv("EDGEKIT_OBJ_CACHE", setting)
        elf = firmware_elf(_export(tmp_path, name, "cortex-m4"))
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(tmp_path / f"{name}.bin")], check=True)
        images[name] = (tmp_path / f"{name}.bin").read_bytes()
    assert images["cold"] == images["off"] and images["warm"] == images["off"]
    assert _entries(cache)


def test_plain_make_builds_without_the_cache(tmp_path, cache):
    out = _export(tmp_path, "a")
    proc = subprocess.run(["make", "-C", str(out), "host"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "objcache" not in proc.stdout and (out / "build" / "host" / "model_host").exists()
    assert not cache.exists()


def test_compile_errors_reach_the_user(tmp_path, cache):
    out = _export(tmp_path, "a")
    kernel = sorted((out / "kernels").glob("*.c"))[0]
    kernel.write_text(kernel.read_text() + "\n#error this kernel is broken\n")
    with pytest.raises(EdgekitError, match="this kernel is broken"):
        host_binary(out)
    assert not any(p.stat().st_size == 0 for p in _entries(cache))


def test_commands_it_does_not_know_run_unchanged(tmp_path, monkeypatch):
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.c").write_text("int x(void) { return 1; }\n")
    status = objcache.main(["--cache", str(tmp_path / "objs"), "--", "cc", "-c", "x.c", "-o", "x.o"])
    assert status == 0 and (tmp_path / "x.o").exists() and not (tmp_path / "objs").exists()
    assert objcache.main(["--cache", str(tmp_path / "objs"), "--", "cc", "-c", "missing.c", "-o", "y.o"]) != 0
    assert os.path.exists("x.o")
