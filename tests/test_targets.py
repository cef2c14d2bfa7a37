"""``tvm_sima.target()``: this machine's CPU by default, overridable, never an instruction the CPU lacks.

``make test-avx2`` runs this file again under QEMU emulating a Haswell (AVX2, no AVX-512): there
LLVM's host CPU is ``haswell``, and ``test_default_target_builds_and_runs`` would die of SIGILL
if the default target emitted an AVX-512 instruction (as it does with ``TVM_SIMA_MCPU=rocketlake``).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tvm
from helpers.relax import one_input_module
from tvm import relax
from tvm.target.codegen import llvm_get_cpu_features, llvm_get_system_cpu

import tvm_sima
from tvm_sima.targets import MCPU_ENV, host_cpu

W = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype("float32")
X = np.random.default_rng(1).standard_normal((1, 8, 12, 16)).astype("float32")

#: LLVM feature -> /proc/cpuinfo flag, for the instruction-set extensions a vector kernel may use.
CPUINFO_FLAG = {
    "sse4.1": "sse4_1", "sse4.2": "sse4_2", "ssse3": "ssse3", "avx": "avx", "avx2": "avx2", "fma": "fma",
    "f16c": "f16c", "bmi": "bmi1", "bmi2": "bmi2", "avx512f": "avx512f", "avx512bw": "avx512bw",
    "avx512cd": "avx512cd", "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512ifma": "avx512ifma", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avxvnni": "avx_vnni", "gfni": "gfni", "vaes": "vaes",
    "vpclmulqdq": "vpclmulqdq", "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16",
}


def cpuinfo_flags() -> set:
    path = pathlib.Path("/proc/cpuinfo")
    if not path.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    line = next((ln for ln in path.read_text().splitlines() if ln.startswith("flags")), None)
    if line is None:
        pytest.skip("/proc/cpuinfo has no flags line (not x86?)")
    return set(line.split(":", 1)[1].split())


def conv_module():
    return one_input_module(X.shape, "float32", lambda bb, v: relax.op.nn.conv2d(v, relax.const(W), padding=1))


def assembly(target) -> str:
    ex = tvm_sima.build(conv_module(), target=target)
    return "\n".join(m.inspect_source("asm") for m in ex.mod.imports if m.kind == "llvm")


def test_default_cpu_is_this_machines(monkeypatch):
    monkeypatch.delenv(MCPU_ENV, raising=False)
    assert host_cpu() == str(llvm_get_system_cpu())
    assert str(tvm_sima.target().attrs["mcpu"]) == str(llvm_get_system_cpu())


def test_cpu_is_overridable_by_argument_and_environment(monkeypatch):
    monkeypatch.setenv(MCPU_ENV, "haswell")
    assert str(tvm_sima.target().attrs["mcpu"]) == "haswell"
    assert str(tvm_sima.target(mcpu="znver3").attrs["mcpu"]) == "znver3"
    assert "mcpu" not in tvm_sima.target(mcpu="generic").attrs  # portable x86-64


def test_unknown_cpu_in_the_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(MCPU_ENV, "pentium-9000")
    with pytest.raises(ValueError, match=r"TVM_SIMA_MCPU='pentium-9000' is not a CPU LLVM knows"):
        tvm_sima.target()


def test_default_target_needs_no_feature_the_cpu_lacks(monkeypatch):
    monkeypatch.delenv(MCPU_ENV, raising=False)
    flags = cpuinfo_flags()
    features = {str(f) for f in llvm_get_cpu_features(tvm_sima.target())}
    assert "avx2" in features or "avx2" not in flags, "the default target ignores this CPU's AVX2"
    lacking = sorted(f for f in features if f in CPUINFO_FLAG and CPUINFO_FLAG[f] not in flags)
    assert not lacking, f"the default target would use {lacking}, which this CPU does not have"


def test_default_target_emits_no_wider_vectors_than_the_cpu_has(monkeypatch):
    monkeypatch.delenv(MCPU_ENV, raising=False)
    flags = cpuinfo_flags()
    assert "%zmm" in assembly(tvm_sima.target(mcpu="skylake-avx512"))  # the check below can see AVX-512
    code = assembly(tvm_sima.target())
    if "avx512f" not in flags:
        assert "%zmm" not in code, "AVX-512 registers in code for a CPU without AVX-512"
    if "avx" not in flags:
        assert "%ymm" not in code, "AVX registers in code for a CPU without AVX"
    if "avx2" in flags:
        assert "%ymm" in code or "%zmm" in code, "the default target does not use this CPU's vectors"


def test_default_target_builds_and_runs(monkeypatch):
    monkeypatch.delenv(MCPU_ENV, raising=False)
    vm = relax.VirtualMachine(tvm_sima.build(conv_module()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(X)).numpy()
    padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # n c h w kh kw
    expected = np.einsum("nchwij,ocij->nohw", windows, W)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
