"""A corrupt or tampered bundle: ``copur party`` and ``copur fusion`` (real processes) refuse to
start with exit status 2 and one line naming the file, on a copy of the bundle with bytes flipped
in one file or one file deleted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clusterkit import free_ports, write_topology

REFUSE_TIMEOUT_S = 180.0  # a process that does not refuse would serve forever: killed after this


def _flip(path: Path) -> None:
    """XOR a few bytes in the middle of ``path`` (the tensor data of a safetensors file)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for k in range(mid, min(mid + 8, len(data))):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def _damaged_copy(bundle: Path, folder: Path, file: str, how: str) -> Path:
    copy = folder / "bundle"
    shutil.copytree(bundle, copy)
    if how == "flip":
        _flip(copy / file)
    else:
        (copy / file).unlink()
    return copy


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``copur ARGV`` with plaintext gRPC and no API keys (loopback): only the bundle can be
    wrong."""
    env = {**os.environ, "COPUR_TLS_MODE": "plaintext", "COPUR_AUTH_MODE": "none"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "copur", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=REFUSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


CASES = [
    ("party", "party-0.safetensors", "flip", "party-0.safetensors does not match its sha256"),
    ("party", "party-0.safetensors", "delete", "missing party-0.safetensors"),
    ("fusion", "head_ae.safetensors", "flip", "head_ae.safetensors does not match its sha256"),
    ("fusion", "autoencoder.safetensors", "delete", "missing autoencoder.safetensors"),
    ("fusion", "calibration.json", "flip", "calibration.json does not match its sha256"),
]


@pytest.mark.parametrize(
    ("role", "file", "how", "shown"), CASES, ids=[f"{c[0]}-{c[2]}-{c[1]}" for c in CASES]
)
def test_a_damaged_bundle_is_refused_at_start_in_one_line(
    mfeat_bundle_dir: Path, tmp_path: Path, role: str, file: str, how: str, shown: str
) -> None:
    # Prepare
    bundle = _damaged_copy(mfeat_bundle_dir, tmp_path, file, how)
    if role == "party":
        argv = ["party", "--bundle", str(bundle), "--party", "0", "--port", str(free_ports(1)[0])]
    else:
        argv = ["fusion", "--config", str(write_topology(tmp_path, bundle))]
    # Execute
    done = _run(argv)
    # Assert: exit 2, one line on stderr naming the bundle and the file
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and shown in lines[0] and str(bundle) in lines[0]
