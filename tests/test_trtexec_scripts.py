"""build_engine.sh / .bat: the trtexec command per TensorRT family and precision, run against a fake trtexec.
(Never run against a real trtexec here: unverified on hardware.)"""
import os
import shutil
import subprocess

import pytest

from defectrt import trt_compat
from defectrt.export import trtexec_script as ts


def _manifest(precision="fp16", target=None, dynamic=False, dla=None, plugins=(), grid="lowered", workspace="auto"):
    from defectrt.runtime.bundle import Manifest

    return Manifest.from_json({"model": "model.onnx", "precision": precision, "target_trt": target, "imgsz": [160, 160],
            "grid_sample": grid, "batch": {"dynamic": dynamic, "size": 1, "max": 8 if dynamic else 1},
            "build": {"workspace": workspace, "dla_core": dla, "plugins": list(plugins)},
            "versions": {"defectrt": "0.1.0"}})


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_claimed_release_gets_its_own_familys_flags(precision):
    m = _manifest(precision, plugins=["libx.so"], dla=0, dynamic=True)
    for v in trt_compat.CLAIMED_VERSIONS + ("8.3", "9.2", "10.12"):
        lo, _ = trt_compat.trtexec_family(v)
        assert ts.trtexec_args(m, v) == ts.trtexec_args(m, "{}.{}".format(*lo)), v


def test_flags_per_version_and_precision():
    def args(v, p, **kw):
        return ts.trtexec_args(_manifest(p, **kw), v)
    a = args("8.2", "fp16", plugins=["libx.so"])
    assert "--fp16" in a and "--workspace=1024" in a and "--plugins=$PLUGIN_DIR/libx.so" in a and a[-1] == "--buildOnly"
    assert "--stronglyTyped" not in a and not any(x.startswith("--memPoolSize") for x in a)
    assert args("8.0", "int8")[2:4] == ["--int8", "--fp16"]  # explicit Q/DQ; FP16 for the rest
    assert "--memPoolSize=workspace:1024" in args("8.4", "fp16") and "--memPoolSize=workspace:512" in args(
        "8.6", "fp16", workspace="512M")
    t10 = args("10.3", "int8", plugins=["libx.so"])
    assert "--stronglyTyped" in t10 and "--int8" not in t10 and "--fp16" not in t10
    assert "--staticPlugins=$PLUGIN_DIR/libx.so" in t10 and t10[-1] == "--skipInference"
    t11 = args("11.1", "fp16")
    assert not {"--fp16", "--int8", "--stronglyTyped"} & set(t11)
    for v in ("8.2", "10.3", "11.0"):
        assert not {"--fp16", "--int8", "--stronglyTyped"} & set(args(v, "fp32"))
        assert "--timingCacheFile=timing.cache" in args(v, "fp32")
    d = args("8.2", "int8", dla=1, dynamic=True)
    assert "--useDLACore=1" in d and "--allowGPUFallback" in d
    assert "--minShapes=images:1x3x160x160" in d and "--optShapes=images:4x3x160x160" in d \
        and "--maxShapes=images:8x3x160x160" in d
    assert "--staticPlugins=%PLUGIN_DIR%\\defectrt_plugins.dll" in ts.trtexec_args(_manifest("fp16", grid="plugin"),
                                                                                     "10.3", "bat")


def _fake_trtexec(tmp_path, banner):
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\n"
                   "if [ \"$1\" = --help ]; then echo '&&&& RUNNING TensorRT.trtexec [TensorRT {}] # trtexec --help'; "
                   "exit 0; fi\n"
                   "printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args.txt\"\n".format(banner))
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh here to run build_engine.sh")
@pytest.mark.parametrize("banner,target,expect", [
    ("v8201", None, ["--int8", "--fp16", "--workspace=1024", "--buildOnly"]),   # JetPack 4.6, detected
    ("v8401", None, ["--int8", "--fp16", "--memPoolSize=workspace:1024"]),
    ("v100300", None, ["--stronglyTyped", "--skipInference"]),                  # JetPack 6.1
    ("v110100", None, ["--skipInference"]),
    ("v100300", "8.2", ["--int8", "--workspace=1024"]),                         # the bundle's target wins
])
def test_build_engine_sh_runs_the_right_command(tmp_path, banner, target, expect):
    folder = tmp_path / "bundle"
    folder.mkdir()
    ts.write_build_scripts(str(folder), _manifest("int8", target=target))
    exe = _fake_trtexec(tmp_path, banner)
    env = dict(os.environ, TRTEXEC=exe)
    r = subprocess.run(["sh", str(folder / "build_engine.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    got = (tmp_path / "args.txt").read_text().split()
    assert got[:2] == ["--onnx=model.onnx", "--saveEngine=model.engine"] and "--timingCacheFile=timing.cache" in got
    for flag in expect:
        assert flag in got, (flag, got)
    if banner == "v110100":
        assert not {"--int8", "--fp16", "--stronglyTyped"} & set(got)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh here to run build_engine.sh")
def test_build_engine_sh_refuses_another_family_than_its_target(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    ts.write_build_scripts(str(folder), _manifest("fp16", target="8.2"))
    r = subprocess.run(["sh", str(folder / "build_engine.sh"), "10.3"], env=dict(os.environ, TRTEXEC="/bin/false"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "made for 8.2" in r.stderr and "--target-trt" in r.stderr


def test_build_engine_bat_text():
    bat = ts.render_bat(_manifest("fp16"))
    assert bat.count(":family") == len(trt_compat.TRTEXEC_FAMILIES) and "\r\n" in bat
    assert "if %N% GEQ 1000 if %N% LSS 1100 goto family2" in bat and "if %N% GEQ 1100 goto family3" in bat
    one = ts.render_bat(_manifest("int8", target="10.3"))
    assert one.count(":family") == 1 and '"--stronglyTyped"' in one and 'set "TRT_VERSION=10.3"' in one


def test_bundle_carries_the_scripts_and_stays_valid_with_a_timing_cache(demo_bundle, tmp_path):
    from defectrt.runtime.bundle import read_manifest

    copy = str(tmp_path / "b")
    shutil.copytree(demo_bundle, copy)
    manifest = read_manifest(copy)
    assert manifest["device_scripts"]["sh"] == "build_engine.sh"
    assert "build_engine.sh" in manifest["files"] and "build_engine.bat" in manifest["files"]
    assert os.access(os.path.join(copy, "build_engine.sh"), os.X_OK)
    with open(os.path.join(copy, "timing.cache"), "wb") as f:  # what trtexec / the builder leave behind
        f.write(b"device-local")
    read_manifest(copy)  # still verifies: the timing cache is not part of the bundle's identity
