import json
import os
import socket

import pytest

from defectrt.bench import environment as env


def _write(root, path, text):
    full = os.path.join(str(root), path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


def no_commands(name):
    return None


def test_real_machine_record_is_complete_and_private():
    rec = env.collect()
    assert set(rec) == set(env.KEYS)
    text = json.dumps(rec)  # JSON-serialisable
    host = socket.gethostname()
    if len(host) > 3:
        assert host not in text  # the host name is never stored, only its hash
    assert len(rec["host_id"]) == 12
    assert rec["software"]["numpy"] not in ("absent", "unknown")
    assert rec["software"]["tensorrt"] in ("absent", "unknown") or rec["software"]["tensorrt"][0].isdigit()
    assert rec["python"]["version"].count(".") == 2


def test_missing_files_and_commands_give_unknown_not_errors(tmp_path):
    rec = env.collect(root=str(tmp_path), which=no_commands)
    assert set(rec) == set(env.KEYS)
    assert rec["cpu"]["model"] == "unknown" or isinstance(rec["cpu"]["model"], str)
    assert rec["cpu"]["physical_cores"] == "unknown"
    assert rec["cpu"]["cpu0_freq"]["governor"] == "unknown"
    assert rec["memory"]["total_bytes"] == "unknown"
    assert rec["os"]["distribution"] == "unknown"
    assert rec["gpu"] == "unknown"
    assert rec["jetson"] == {"is_jetson": False}
    assert rec["software"]["cuda"]["version"] in ("absent", "unknown") or rec["software"]["cuda"]["source"] == "cuda-python"
    json.dumps(rec)


def test_a_failing_part_does_not_break_the_record(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("unreadable")

    monkeypatch.setattr(env, "cpu_info", boom)
    monkeypatch.setattr(env, "gpu_info", boom)
    monkeypatch.setattr(env, "jetson_info", boom)
    rec = env.collect(which=no_commands)
    assert rec["cpu"] == "unknown" and rec["gpu"] == "unknown" and rec["jetson"] == "unknown"
    assert isinstance(rec["memory"], dict)
    assert isinstance(env.short_label(rec), str)


def test_commands_that_fail_or_print_garbage(tmp_path):
    def which(name):
        return "/usr/bin/" + name

    rec = env.collect(root=str(tmp_path), which=which, run=lambda argv: None)
    assert rec["gpu"] == "unknown"
    rec = env.collect(root=str(tmp_path), which=which, run=lambda argv: "garbage, output\n")
    assert rec["gpu"] == "unknown"


def test_cpu_and_memory_parsing(tmp_path):
    cpuinfo = ""
    for cpu in range(4):
        cpuinfo += "processor\t: {}\nmodel name\t: Fake CPU 9000\nphysical id\t: 0\ncore id\t\t: {}\nflags\t\t: fpu avx avx2 fma\n\n".format(cpu, cpu // 2)
    _write(tmp_path, "/proc/cpuinfo", cpuinfo)
    _write(tmp_path, "/proc/meminfo", "MemTotal:       16314880 kB\nMemFree: 1 kB\n")
    _write(tmp_path, "/etc/os-release", 'NAME="X"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    _write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "performance\n")
    _write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "3000000\n")
    rec = env.collect(root=str(tmp_path), which=no_commands)
    assert rec["cpu"]["model"] == "Fake CPU 9000"
    assert rec["cpu"]["physical_cores"] == 2
    assert rec["cpu"]["simd"] == ["avx", "avx2", "fma"]
    assert rec["cpu"]["cpu0_freq"]["governor"] == "performance"
    assert rec["cpu"]["cpu0_freq"]["max_freq"] == 3000000000  # kHz -> Hz
    assert rec["memory"]["total_bytes"] == 16314880 * 1024
    assert rec["os"]["distribution"] == "Ubuntu 22.04.4 LTS"


def test_nvidia_smi_parsing():
    line = "NVIDIA RTX A2000, 535.104.05, 6138, 210, 405, 2100, 6001, [N/A], 70.00, Enabled, P8\n"

    def run(argv):
        assert argv[0] == "/bin/nvidia-smi" and argv[1].startswith("--query-gpu=")
        return line

    gpus = env.gpu_info(run=run, which=lambda name: "/bin/" + name)
    assert gpus[0]["name"] == "NVIDIA RTX A2000"
    assert gpus[0]["clocks_max_sm_mhz"] == "2100"
    assert gpus[0]["clocks_applications_graphics_mhz"] == "unknown"
    assert gpus[0]["memory_total_mib"] == "6138"


def _jetson_tree(root, gpu_min="306000000", gpu_max="306000000", cpu_min="1510400", cpu_max="1510400"):
    _write(root, "/etc/nv_tegra_release", "# R35 (release), REVISION: 4.1, GCID: 33958178\n")
    _write(root, "/proc/device-tree/model", "NVIDIA Jetson Orin Nano Developer Kit\x00")
    _write(root, "/etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=15W >\n< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >\n")
    _write(root, "/var/lib/nvpmodel/status", "pmode:0001 fmode:quiet\n")
    _write(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq", cpu_min)
    _write(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq", cpu_max)
    _write(root, "/sys/class/devfreq/17000000.ga10b/min_freq", gpu_min)
    _write(root, "/sys/class/devfreq/17000000.ga10b/max_freq", gpu_max)


def test_jetson_from_files_locked(tmp_path):
    _jetson_tree(tmp_path)
    j = env.collect(root=str(tmp_path), which=no_commands)["jetson"]
    assert j["is_jetson"] is True
    assert j["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    assert j["l4t_release"].startswith("# R35")
    assert j["power_mode"] == {"name": "7W", "id": 1, "source": "/var/lib/nvpmodel/status"}
    assert j["clocks_locked"] is True
    assert j["gpu_devfreq"]["device"] == "17000000.ga10b"


def test_jetson_from_files_not_locked(tmp_path):
    _jetson_tree(tmp_path, gpu_min="306000000", gpu_max="624750000")
    j = env.jetson_info(root=str(tmp_path), which=no_commands)
    assert j["clocks_locked"] is False and "min < max" in j["clocks_evidence"]


def test_jetson_default_mode_when_status_unreadable(tmp_path):
    _jetson_tree(tmp_path)
    os.remove(os.path.join(str(tmp_path), "var/lib/nvpmodel/status"))
    os.remove(os.path.join(str(tmp_path), "sys/class/devfreq/17000000.ga10b/max_freq"))
    j = env.jetson_info(root=str(tmp_path), which=no_commands)
    assert j["power_mode"]["name"] == "15W" and "default" in j["power_mode"]["source"]
    assert j["clocks_locked"] == "unknown"  # CPU locked, GPU unreadable: cannot say


def test_jetson_from_commands(tmp_path):
    _write(tmp_path, "/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0\n")
    outputs = {
        "nvpmodel": "NV Power Mode: MAXN\n0\n",
        "jetson_clocks": "SOC family:tegra234  Machine:Jetson AGX Orin\n"
                         "cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600\n"
                         "GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000\n",
    }

    def run(argv):
        return outputs[os.path.basename(argv[0])]

    j = env.jetson_info(root=str(tmp_path), run=run, which=lambda name: "/usr/bin/" + name)
    assert j["power_mode"]["name"] == "MAXN" and j["power_mode"]["id"] == 0
    assert j["clocks_locked"] is True and "jetson_clocks" in j["clocks_evidence"]
    outputs["jetson_clocks"] = outputs["jetson_clocks"].replace("MinFreq=2201600", "MinFreq=729600")
    assert env.jetson_info(root=str(tmp_path), run=run, which=lambda name: "/usr/bin/" + name)["clocks_locked"] is False


def test_not_jetson_on_other_arm_boards(tmp_path):
    _write(tmp_path, "/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.4\x00")
    assert env.is_jetson(str(tmp_path)) is False


def test_absent_package():
    assert env.module_version("defectrt_no_such_module_xyz") == "absent"


@pytest.mark.parametrize("gpu", ["unknown", [{"name": "NVIDIA GeForce RTX 4090"}]])
def test_short_label(gpu):
    rec = {"host_id": "abcdef123456", "cpu": {"model": "Intel(R) Core(TM) i7-12700 CPU"}, "gpu": gpu, "jetson": {"is_jetson": False}}
    label = env.short_label(rec)
    assert label.endswith("[abcdef]")
    assert ("RTX 4090" in label) == (gpu != "unknown")
