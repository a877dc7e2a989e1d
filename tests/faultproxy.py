"""A TCP proxy that damages a serial link on command, for end-to-end fault tests of `edgekit bench`.

It sits between the host (`--port socket://127.0.0.1:PROXY_PORT`) and QEMU's TCP serial port
(`-serial tcp:127.0.0.1:QEMU_PORT,server=on,wait=on`) and forwards bytes both ways; on command it
drops, delays or corrupts them (bit flips), injects garbage or a fake boot banner (a simulated
reset), or goes silent (a board that never answers)::

    with FaultProxy(qemu_port, preamble=b"\\x00garbage") as proxy:
        proxy.on_request(Command.GET_OUTPUT, 2, lambda p: p.corrupt_frames(TO_HOST))
        bench(out, config, port=proxy.url)

It understands edgekit's frames (firmware/PROTOCOL.md) in both directions, so a fault can hit one
whole request or reply: on_request() runs an action when the host's n-th request of a type passes,
*before* that request is forwarded (so the action may drop it, or return bytes that replace it).
Bytes that are not part of a frame (the banner, noise) are forwarded as they come. With
protocol="mlperf-tiny" the host's units are ASCII commands up to '%', keyed by their first word.

Bounded on every side: it listens on 127.0.0.1 only and connects only to a loopback upstream,
serves one client, holds at most MAX_PENDING bytes per direction, and stops by itself `lifetime`
seconds after start (or when either side closes). stop() joins its threads with a time limit.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

TO_DEVICE = "to_device"   # host -> board
TO_HOST = "to_host"       # board -> host
DIRECTIONS = (TO_DEVICE, TO_HOST)
LOOPBACK = ("127.0.0.1", "localhost")
SYNC = b"\xc5\xcb"
MAX_PAYLOAD = 1024
MAX_PENDING = 1 << 20      # bytes held per direction while a frame is incomplete
POLL = 0.02                # socket timeout of the pumps: how fast they notice stop()


def banner(model: str) -> bytes:
    """The firmware's boot line (firmware/PROTOCOL.md, "Boot banner")."""
    return f"edgekit ready {model}\r\n".encode("ascii")


@dataclass
class _Faults:
    """What happens to the next bytes of one direction (guarded by the proxy's lock)."""

    drop_bytes: int = 0        # drop this many bytes
    drop_frames: int = 0       # drop this many whole frames
    corrupt_bytes: int = 0     # flip `mask` in this many bytes
    corrupt_frames: int = 0    # flip `mask` in byte `frame_offset` of this many frames
    frame_offset: int = -1     # -1: the CRC's last byte (always a CRC mismatch)
    mask: int = 0x01
    corrupt_all: bool = False  # every byte from now on (what a wrong baud rate looks like)
    delay: float = 0.0         # hold the next `delay_units` units this many seconds each
    delay_units: int = 0
    silent: bool = False       # forward nothing any more


class FaultProxy:
    """One-client TCP proxy 127.0.0.1:port <-> upstream, with injectable faults.

    upstream: the port (or (host, port)) of QEMU's TCP serial; loopback only. QEMU may start
        listening after the proxy: the upstream connection is made (retrying for connect_timeout
        seconds) when the host connects, so QEMU's `wait=on` boot starts then.
    preamble: bytes sent to the host as soon as it connects, before anything from the board.
    protocol: "edgekit" (frames) or "mlperf-tiny" (ASCII commands ending in '%').
    lifetime: seconds after start() at which the proxy stops by itself.
    """

    def __init__(self, upstream: int | tuple[str, int], *, preamble: bytes = b"", protocol: str = "edgekit",
                 lifetime: float = 60.0, connect_timeout: float = 10.0):
        host, port = ("127.0.0.1", upstream) if isinstance(upstream, int) else upstream
        if host not in LOOPBACK:
            raise ValueError(f"the fault proxy only connects to a loopback upstream, not {host!r}")
        if protocol not in ("edgekit", "mlperf-tiny"):
            raise ValueError(f"protocol must be 'edgekit' or 'mlperf-tiny', not {protocol!r}")
        self.upstream = ("127.0.0.1", int(port))
        self.preamble = bytes(preamble)
        self.protocol = protocol
        self.lifetime = lifetime
        self.connect_timeout = connect_timeout
        self.requests: dict[int | str, int] = {}       # requests seen, by type (or MLPerf command)
        self.events: list[str] = []                     # what the proxy did, for failure messages
        self.forwarded = {d: 0 for d in DIRECTIONS}     # bytes delivered per direction
        self._faults = {d: _Faults() for d in DIRECTIONS}
        self._triggers: list[tuple[int | str, int, Callable]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: dict[str, socket.socket] = {}    # "host" / "device": the connected sockets
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(POLL)
        self.port = self._listener.getsockname()[1]
        self._deadline = float("inf")

    @property
    def url(self) -> str:
        """The pyserial URL the host opens."""
        return f"socket://127.0.0.1:{self.port}"

    # -- lifetime ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._deadline = time.monotonic() + self.lifetime
        self._spawn(self._serve, "accept")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop forwarding, close every socket, join the threads (at most `timeout` s)."""
        self._stop.set()
        self._close_all()
        end = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, end - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=f"faultproxy-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        """Accept one client, connect upstream, pump both ways; stop when done."""
        try:
            while self.running:
                try:
                    client, _ = self._listener.accept()
                    break
                except socket.timeout:
                    continue
                except OSError:
                    return
            else:
                return
            self._listener.close()      # one client, like a serial line
            device = self._connect_upstream()
            if device is None:
                self._log("no upstream: closing the client")
                client.close()
                return
            for sock in (client, device):
                sock.settimeout(POLL)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets = {"host": client, "device": device}
            if self.preamble:
                client.sendall(self.preamble)
                self._log(f"sent a {len(self.preamble)}-byte preamble to the host")
            self._spawn(self._pump, TO_DEVICE, client, device, TO_DEVICE)
            self._pump(device, client, TO_HOST)
        finally:
            self._stop.set()
            self._close_all()   # both ends see the line go down

    def _close_all(self) -> None:
        for sock in [self._listener, *self._sockets.values()]:
            try:
                sock.close()
            except OSError:
                pass

    def _connect_upstream(self) -> socket.socket | None:
        end = min(self._deadline, time.monotonic() + self.connect_timeout)
        while self.running and time.monotonic() < end:
            try:
                return socket.create_connection(self.upstream, timeout=1.0)
            except OSError:
                time.sleep(0.02)
        return None

    # -- faults (callable from any thread, also from a trigger's action) --------------

    def drop(self, direction: str, count: int) -> None:
        """Drop the next `count` bytes going `direction`."""
        self._arm(direction, drop_bytes=count)

    def drop_frames(self, direction: str, count: int = 1) -> None:
        """Drop the next `count` whole frames (or MLPerf units) going `direction`."""
        self._arm(direction, drop_frames=count)

    def corrupt(self, direction: str, count: int = 1, mask: int = 0x01) -> None:
        """Flip the bits of `mask` in the next `count` bytes going `direction`."""
        self._arm(direction, corrupt_bytes=count, mask=mask)

    def corrupt_frames(self, direction: str, count: int = 1, offset: int = -1, mask: int = 0x01) -> None:
        """Flip `mask` in byte `offset` (default: the CRC's last) of the next `count` frames."""
        self._arm(direction, corrupt_frames=count, frame_offset=offset, mask=mask)

    def corrupt_all(self, direction: str | None = None, mask: int = 0x55) -> None:
        """Flip `mask` in every byte from now on (both directions by default): a wrong baud rate."""
        for d in DIRECTIONS if direction is None else (direction,):
            self._arm(d, corrupt_all=True, mask=mask)

    def delay(self, direction: str, seconds: float, units: int = 1) -> None:
        """Hold each of the next `units` frames (or runs of bytes) going `direction` for `seconds`."""
        self._arm(direction, delay=seconds, delay_units=units)

    def silence(self, direction: str | None = None) -> None:
        """Forward nothing any more (both directions by default): a board that never answers."""
        for d in DIRECTIONS if direction is None else (direction,):
            self._arm(d, silent=True)

    def inject(self, direction: str, data: bytes) -> None:
        """Send `data` now, ahead of anything still held back."""
        sock = self._sockets.get("host" if direction == TO_HOST else "device")
        if sock is None:
            raise RuntimeError("the proxy has no client yet: nothing to inject into")
        self._log(f"injected {len(data)} bytes {direction}")
        try:
            sock.sendall(data)
        except OSError:
            pass

    def inject_banner(self, model: str) -> None:
        """Send the host a boot banner: to the host the board seems to have reset."""
        self.inject(TO_HOST, banner(model))

    def on_request(self, kind: int | str, nth: int, action: Callable[[FaultProxy], bytes | None]) -> None:
        """When the host's `nth` request of `kind` (a frame type, or an MLPerf command word) arrives,
        call action(proxy) before forwarding it; bytes it returns replace the request."""
        with self._lock:
            self._triggers.append((kind, nth, action))

    def _arm(self, direction: str, **changes) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        with self._lock:
            faults = self._faults[direction]
            for key, value in changes.items():
                setattr(faults, key, value)
        self._log(f"{direction}: {', '.join(f'{k}={v}' for k, v in changes.items())}")

    def _log(self, text: str) -> None:
        with self._lock:
            if len(self.events) < 1000:
                self.events.append(text)

    # -- forwarding --------------------------------------------------------------------

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        pending = bytearray()
        while self.running:
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            pending += data
            for unit, is_frame in self._split(pending, direction):
                if not self._forward(dst, direction, unit, is_frame):
                    return
        self._stop.set()   # either side closed: the session is over

    def _split(self, buffer: bytearray, direction: str):
        """Take the complete units off the front of buffer: (bytes, is_frame) pairs.

        Frames are held until complete; bytes before a sync go on at once. A held part that
        grows beyond MAX_PENDING is let through as it is.
        """
        units = []
        while buffer:
            if self.protocol == "mlperf-tiny":
                if direction == TO_DEVICE and b"%" in buffer:
                    end = buffer.index(b"%") + 1
                    units.append((bytes(buffer[:end]), True))
                    del buffer[:end]
                    continue
                if direction == TO_HOST or len(buffer) > MAX_PENDING:
                    units.append((bytes(buffer), False))
                    buffer.clear()
                break
            start = buffer.find(SYNC)
            if start != 0:
                # Bytes before a sync go on; a last lone C5 may begin one: keep it.
                if start < 0:
                    start = len(buffer) - 1 if buffer.endswith(SYNC[:1]) else len(buffer)
                if start == 0:
                    break
                units.append((bytes(buffer[:start]), False))
                del buffer[:start]
                continue
            if len(buffer) < 5:
                break
            (length,) = struct.unpack_from("<H", buffer, 3)
            if length > MAX_PAYLOAD:       # not a frame: let the sync bytes through as noise
                units.append((bytes(buffer[:2]), False))
                del buffer[:2]
                continue
            size = 5 + length + 2
            if len(buffer) < size:
                if len(buffer) > MAX_PENDING:
                    units.append((bytes(buffer), False))
                    buffer.clear()
                break
            units.append((bytes(buffer[:size]), True))
            del buffer[:size]
        return units

    def _request_kind(self, unit: bytes) -> int | str:
        if self.protocol == "mlperf-tiny":
            words = unit.rstrip(b"%").decode("ascii", errors="replace").split()
            return words[0] if words else ""
        return unit[2]

    def _forward(self, dst: socket.socket, direction: str, unit: bytes, is_frame: bool) -> bool:
        """Apply the faults to one unit and send what is left; False when the socket is gone."""
        if direction == TO_DEVICE and is_frame:
            kind = self._request_kind(unit)
            with self._lock:
                self.requests[kind] = self.requests.get(kind, 0) + 1
                count = self.requests[kind]
                actions = [a for k, n, a in self._triggers if k == kind and n == count]
            for action in actions:
                self._log(f"request {kind!r} #{count}: trigger")
                replacement = action(self)
                if replacement is not None:
                    unit = bytes(replacement)
        with self._lock:
            f = self._faults[direction]
            if f.silent:
                return True
            if is_frame and f.drop_frames:
                f.drop_frames -= 1
                self.events.append(f"dropped a {len(unit)}-byte frame {direction}")
                return True
            data = bytearray(unit)
            if f.drop_bytes:
                cut = min(f.drop_bytes, len(data))
                f.drop_bytes -= cut
                del data[:cut]
            if is_frame and f.corrupt_frames and data:
                f.corrupt_frames -= 1
                data[f.frame_offset] ^= f.mask
            if f.corrupt_all:
                data = bytearray(b ^ f.mask for b in data)
            elif f.corrupt_bytes:
                n = min(f.corrupt_bytes, len(data))
                f.corrupt_bytes -= n
                for i in range(n):
                    data[i] ^= f.mask
            delay = 0.0
            if f.delay_units:
                f.delay_units -= 1
                delay = f.delay
        if delay:
            end = time.monotonic() + delay
            while self.running and time.monotonic() < end:
                time.sleep(min(POLL, max(0.0, end - time.monotonic())))
        if not data:
            return True
        try:
            dst.sendall(bytes(data))
        except OSError:
            return False
        with self._lock:
            self.forwarded[direction] += len(data)
        return True
