"""issue 19: engine-build progress from TensorRT's IProgressMonitor (10.0+): nested bars per builder phase, steps as
they complete, nothing at -q, Ctrl-C as a cancel (step_complete -> False); 8.x keeps its phase lines.

A fake `tensorrt` (tests/test_trt_fixes.fake_trt) and fake Polygraphy loaders drive the callbacks the way
NvInfer.h (10.3, IProgressMonitor) describes them. UNVERIFIED ON HARDWARE: no TensorRT here."""
import io
import json
import os
import signal
import threading

import pytest

from defectrt import progress, trt_compat
from defectrt.export import build_progress, engine
from test_trt_fixes import FakePolygraphy, fake_trt

SHARED_API = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared",
                          "notes", "trt-python-api")


class Tty(io.StringIO):
    """stderr as a terminal, so that tqdm draws."""

    def isatty(self):
        return True


@pytest.fixture
def tty(monkeypatch):
    """-> install(): stderr becomes a Tty (called in the test body: pytest's capture resets sys.stderr after the
    fixtures ran)."""
    monkeypatch.delenv("DEFECTRT_VERBOSITY", raising=False)

    def install():
        out = Tty()
        monkeypatch.setattr("sys.stderr", out)
        return out
    return install


# What a 10.x build might report (phase names are TensorRT's business; these only need to nest).
SCRIPT = [
    ("start", "Building engine", None, 2),
    ("start", "Tactic selection", "Building engine", 3),
    ("step", "Tactic selection", 0),
    ("step", "Tactic selection", 1),
    ("step", "Tactic selection", 2),
    ("finish", "Tactic selection"),
    ("step", "Building engine", 0),
    ("start", "Serialization", "Building engine", 1),
    ("step", "Serialization", 0),
    ("finish", "Serialization"),
    ("step", "Building engine", 1),
    ("finish", "Building engine"),
]


def drive(monitor, script, log):
    """Play `script` on a monitor as TensorRT would; a ("signal",) entry is a Ctrl-C. Stops
    where step_complete says stop (TensorRT then finishes the open phases). -> False when stopped."""
    for event in script:
        if event[0] == "start":
            monitor.phase_start(event[1], event[2], event[3])
        elif event[0] == "step":
            go_on = monitor.step_complete(event[1], event[2])
            log.append((event[1], event[2], go_on))
            if not go_on:
                for name in ("Tactic selection", "Building engine"):
                    monitor.phase_finish(name)
                return False
        elif event[0] == "finish":
            monitor.phase_finish(event[1])
        elif event[0] == "signal":  # Ctrl-C, landing on this thread (delivered before pthread_kill returns)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    return True


class BuildingPolygraphy(FakePolygraphy):
    """FakePolygraphy whose build drives the monitor found on the config (as TensorRT's builder would), on this
    thread or on a builder thread, and raises like Polygraphy when TensorRT returns no engine."""

    def __init__(self, trt, script, on_thread=False):
        FakePolygraphy.__init__(self, trt)
        from polygraphy.exception import PolygraphyException

        outer = self
        self.log = []

        def EngineBytesFromNetwork(network, config=None, save_timing_cache=None):
            def run():
                builder, net, _ = network()
                outer.config = config(builder, net)
                monitor = getattr(outer.config, "progress_monitor", None)
                if monitor is None:
                    return b"engine-bytes"
                result = []
                if on_thread:  # the builder's own thread: Python's signal handlers never run there
                    t = threading.Thread(target=lambda: result.append(drive(monitor, script, outer.log)))
                    t.start()
                    t.join()
                else:
                    result.append(drive(monitor, script, outer.log))
                if not result[0]:
                    raise PolygraphyException("Invalid Engine. Please ensure the engine was built correctly")
                return b"engine-bytes"
            return run

        self.loaders["EngineBytesFromNetwork"] = EngineBytesFromNetwork


@pytest.fixture
def build(monkeypatch, tmp_path):
    import polygraphy.backend.trt as pbt

    monkeypatch.setattr(engine, "gpu_identity", lambda: {"gpu_name": "fake", "compute_capability": "8.7"})

    def run(version, script=SCRIPT, on_thread=False, progress_lines=None):
        trt = fake_trt(version)
        fake = BuildingPolygraphy(trt, script, on_thread=on_thread)
        for name, value in fake.loaders.items():
            monkeypatch.setattr(pbt, name, value)
        say = engine.Progress(out=progress_lines) if progress_lines is not None else engine.Progress(enabled=False)
        run.last, fake.result_file = fake, tmp_path / "m.engine"  # for a test whose build raises
        fake.record = engine.build_engine(__file__, str(fake.result_file), precision="fp16", imgsz=(64, 64), trt=trt,
                                          progress=say)
        return fake
    return run


def _drawn(text):
    """The bar lines tqdm drew (each refresh starts with a carriage return)."""
    return [part for chunk in text.split("\n") for part in chunk.split("\r") if part.strip()]


def test_nested_phases_and_steps_are_drawn(build, tty):
    tty = tty()
    fake = build("10.3.0")
    assert fake.record["tensorrt_version"] == "10.3.0" and fake.result_file.read_bytes() == b"engine-bytes"
    assert all(go_on for _, _, go_on in fake.log) and len(fake.log) == 6
    lines = _drawn(tty.getvalue())
    # each phase has its own bar; a child is indented under its parent; steps counted to the end
    assert any(line.startswith("Building engine") and "2/2" in line for line in lines), lines
    assert any(line.startswith("  Tactic selection") and "3/3" in line for line in lines), lines
    assert any(line.startswith("  Serialization") and "1/1" in line for line in lines), lines
    # the SIGINT handler is back to Python's own after the build
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_phase_bars_nesting_and_bookkeeping(tty):
    tty = tty()
    bars = build_progress.PhaseBars()
    bars.start("A", None, 2)
    bars.start("B", "A", 4)
    bars.start("C", "B", 1)
    assert bars.step("C", 0) is True
    bars.finish("C")
    bars.step("B", 3)  # steps may be skipped; the bar never goes back
    bars.step("B", 1)
    assert bars._bars["B"].n == 4
    bars.finish("B")
    bars.start("B", "A", 2)  # a name is reused after its phase finished
    bars.start("D", "unknown parent", 1)  # a parent we never saw: shown at the top level
    assert bars.phases == [(0, "A", 2), (1, "B", 4), (2, "C", 1), (1, "B", 2), (0, "D", 1)]
    bars.close()  # a failed build: the open bars are closed
    assert bars._bars == {}
    assert any(line.startswith("    C") for line in _drawn(tty.getvalue()))


def test_quiet_draws_nothing(build, tty, monkeypatch):
    tty = tty()
    monkeypatch.setenv("DEFECTRT_VERBOSITY", str(progress.QUIET))  # what -q sets
    lines = io.StringIO()
    fake = build("11.1.0", progress_lines=lines)
    assert fake.record and len(fake.log) == 6
    assert tty.getvalue() == "" and lines.getvalue() == ""  # -q: no bars and no phase lines


def test_releases_without_the_interface_keep_the_phase_lines(build, tty):
    tty = tty()
    lines = io.StringIO()
    fake = build("8.6.1", progress_lines=lines)
    assert not hasattr(fake.config, "progress_monitor") and fake.log == []
    text = lines.getvalue()
    assert "[engine 4/5" in text and "build (minutes on a Jetson" in text and "[engine 5/5" in text
    assert "Tactic selection" not in tty.getvalue()


@pytest.mark.parametrize("on_thread", [False, True], ids=["main-thread", "builder-thread"])
def test_ctrl_c_stops_the_build_at_the_next_step(build, tty, on_thread):
    """Ctrl-C while TensorRT builds (callbacks on the main thread, or on a builder thread where Python's signal
    handlers never run): the next step_complete returns False, the build ends without an engine, and the
    command is interrupted (Cancelled is a KeyboardInterrupt: the CLI says "interrupted", exit 130)."""
    tty()  # bars on a terminal, as a user sees them
    script = SCRIPT[:3] + [("signal",)] + SCRIPT[3:]
    with pytest.raises(build_progress.Cancelled, match="cancelled"):
        build("10.16.0", script=script, on_thread=on_thread)
    assert build.last.log == [("Tactic selection", 0, True), ("Tactic selection", 1, False)]
    assert not build.last.result_file.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handler is gone again
    assert issubclass(build_progress.Cancelled, KeyboardInterrupt)


def test_step_complete_returns_false_after_ctrl_c_and_keyboard_interrupt_inside_a_callback():
    trt = fake_trt("10.3.0")
    pressed = []
    bars = build_progress.PhaseBars(lambda: bool(pressed))
    monitor = build_progress.make_monitor(trt, bars)
    monitor.phase_start("Building engine", None, 3)
    assert monitor.step_complete("Building engine", 0) is True
    pressed.append(1)
    assert monitor.step_complete("Building engine", 1) is False
    assert monitor.step_complete("Building engine", 2) is False  # stays stopped
    monitor.phase_finish("Building engine")

    def interrupted(*a):
        raise KeyboardInterrupt

    bars = build_progress.PhaseBars(interrupted)  # Python raised KeyboardInterrupt inside the callback
    monitor = build_progress.make_monitor(trt, bars)
    monitor.phase_start("Building engine", None, 3)
    assert monitor.step_complete("Building engine", 0) is False and bars.cancelled

    def broken(*a):
        raise RuntimeError("a display problem")

    bars = build_progress.PhaseBars()
    bars.start = broken  # an error in the bars never reaches TensorRT, and never stops the build
    monitor = build_progress.make_monitor(trt, bars)
    monitor.phase_start("Building engine", None, 3)
    assert monitor.step_complete("Building engine", 0) is True


def test_ctrl_c_is_seen_through_the_wakeup_socket_from_any_thread():
    """The interpreter's C-level handler writes the signal number to the wakeup socket on whatever thread the
    signal lands; requested() reads it even when no Python handler has run yet (the main thread waiting in
    TensorRT)."""
    with build_progress.CtrlC() as ctrl:
        assert ctrl.requested() is False
        assert signal.getsignal(signal.SIGINT) == ctrl._handler
        ctrl._sockets[1].send(bytes([signal.SIGINT]))  # what the C handler writes
        seen = []
        t = threading.Thread(target=lambda: seen.append(ctrl.requested()))
        t.start()
        t.join()
        assert seen == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd was restored (none before)


def _api(version):
    with open(os.path.join(SHARED_API, version + ".json")) as f:
        return json.load(f)["api"]


@pytest.mark.skipif(not os.path.isdir(SHARED_API), reason="../shared/notes/trt-python-api is absent (a clone without "
                    "the shared TensorRT notes): the API name check cannot run")
def test_every_tensorrt_name_of_the_monitor_exists_where_it_is_used():
    """IProgressMonitor, the callbacks our monitor overrides (pybind11 calls them by these names) and
    IBuilderConfig.progress_monitor exist in exactly the releases the `progress_monitor` capability claims."""
    trt = fake_trt("10.3.0")
    monitor = build_progress.make_monitor(trt, build_progress.PhaseBars())
    overridden = {n for n, v in vars(type(monitor)).items() if callable(v) and not n.startswith("__")}
    assert overridden == {"phase_start", "step_complete", "phase_finish"}
    for version in trt_compat.CLAIMED_VERSIONS:
        api = _api(version)
        has = "IProgressMonitor" in api and "progress_monitor" in api.get("IBuilderConfig", [])
        assert trt_compat.flavour(version).progress_monitor == has, version
        if has:
            missing = overridden - set(api["IProgressMonitor"])
            assert not missing, "TensorRT {} has no IProgressMonitor.{}".format(version, missing)
            # the monitor is only set on the Polygraphy path (the raw 8.0-8.4 path never sees 10.x)
            assert trt_compat.flavour(version).polygraphy_build
