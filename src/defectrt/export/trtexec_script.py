"""build_engine.sh / build_engine.bat: the bundle's engine built with trtexec, for devices without our Python.

JetPack 4.6 (TensorRT 8.0 / 8.2) ships Python 3.6, which defectrt does not run on; every device with TensorRT
has trtexec (JetPack: /usr/src/tensorrt/bin/trtexec). So every bundle carries a script with the exact trtexec
command for its precision on each TensorRT release family (defectrt.trt_compat.TRTEXEC_FAMILIES):
- 8.0-8.3: --fp16 (FP16) or --int8 --fp16 (INT8: the graph's explicit Q/DQ gives the scales; FP16 so the
  un-quantized layers do not run FP32), --workspace=<MiB>, --plugins=, --buildOnly;
- 8.4-9.x: the same with --memPoolSize=workspace:<MiB>;
- 10.x: --stronglyTyped (the graph carries its precision: AutoCast FP16 / Q/DQ INT8), --staticPlugins=,
  --skipInference;
- 11.x: no precision flags (always strongly typed; the flags are gone).
Always: --timingCacheFile=timing.cache in the bundle (a device-local file the manifest does not hash), the
profile shapes for a dynamic batch, --useDLACore=N --allowGPUFallback when the bundle was made for DLA.
With --target-trt the script holds that family's command only; without, one per family, chosen from the
version trtexec reports (or the first argument: `./build_engine.sh 8.2`).

The flag names follow trtexec's help of each release (8.x: '--workspace=N Set workspace size in MiB',
'--memPoolSize=poolspec ... in MiB' from 8.4; 10.x: '--plugins flag has been deprecated, use --staticPlugins').
The scripts are UNVERIFIED ON HARDWARE: their text is tested here, they have not been run on a device.
"""
from __future__ import annotations

import os

from defectrt import trt_compat

SCRIPT_SH = "build_engine.sh"
SCRIPT_BAT = "build_engine.bat"
TIMING_CACHE = "timing.cache"
ENGINE = "model.engine"
GRID_SAMPLE_PLUGIN = {"sh": "libdefectrt_plugins.so", "bat": "defectrt_plugins.dll"}


def _workspace_mib(manifest):
    from defectrt.export.engine import resolve_workspace

    return max(1, resolve_workspace(manifest.build.workspace if manifest.build else None) >> 20)


def _plugins(manifest, kind):
    names = list((manifest.build.plugins if manifest.build else None) or [])
    if manifest.grid_sample == "plugin" and not any("defectrt_plugins" in n for n in names):
        names.append(GRID_SAMPLE_PLUGIN[kind])
    return names


def trtexec_args(manifest, version, kind="sh"):
    """The trtexec arguments (after the executable) for the bundle of Manifest `manifest` on TensorRT `version`."""
    plugin_dir = "$PLUGIN_DIR" if kind == "sh" else "%PLUGIN_DIR%"
    args = ["--onnx=" + manifest.model, "--saveEngine=" + ENGINE]
    args += trt_compat.trtexec_precision_flags(version, manifest.precision or "fp32")
    args.append(trt_compat.trtexec_workspace_flag(version, _workspace_mib(manifest)))
    args.append("--timingCacheFile=" + TIMING_CACHE)
    batch = manifest.batch
    if batch is not None and batch.dynamic:
        h, w = manifest.imgsz
        opt = max(1, int(batch.max) // 2)
        for flag, n in (("--minShapes", 1), ("--optShapes", opt), ("--maxShapes", int(batch.max))):
            args.append("{}=images:{}x3x{}x{}".format(flag, n, h, w))
    dla = manifest.build.dla_core if manifest.build else None
    if dla is not None:
        args += ["--useDLACore={}".format(int(dla)), "--allowGPUFallback"]
    sep = "/" if kind == "sh" else "\\"
    for name in _plugins(manifest, kind):
        args.append(trt_compat.trtexec_plugin_flag(version, plugin_dir + sep + os.path.basename(name)))
    args.append(trt_compat.trtexec_build_only_flag(version))
    return args


def _families(manifest):
    target = manifest.target_trt
    if target:
        return [trt_compat.trtexec_family(target)]
    return list(trt_compat.TRTEXEC_FAMILIES)


def _label(lo, hi):
    first = "{}.{}".format(*lo)
    return first + ("+" if hi is None else " up to {}.{} (exclusive)".format(*hi))


def _num(v):
    return v[0] * 100 + v[1]


def _written_by(manifest):
    target = manifest.target_trt
    return "Written by defectrt {}; precision {}{}.".format(
        (manifest.versions or {}).get("defectrt", "?"), manifest.precision,
        ", target TensorRT " + target if target else "")


def render_sh(manifest):
    target = manifest.target_trt or ""
    lines = [
        "#!/bin/sh",
        "# Builds model.engine from this bundle with trtexec (for devices without defectrt's Python, e.g.",
        "# JetPack 4.6). " + _written_by(manifest) + " UNVERIFIED ON HARDWARE.",
        "# Usage: ./build_engine.sh [TENSORRT_VERSION]   (env: TRTEXEC, DEFECTRT_PLUGIN_DIR)",
        "set -e",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
        'cd "$HERE"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'PLUGIN_DIR="${DEFECTRT_PLUGIN_DIR:-$HERE}"',
        'TRT_VERSION="${{1:-{}}}"'.format(target),
        'if [ -z "$TRT_VERSION" ]; then',
        "  # trtexec's banner says [TensorRT v8201] (8.x: 8.2.1) or [TensorRT v100300] (10.x+: 10.3.0)",
        '  V=$("$TRTEXEC" --help 2>&1 | sed -n "s/.*TensorRT v\\([0-9]*\\).*/\\1/p" | head -n 1)',
        '  case "${#V}" in',
        '    4) TRT_VERSION="$(echo "$V" | cut -c1).$(echo "$V" | cut -c2)" ;;',
        '    6) TRT_VERSION="$(echo "$V" | cut -c1-2).$(expr "$(echo "$V" | cut -c3-4)" + 0)" ;;',
        '    *) echo "cannot tell the TensorRT version from $TRTEXEC; pass it: ./build_engine.sh 8.2" >&2; exit 2 ;;',
        "  esac",
        "fi",
        'MAJ=$(echo "$TRT_VERSION" | cut -d. -f1)',
        'MIN=$(echo "$TRT_VERSION" | cut -d. -f2)',
        'N=$((MAJ * 100 + MIN))',
        'echo "building model.engine for TensorRT $TRT_VERSION with $TRTEXEC (minutes on a Jetson)"',
    ]
    first = True
    for lo, hi in _families(manifest):
        cond = '[ "$N" -ge {} ]'.format(_num(lo)) + ('' if hi is None else ' && [ "$N" -lt {} ]'.format(_num(hi)))
        lines.append("{} {}; then  # TensorRT {}".format("if" if first else "elif", cond, _label(lo, hi)))
        args = trtexec_args(manifest, "{}.{}".format(*lo), "sh")
        lines.append('  "$TRTEXEC" ' + " \\\n    ".join('"{}"'.format(a) for a in args))
        first = False
    lines += ["else",
              '  echo "this bundle has no trtexec command for TensorRT $TRT_VERSION{}" >&2'.format(
                  "; it was made for " + target + " (rebuild it with defectrt export build --target-trt $TRT_VERSION)"
                  if target else ""),
              "  exit 2",
              "fi",
              'echo "done: $HERE/model.engine (engines run only on this TensorRT version and GPU)"', ""]
    return "\n".join(lines)


def render_bat(manifest):
    target = manifest.target_trt or ""
    lines = [
        "@echo off",
        "rem Builds model.engine from this bundle with trtexec. " + _written_by(manifest),
        "rem Usage: build_engine.bat [TENSORRT_VERSION]   (env: TRTEXEC, DEFECTRT_PLUGIN_DIR). UNVERIFIED ON HARDWARE.",
        "setlocal",
        'cd /d "%~dp0"',
        'if "%TRTEXEC%"=="" set "TRTEXEC=trtexec.exe"',
        'set "PLUGIN_DIR=%DEFECTRT_PLUGIN_DIR%"',
        'if "%PLUGIN_DIR%"=="" set "PLUGIN_DIR=%~dp0."',
        'set "TRT_VERSION=%~1"',
        'if "%TRT_VERSION%"=="" set "TRT_VERSION={}"'.format(target),
        'if "%TRT_VERSION%"=="" (',
        "  echo pass the TensorRT version, e.g. build_engine.bat 10.3 1>&2",
        "  exit /b 2",
        ")",
        'for /f "tokens=1,2 delims=." %%a in ("%TRT_VERSION%") do (',
        '  set "MAJ=%%a"',
        '  set "MIN=%%b"',
        ")",
        'if "%MIN%"=="" set "MIN=0"',
        "set /a N=MAJ*100+MIN",
        "echo building model.engine for TensorRT %TRT_VERSION% with %TRTEXEC%",
    ]
    for i, (lo, hi) in enumerate(_families(manifest)):
        cond = "if %N% GEQ {} ".format(_num(lo)) + ("" if hi is None else "if %N% LSS {} ".format(_num(hi)))
        lines.append(cond + "goto family{}".format(i))
    lines += ["echo this bundle has no trtexec command for TensorRT %TRT_VERSION% 1>&2", "exit /b 2"]
    for i, (lo, hi) in enumerate(_families(manifest)):
        args = trtexec_args(manifest, "{}.{}".format(*lo), "bat")
        lines += [":family{}".format(i), "rem TensorRT " + _label(lo, hi),
                  '"%TRTEXEC%" ' + " ^\n  ".join('"{}"'.format(a) for a in args),
                  "if errorlevel 1 exit /b 1", "goto done"]
    lines += [":done", "echo done: %~dp0model.engine (engines run only on this TensorRT version and GPU)", ""]
    return "\r\n".join(lines)


def write_build_scripts(folder, manifest):
    """Write build_engine.sh (executable) and build_engine.bat into the bundle folder; -> their names."""
    sh = os.path.join(folder, SCRIPT_SH)
    with open(sh, "w", newline="\n") as f:
        f.write(render_sh(manifest))
    os.chmod(sh, 0o755)
    with open(os.path.join(folder, SCRIPT_BAT), "w", newline="") as f:
        f.write(render_bat(manifest))
    return {"sh": SCRIPT_SH, "bat": SCRIPT_BAT, "timing_cache": TIMING_CACHE}
