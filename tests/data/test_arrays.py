"""Tests for the user .npz reader: errors name the file and never suggest loading pickles."""

import numpy as np
import pytest

from jaxmr.data.arrays import load_paired_npz


@pytest.mark.parametrize("bad", [b"not a zip at all", b"PK\x03\x04 truncated zip"])
def test_not_an_npz_never_mentions_pickles(tmp_path, bad):
    path = tmp_path / "data.npz"
    path.write_bytes(bad)
    with pytest.raises(ValueError) as info:
        load_paired_npz(path)
    assert str(info.value) == f"not an .npz archive: {path}"
    assert "pickle" not in str(info.value).lower()


def test_plain_npy_is_not_an_npz(tmp_path):
    path = tmp_path / "data.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="^not an .npz archive: "):
        load_paired_npz(path)


def test_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, u=np.zeros((4, 2)), x=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(ValueError) as info:
        load_paired_npz(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: array 'x' holds Python objects")
    assert "allow_pickle" not in msg
