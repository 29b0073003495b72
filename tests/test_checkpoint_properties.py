"""Property-based tests: whatever a checkpoint's dict, yaml, names or pickle bytes hold, loading ends in a model or
in a UserInputError naming the file; never a raw TypeError / KeyError / RecursionError."""
import copy
import json
import os
import tempfile
import zipfile

import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from defectrt import models  # noqa: E402
from defectrt.errors import UserInputError  # noqa: E402
from defectrt.models.checkpoint import check_fits  # noqa: E402
from defectrt.models.torchzip import load as torchzip_load  # noqa: E402
from defectrt.models.yolo import yaml_value  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
STOCK = models.create("yolo11n", nc=3)
STOCK_YAML = STOCK.yaml
STOCK_SHAPES = {k: tuple(v.shape) for k, v in STOCK.state_dict().items()}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["None", "True", "nc", "nearest", "lp", "1e9", "-1", "[1, 2]", "Conv", "Detect", "nn.Upsample"]),
)
json_like = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                         max_leaves=20)


def _paths(obj, prefix=()):
    """Every (path, value) inside nested dicts / lists."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


STOCK_PATHS = [p for p, _ in _paths(STOCK_YAML) if p]
# A four-layer detector: each example writes and loads a whole checkpoint, so it must be cheap.
TINY = models.DetectionModel({"nc": 3, "backbone": [[-1, 1, "Conv", [8, 3, 2]]] * 3,
                              "head": [[[0, 1, 2], 1, "Detect", ["nc"]]]}).eval()


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(STOCK_PATHS), json_like), min_size=1, max_size=3))
def test_any_edit_of_the_yaml_is_built_or_refused_clearly(edits):
    cfg = copy.deepcopy(STOCK_YAML)
    for path, value in edits:
        node = cfg
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent
    try:
        check_fits(cfg, STOCK_SHAPES, "best.pt")
    except UserInputError as exc:
        assert str(exc).startswith("best.pt: ")


@SETTINGS
@given(json_like)
def test_yaml_values_never_raise(value):
    yaml_value(value, nc=3)
    if isinstance(value, str):
        yaml_value(value * 50, nc=3)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_like, st.dictionaries(st.one_of(st.integers(-2, 4), st.text(max_size=2)), st.text(max_size=4),
                                            max_size=5)))
def test_any_names_metadata_loads_or_is_refused_clearly(names):
    from ultralytics_fixture import write_ultralytics_checkpoint

    model = copy.deepcopy(TINY)
    model.names = names
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "best.pt")
        write_ultralytics_checkpoint(model, path)
        try:
            loaded = models.load(path)
        except UserInputError as exc:
            assert path in str(exc)
        else:
            assert sorted(loaded.names) == [0, 1, 2]


@SETTINGS
@given(st.dictionaries(st.sampled_from(["model", "ema", "epoch", "train_args", "x"]),
                       st.one_of(json_like, st.integers(0, 4).map(torch.zeros)), max_size=4))
def test_any_checkpoint_dict_is_refused_clearly(ckpt):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "best.pt")
        torch.save(ckpt, path)
        with pytest.raises(UserInputError, match="best.pt"):
            models.load(path)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_pickle_bytes_end_in_a_clear_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "best.pt")
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02" + data)
        try:
            torchzip_load(path)
        except UserInputError as exc:
            assert path in str(exc)


def test_safetensors_config_properties_reject_non_mappings(tmp_path):
    from safetensors.torch import save_file

    for cfg in ([], "x", 3, {"format": "defectrt-checkpoint", "arch": []}):
        p = str(tmp_path / "c.safetensors")
        save_file({"model.0.conv.weight": torch.zeros(1)}, p, metadata={"defectrt": json.dumps(cfg)})
        with pytest.raises(UserInputError, match="c.safetensors"):
            models.load(p)
