"""The Python error kinds map one to one onto the native status codes (read from the headers themselves)."""
import os
import re

import pytest

from defectrt import errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _enum(path, pattern):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return {name: int(value) for name, value in re.findall(pattern, text, re.M)}


def internal_status():
    return _enum("native/src/status.h", r"^\s*(\w+)\s*=\s*(\d+),?\s*$")


def c_status():
    return _enum("native/include/defectrt.h", r"^\s*(DRT_(?:OK|E_\w+))\s*=\s*(\d+)")


def capi_mapping():
    with open(os.path.join(ROOT, "native/src/capi.cpp")) as f:
        return dict(re.findall(r"case drt::Status::(\w+): return (DRT_\w+);", f.read()))


def test_every_native_status_has_exactly_one_python_kind():
    names = set(internal_status()) - {"Ok"}
    assert names, "no enum values parsed from native/src/status.h"
    assert set(errors.BY_STATUS) == names
    classes = list(errors.BY_STATUS.values())
    assert len(set(classes)) == len(classes)  # one to one
    for name, cls in errors.BY_STATUS.items():
        assert cls.status == name


def test_python_kinds_agree_with_the_c_header_through_capi():
    c_values = c_status()
    mapping = capi_mapping()
    assert mapping, "no drt::Status -> drt_status cases parsed from native/src/capi.cpp"
    for name, cls in errors.BY_STATUS.items():
        assert mapping[name] == cls.c_status, name
        assert cls.c_status in c_values, cls.c_status
    # the values the C caller sees are distinct per kind
    values = [c_values[cls.c_status] for cls in errors.BY_STATUS.values()]
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("cls", [errors.InvalidArgument, errors.NotFound, errors.UnsupportedFormat])
def test_user_input_kinds_are_still_user_input_errors(cls):
    with pytest.raises(errors.UserInputError):
        raise cls("x")
    assert issubclass(cls, ValueError)


def test_status_of():
    assert errors.status_of(errors.NotFound("m.onnx")) == "NotFound"
    assert errors.status_of(errors.OutOfMemory("gpu")) == "OutOfMemory"
    assert errors.status_of(errors.UserInputError("x")) == "InvalidArgument"
    assert errors.status_of(KeyError("x")) == "Internal"
    assert isinstance(errors.NotFound("x"), FileNotFoundError)
