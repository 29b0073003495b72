"""Engine-build progress from TensorRT itself (issue 19): a bar per builder phase, nested as TensorRT nests its
phases, and Ctrl-C as a clean cancel of the build.

TensorRT 10.0 and later report the builder's work to an IProgressMonitor set on the builder config
(`IBuilderConfig.progress_monitor`; both are in trt-python-api/10.0.json ... 11.1.json and absent from 8.6.json,
hence the `progress_monitor` capability in defectrt.trt_compat). Its contract, from NvInfer.h (10.3):
- `phase_start(phase_name, parent_phase, num_steps)`: a phase begins, inside `parent_phase` (None: an independent
  one), with num_steps > 0 steps. Names are unique within a hierarchy while a phase runs and may change between
  releases, so we show them and never match on them.
- `step_complete(phase_name, step) -> bool`: step `step` (0 .. num_steps-1, increasing) of the innermost phase is
  done; returning False stops the build (build_serialized_network then returns no engine).
- `phase_finish(phase_name)`: the phase ended, possibly before its last step (errors, a cancel).
- It may be called from several builder threads at once, and must outlive every TensorRT object that uses it.
Releases without it (8.x) keep the phase lines of export.engine.Progress and the "engine" phase of `export build`.

UNVERIFIED ON HARDWARE: no machine here has TensorRT; the callbacks are driven by a fake TensorRT in
tests/test_engine_progress.py. Python 3.8 compatible (engines are built on JetPack 5 devices).
"""
from __future__ import annotations

import signal
import socket
import threading

from defectrt import progress


class Cancelled(KeyboardInterrupt):
    """The engine build was stopped by Ctrl-C (or SIGTERM): TensorRT was asked to stop at its next step."""


class PhaseBars(object):
    """The TensorRT-independent half: one bar per running phase (indented by its depth), its steps, and whether
    the build should go on. Thread-safe (TensorRT may report from several threads)."""

    def __init__(self, cancel_requested=None):
        self._lock = threading.Lock()
        self._bars = {}  # running phase name -> its bar
        self._depth = {}  # running phase name -> nesting depth (0: no parent)
        self._cancel_requested = cancel_requested or (lambda: False)
        self.cancelled = False
        self.phases = []  # (depth, name, steps) in the order TensorRT started them

    def start(self, name, parent, steps):
        name = str(name)
        with self._lock:
            depth = self._depth[parent] + 1 if parent is not None and parent in self._depth else 0
            self._depth[name] = depth
            self.phases.append((depth, name, int(steps)))
            previous = self._bars.pop(name, None)  # a name is reused only after its phase finished
            if previous is not None:
                previous.close()
            self._bars[name] = progress.bar(total=max(1, int(steps)), desc="  " * depth + name, unit="step")

    def step(self, name, step):
        """-> whether TensorRT should go on to the next step."""
        with self._lock:
            bar = self._bars.get(str(name))
            if bar is not None:
                done = min(int(step) + 1, bar.total)
                if done > bar.n:
                    bar.update(done - bar.n)
            if not self.cancelled and self._cancel_requested():
                self.cancelled = True
            return not self.cancelled

    def finish(self, name):
        with self._lock:
            bar = self._bars.pop(str(name), None)
            self._depth.pop(str(name), None)
            if bar is not None:
                bar.refresh()  # the steps it reached (updates in between are drawn at most every 0.1 s)
                bar.close()

    def close(self):
        """Close the bars of phases TensorRT never finished (a failed or cancelled build)."""
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
            self._depth.clear()


def _guarded(bars, call, *args):
    """Run a callback body so that nothing escapes into TensorRT (the C++ callbacks are noexcept): a Ctrl-C that
    Python delivers inside it (a callback on the main thread runs pending signal handlers) becomes a cancel;
    any other error costs only the bar. -> the body's result, or None."""
    try:
        return call(*args)
    except KeyboardInterrupt:
        bars.cancelled = True
    except Exception:  # a display problem must not break a build that takes minutes
        pass
    return None


def make_monitor(trt, bars):
    """An instance of a trt.IProgressMonitor subclass that reports to `bars` (keep it alive during the build)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)  # pybind11 trampolines need the base initialised

        def phase_start(self, phase_name, parent_phase, num_steps):
            _guarded(bars, bars.start, phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            go_on = _guarded(bars, bars.step, phase_name, step)
            return bool(go_on) if go_on is not None else not bars.cancelled

        def phase_finish(self, phase_name):
            _guarded(bars, bars.finish, phase_name)

    return Monitor()


class CtrlC(object):
    """While a build runs inside TensorRT: has Ctrl-C (or SIGTERM) been pressed? `requested()` answers from any
    thread, so step_complete can stop the build at once instead of Python noticing the signal only when
    build_serialized_network returns (minutes later on a Jetson).

    Python runs signal handlers only on the main thread between bytecodes, which a main thread waiting in
    TensorRT never reaches unless TensorRT calls back on it; the interpreter's C-level handler however writes
    each signal's number to the wakeup socket at once, and `requested()` reads that socket. SIGINT's handler is
    ours while the build runs (it records the request; Cancelled is raised after the build); SIGTERM keeps its
    handler (fileio's, which raises Terminated) and is only read from the socket."""

    _SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self):
        self._event = threading.Event()
        self._sockets = None
        self._installed = False
        self._previous_handler = None
        self._previous_fd = None

    def _handler(self, signum, frame):
        self._event.set()

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signals cannot be handled here; KeyboardInterrupt in a callback still cancels
        try:
            self._previous_handler = signal.signal(signal.SIGINT, self._handler)
        except (ValueError, OSError):
            return self
        self._installed = True
        try:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._previous_fd = signal.set_wakeup_fd(writer.fileno())
            self._sockets = (reader, writer)
        except (ValueError, OSError):  # no wakeup fd here: the handler alone (a main-thread callback) remains
            self._sockets = None
        return self

    def requested(self):
        if not self._event.is_set() and self._sockets is not None:
            try:
                data = self._sockets[0].recv(512)
            except OSError:  # nothing arrived (BlockingIOError) or the socket is gone
                data = b""
            if any(sig in bytearray(data) for sig in self._SIGNALS):
                self._event.set()
        return self._event.is_set()

    def __exit__(self, *exc):
        if self._sockets is not None:
            signal.set_wakeup_fd(self._previous_fd)
            for s in self._sockets:
                s.close()
            self._sockets = None
        if self._installed:  # the previous handler may be None (set outside Python): SIG_DFL then
            signal.signal(signal.SIGINT, self._previous_handler if self._previous_handler is not None else
                          signal.SIG_DFL)
            self._installed = False
        return False


class Watch(object):
    """`with Watch(trt) as watch: config.progress_monitor = watch.monitor; build...` then `watch.check()` raises
    Cancelled when the build was stopped by the user. For TensorRT releases with IProgressMonitor only."""

    def __init__(self, trt):
        self.ctrl_c = CtrlC()
        self.bars = PhaseBars(self.ctrl_c.requested)
        self.monitor = make_monitor(trt, self.bars)

    def check(self):
        """Raise Cancelled when Ctrl-C stopped the build, or arrived while it ran (also after its last step)."""
        if self.bars.cancelled or self.ctrl_c.requested():
            raise Cancelled("engine build cancelled (Ctrl-C / SIGTERM): TensorRT stopped at its next step")

    def __enter__(self):
        self.ctrl_c.__enter__()
        return self

    def __exit__(self, *exc):
        self.bars.close()
        self.ctrl_c.__exit__(*exc)
        return False
