"""Code packages: nimbus signs them with the cluster secret, supervisors refuse anything else."""

from __future__ import annotations

import pytest

from cluster.codesign import CodeSignatureError, sign_code, verify_code


def test_a_signed_package_verifies_with_the_same_secret() -> None:
    assert verify_code(sign_code(b"code", "s3cret"), "s3cret") == b"code"
    assert verify_code(sign_code(b"", None), None) == b""


@pytest.mark.parametrize("package", [b"", b"code", b"code" + b"\0" * 32 + b"SQC1",
                                     b"SQC1" + b"\0" * 32 + b"code"])
def test_unsigned_or_forged_packages_are_refused(package: bytes) -> None:
    with pytest.raises(CodeSignatureError, match="not signed"):
        verify_code(package, "s3cret", "code of t-1")


def test_another_secret_or_a_changed_blob_is_refused() -> None:
    signed = sign_code(b"code", "s3cret")
    with pytest.raises(CodeSignatureError, match="this cluster's secret"):
        verify_code(signed, "other")
    with pytest.raises(CodeSignatureError):
        verify_code(b"X" + signed[1:], "s3cret")
    with pytest.raises(CodeSignatureError):
        verify_code(signed, None)


def test_a_signed_pickle_still_unpickles_but_only_the_verified_blob_runs() -> None:
    import pickle

    blob = pickle.dumps({"topology": "t"})
    signed = sign_code(blob, "s3cret")
    assert pickle.loads(signed) == {"topology": "t"}  # tools reading the store keep working
    assert verify_code(signed, "s3cret") == blob
