"""torch_io against files written by torch 2.13 (tests/data/torch_io/make_fixtures.py)."""
import collections
import pickle

import ml_dtypes
import numpy as np
import pytest

from fnevr_jax import torch_io

STATE_DTYPES = {
    "f32": np.float32, "f64": np.float64, "i64": np.int64, "u8": np.uint8, "bool": np.bool_,
    "bf16": ml_dtypes.bfloat16, "f16": np.float16, "nested.lst.0": np.int32,
    "nested.lst.1": np.int16, "nested.tup.0": np.int8,
}


@pytest.fixture(scope="module")
def expected(data_dir):
    with np.load(data_dir / "torch_io" / "expected.npz") as f:
        return dict(f)


def assert_arrays_equal(arrays, expected, prefix):
    want = {k[len(prefix) + 1:]: v for k, v in expected.items() if k.startswith(prefix + ".")}
    assert sorted(arrays) == sorted(want)
    for key, value in arrays.items():
        assert value.flags.c_contiguous, key
        assert value.shape == want[key].shape, key
        np.testing.assert_array_equal(value.astype(want[key].dtype), want[key], err_msg=key)


@pytest.mark.parametrize("name", ["state_legacy.pt", "state_zip.pt"])
def test_state_dict(data_dir, expected, name):
    tree = torch_io.load_torch_file(data_dir / "torch_io" / name)
    assert isinstance(tree, collections.OrderedDict)
    assert list(tree)[:3] == ["f32", "f64", "i64"]
    arrays = torch_io.flatten_arrays(tree)
    assert_arrays_equal(arrays, expected, "state")
    for key, dtype in STATE_DTYPES.items():
        assert arrays[key].dtype == dtype, key
    assert arrays["scalar"].shape == () and arrays["scalar"] == 3.25
    np.testing.assert_array_equal(arrays["transposed"], np.arange(24.0).reshape(4, 6).T)
    np.testing.assert_array_equal(arrays["strided"], np.arange(24.0).reshape(4, 6)[1:, 1:6:2])
    assert tree["nested"]["inner"]["n"] == 7 and tree["nested"]["inner"]["s"] == "text"
    assert tree["nested"]["tup"][1] == 1.5


def test_torchscript_module(data_dir, expected):
    tree = torch_io.load_torch_file(data_dir / "torch_io" / "scripted.pt")
    assert isinstance(tree, torch_io.ScriptObject) and isinstance(tree, dict)
    assert tree.type_name == "__torch__.Tiny"
    assert tree["conv"].type_name == "__torch__.torch.nn.modules.conv.Conv2d"
    assert tree["steps"] == 4
    assert tree["conv"]["_reversed_padding_repeated_twice"] == [1, 1, 1, 1]
    assert_arrays_equal(torch_io.flatten_arrays(tree), expected, "scripted")


def test_unknown_globals_are_stand_ins(tmp_path):
    # A legacy-format file whose object tree calls os.system("touch ...").
    command = f"touch {tmp_path / 'ran'}"
    evil = (b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little")
            + command.encode() + b"\x85R.")
    header = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    path = tmp_path / "evil.pt"
    path.write_bytes(header + evil + pickle.dumps([], protocol=2))
    obj = torch_io.load_torch_file(path)
    assert isinstance(obj, torch_io.StandIn)
    assert obj.type_name == "os.system" and obj.args == (command,)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", ["state_legacy.pt", "state_zip.pt", "scripted.pt"])
def test_truncated_file(data_dir, tmp_path, name):
    raw = (data_dir / "torch_io" / name).read_bytes()
    path = tmp_path / name
    for length in (len(raw) - 1, len(raw) * 2 // 3, 40):
        path.write_bytes(raw[:length])
        with pytest.raises(torch_io.TorchFileError) as info:
            torch_io.load_torch_file(path)
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("model weights go here\n")
    with pytest.raises(torch_io.TorchFileError, match="not a torch file"):
        torch_io.load_torch_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(torch_io.TorchFileError, match="no such file"):
        torch_io.load_torch_file(tmp_path / "absent.pt")
