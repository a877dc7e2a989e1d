"""A cache of compiled kernel objects, keyed by everything that determines them.

`edgekit.build.run_make` runs the generated Makefile with its compilers wrapped by this script
(``make HOSTCC='python objcache.py --cache DIR -- cc' ARM_CC='... -- $(ARM_PREFIX)gcc'``). The
Makefile compiles and links in one command (``CC FLAGS model.c main.c kernels/*.c ... -o OUT``);
the wrapper compiles each source separately (in parallel), takes the objects of kernels/*.c and
board/*.c from the cache when it holds them, then links exactly as the one command would. A
plain ``make -C out`` never sees this file.

Key (sha256): this file's format version, the compiler (its path, size and mtime, and the
environment variables GCC reads), every compile option in order (the link-only ones left out),
the source's path and content, and the path and content of every header it includes, followed
recursively as GCC searches them: the -iquote / -I directories, then the compiler's own
(``cc -E -v``, remembered in the cache directory), so a C library upgrade misses the cache too.
A ``-DEK_...`` define enters the key only if its name appears in that text (the model's buffer
sizes do not change a kernel that never reads them); any other define always does. A source
whose own includes cannot be followed (``#include MACRO``) is compiled without the cache.

Entries are written to a temporary file and renamed, and end with a sha256 of the object: a
partial or corrupt entry is never used (it is deleted and the source compiled again). The
cache directory can be deleted at any time.

Runs as a script with only the standard library (``python -I -S``: no edgekit import, so the
wrapper adds a few tens of milliseconds per build, not the package's import time).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

FORMAT = b"edgekit-objcache 1\n"
MAGIC = b"EKOBJ1\n\0"
CACHED_DIRS = ("kernels", "board")      # the export's shared sources; model.c and main are its own
GCC_ENV = ("CPATH", "C_INCLUDE_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH", "LIBRARY_PATH")
_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include(?:_next)?[ \t]*(?:"([^"\n]+)"|<([^>\n]+)>|(.*))', re.M)
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
# Options whose value is the next argument, by what they are for.
_COMPILE_PAIRS = {"-I", "-D", "-U", "-iquote", "-isystem", "-idirafter"}
_LINK_PAIRS = {"-T", "-Xlinker", "-L", "-l"}
_LINK_ONLY = ("-Wl,", "-T", "-L", "-l", "-nostartfiles", "-nostdlib", "-nodefaultlibs", "-static",
              "-shared", "-rdynamic", "-pie", "-no-pie")
# A command with any of these is not one plain compile-and-link: it runs unchanged.
_NOT_OURS = {"-c", "-E", "-S", "-x", "-include", "-imacros", "-", "-pipe", "-Xpreprocessor", "-Xassembler"}
_NOT_OURS_PREFIX = ("-M", "@", "-save-temps", "-flto", "-fdump")


class Command:
    """One `CC OPTIONS SOURCES -o OUT` line, split into its parts (None: not that shape)."""

    def __init__(self, compile_opts: list[str], link_opts: list[str], sources: list[str], output: str):
        self.compile_opts, self.link_opts, self.sources, self.output = compile_opts, link_opts, sources, output

    @classmethod
    def parse(cls, args: list[str]) -> Command | None:
        compile_opts: list[str] = []
        link_opts: list[str] = []
        sources: list[str] = []
        output = None
        i = 0
        while i < len(args):
            a = args[i]
            if a == "-o" and i + 1 < len(args):
                output = args[i + 1]
                i += 2
                continue
            if a in _NOT_OURS or a.startswith(_NOT_OURS_PREFIX):
                return None
            if not a.startswith("-"):
                if not a.endswith(".c"):
                    return None          # objects, archives, assembly: not the Makefile's command
                sources.append(a)
            elif a in _COMPILE_PAIRS or a in _LINK_PAIRS:
                if i + 1 >= len(args):
                    return None
                (compile_opts if a in _COMPILE_PAIRS else link_opts).extend(args[i:i + 2])
                i += 2
                continue
            elif a.startswith(_LINK_ONLY):
                link_opts.append(a)
            else:
                compile_opts.append(a)
            i += 1
        if not sources or output is None:
            return None
        return cls(compile_opts, link_opts, sources, output)


def _options(opts: list[str]) -> list[tuple[str, str | None]]:
    """(flag, value) pairs: `-I dir` and `-Idir` both give ("-I", "dir"); `-O2` gives ("-O2", None)."""
    out, i = [], 0
    while i < len(opts):
        a = opts[i]
        if a in _COMPILE_PAIRS and i + 1 < len(opts):
            out.append((a, opts[i + 1]))
            i += 2
            continue
        for flag in ("-iquote", "-isystem", "-idirafter", "-I", "-D", "-U"):
            if a.startswith(flag) and a != flag:
                out.append((flag, a[len(flag):]))
                break
        else:
            out.append((a, None))
        i += 1
    return out


def _include_dirs(opts: list[str]) -> tuple[list[str], list[str]]:
    """(directories searched for "x" after the includer's own, those searched for <x>) from the
    options, in GCC's order; the compiler's own directories (system_dirs) come after both."""
    pairs = _options(opts)
    dirs = {f: [v for g, v in pairs if g == f] for f in ("-iquote", "-I", "-isystem", "-idirafter")}
    angle = dirs["-I"] + dirs["-isystem"] + dirs["-idirafter"]
    return dirs["-iquote"] + angle, angle


_SYSTEM_READ: dict[str, tuple[tuple, bytes, list]] = {}   # the compiler's headers: path -> (stat, text, includes)


def _read(path: str, system: bool) -> tuple[bytes, list[tuple[str, str | None, bool]]]:
    """A file's bytes and its includes as (kind, name, next): kind '"', '<' or 'macro'. The
    compiler's headers are parsed once per process while their size and mtime stay; the
    sources and their own headers every time."""
    stamp = None
    if system:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    if path not in _SYSTEM_READ or _SYSTEM_READ[path][0] != stamp:
        with open(path, "rb") as f:
            text = f.read()
        includes = []
        for m in _INCLUDE.finditer(text):
            q, a, other = m.groups()
            nxt = b"include_next" in m.group(0)
            if q or a:
                includes.append(('"' if q else "<", (q or a).decode("utf-8", "surrogateescape"), nxt))
            elif other is not None and other.strip() and not other.strip().startswith((b"/*", b"//")):
                includes.append(("macro", None, nxt))
        if not system:
            return text, includes
        _SYSTEM_READ[path] = (stamp, text, includes)
    return _SYSTEM_READ[path][1:]


def system_dirs(cc: list[str], opts: list[str], cache: str | None = None) -> list[str]:
    """The compiler's own <...> search directories for these options (`cc -E -v`), remembered
    in the cache directory per compiler and options until a directory it skipped as absent
    appears."""
    query = [o for f, v in _options(opts) if f not in ("-I", "-D", "-U", "-iquote")
             for o in ([f] if v is None else [f + v])]
    ident = hashlib.sha256(_compiler_id(cc) + "\0".join(query).encode()).hexdigest()[:24]
    path = os.path.join(cache, f"sysdirs-{ident}.txt") if cache else None
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
        if len(lines) >= 2 and lines[-1] == "end" and "absent" in lines:
            cut = lines.index("absent")
            if not any(os.path.isdir(d) for d in lines[cut + 1:-1]):
                return lines[:cut]
    proc = subprocess.run(cc + query + ["-xc", "-E", "-v", os.devnull], capture_output=True, text=True,
                          errors="surrogateescape")
    out = proc.stderr.splitlines()
    try:
        start = out.index("#include <...> search starts here:") + 1
        dirs = [line.strip() for line in out[start:out.index("End of search list.", start)]]
    except ValueError:
        raise OSError(f"{' '.join(cc)} did not list its include directories") from None
    absent = [line.split('"')[1] for line in out if line.startswith("ignoring nonexistent directory \"")]
    if path:
        store_text(path, "\n".join(dirs + ["absent"] + absent + ["end"]))
    return dirs


def translation_unit(source: str, opts: list[str], sysdirs: list[str]) -> list[tuple[str, bytes]] | None:
    """(path, content) of the source and of every header it reaches, its own (-I, -iquote) and
    the compiler's (sysdirs), as GCC searches them; None if one of its own includes cannot be
    followed (#include MACRO). In the compiler's headers a macro include is left to the
    compiler's identity, and #include_next takes every match."""
    quote, angle = _include_dirs(opts)
    seen: dict[str, bytes] = {}
    missing: set[str] = set()
    todo = [(source, False)]
    while todo:
        path, system = todo.pop()
        if path in seen:
            continue
        text, includes = _read(path, system)
        seen[path] = text
        for kind, name, nxt in includes:
            if kind == "macro":
                if system:
                    continue
                return None
            dirs = ([os.path.dirname(path)] + quote if kind == '"' else angle) + sysdirs
            found = [os.path.normpath(os.path.join(d, name)) for d in dirs]
            found = [c for c in found if c != path and os.path.isfile(c)]
            if not found:
                missing.add(name)                            # absent: keyed by name (it may appear)
            own = {os.path.normpath(os.path.join(d, name)) for d in dirs[:len(dirs) - len(sysdirs)]}
            for c in (found if nxt else found[:1]):
                todo.append((c, system or c not in own))
    return sorted(seen.items()) + [(f"<missing {n}>", b"") for n in sorted(missing)]


def _compiler_id(cc: list[str]) -> bytes:
    exe = shutil.which(cc[0]) or cc[0]
    try:
        st = os.stat(exe)
        ident = f"{os.path.realpath(exe)} {st.st_size} {st.st_mtime_ns}"
    except OSError:
        ident = exe
    env = " ".join(f"{k}={os.environ.get(k, '')}" for k in GCC_ENV)
    return f"{' '.join(cc)}\n{ident}\n{env}\n".encode()


def cache_key(cc: list[str], opts: list[str], source: str, sysdirs: list[str] | None = None) -> str | None:
    """The source's cache key, or None if it must be compiled without the cache."""
    files = translation_unit(source, opts, system_dirs(cc, opts) if sysdirs is None else sysdirs)
    if files is None:
        return None
    words: set[bytes] = set()
    for _, text in files:
        words.update(_IDENT.findall(text))
    h = hashlib.sha256(FORMAT + _compiler_id(cc))
    for flag, value in _options(opts):
        if flag in ("-D", "-U") and value is not None:
            name = value.split("=", 1)[0]
            if name.startswith("EK_") and name.encode() not in words:
                continue                                     # a size this source never reads
        h.update(f"opt\0{flag}\0{value}\0".encode())
    for path, text in files:
        h.update(f"file\0{path}\0{len(text)}\0".encode() + text)
    return h.hexdigest()


def _entry(cache: str, key: str) -> str:
    return os.path.join(cache, key[:2], key + ".o")


def load(cache: str, key: str) -> bytes | None:
    """The cached object, or None (missing, partial or corrupt: a bad entry is removed)."""
    path = _entry(cache, key)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    body, magic, digest = blob[:-40], blob[-40:-32], blob[-32:]
    if len(blob) >= 40 and magic == MAGIC and hashlib.sha256(body).digest() == digest:
        return body
    try:
        os.unlink(path)
    except OSError:
        pass
    return None


def store_text(path: str, text: str) -> None:
    _write_atomic(path, text.encode("utf-8", "surrogateescape"))


def _write_atomic(path: str, data: bytes) -> None:
    """Temporary file in the same directory + rename; failures only cost the cache."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def store(cache: str, key: str, obj: bytes) -> None:
    """Write the entry atomically, with its checksum."""
    _write_atomic(_entry(cache, key), obj + MAGIC + hashlib.sha256(obj).digest())


def _cached(source: str) -> bool:
    """kernels/*.c and board/*.c (an export's, or firmware/'s): the same in every export."""
    return os.path.basename(os.path.dirname(os.path.normpath(source))) in CACHED_DIRS


def build(cache: str, cc: list[str], cmd: Command, jobs: int) -> int:
    """Compile (from the cache where possible) and link; the compiler's exit status."""
    cwd = os.getcwd()
    try:
        sysdirs = system_dirs(cc, cmd.compile_opts, cache)
    except OSError:
        sysdirs = None                                       # compile everything without the cache
    with tempfile.TemporaryDirectory(prefix="edgekit-objs-") as objdir:
        objects, pending = [], []
        for n, src in enumerate(cmd.sources):
            obj = os.path.join(objdir, f"{n:03d}-{os.path.basename(src)[:-2]}.o")
            objects.append(obj)
            key = None
            opts = list(cmd.compile_opts)
            if _cached(src) and sysdirs is not None:
                try:
                    key = cache_key(cc, opts, src, sysdirs)
                except OSError:                              # a header vanished or is unreadable
                    key = None
                opts.append(f"-fdebug-prefix-map={cwd}=.")   # no export's directory inside a shared object
                if key is not None:
                    hit = load(cache, key)
                    if hit is not None:
                        with open(obj, "wb") as f:
                            f.write(hit)
                        continue
            pending.append((cc + opts + ["-c", src, "-o", obj], key, obj))
        running: list[tuple[subprocess.Popen, str | None, str]] = []
        status = 0
        while pending or running:
            while pending and len(running) < jobs and status == 0:
                argv, key, obj = pending.pop(0)
                running.append((subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), key, obj))
            if not running:
                break
            proc, key, obj = running.pop(0)
            out, _ = proc.communicate()
            if out:
                sys.stderr.buffer.write(out)
                sys.stderr.flush()
            if proc.returncode != 0:
                status = status or proc.returncode
            elif key is not None:
                with open(obj, "rb") as f:
                    store(cache, key, f.read())
        if status:
            return status
        return subprocess.run(cc + cmd.compile_opts + objects + cmd.link_opts + ["-o", cmd.output]).returncode


def main(argv: list[str]) -> int:
    """objcache.py --cache DIR [--jobs N] -- CC [CC ARGS...]"""
    cache, jobs = None, os.cpu_count() or 1
    while argv and argv[0] != "--":
        if argv[0] == "--cache" and len(argv) > 1:
            cache, argv = argv[1], argv[2:]
        elif argv[0] == "--jobs" and len(argv) > 1:
            jobs, argv = max(1, int(argv[1])), argv[2:]
        else:
            print(f"objcache.py: unknown option {argv[0]!r}", file=sys.stderr)
            return 2
    args = argv[1:]
    # The compiler is the leading words up to the first option or source (`ccache gcc` works too).
    n = 1
    while n < len(args) and not args[n].startswith("-") and not args[n].endswith(".c"):
        n += 1
    cc, rest = args[:n], args[n:]
    if not cc:
        print("objcache.py: no compiler given", file=sys.stderr)
        return 2
    cmd = Command.parse(rest) if cache else None
    if cmd is None:
        return subprocess.run(cc + rest).returncode
    return build(cache, cc, cmd, jobs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
