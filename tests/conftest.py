"""Shared test set-up.

Triton's interpreter must be switched on before any ``@triton.jit`` runs, so it
is set here, before test modules import kernels, whenever CUDA is unavailable.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# --- kernel fixtures (tests/test_kernels_*.py, tests/test_ops.py) -------------------------------


def triton_interpreting() -> bool:
    """True when Triton kernels run on CPU tensors through the interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture
def kernel_device() -> torch.device:
    """Where kernel parity tests run: the GPU when there is one (compiled kernels),
    else the CPU (kernels interpreted, ``force_triton=True``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def nan_alloc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every floating ``torch.empty``/``torch.empty_like`` NaN-filled for the test,
    so a kernel that leaves an output element unwritten fails its parity check."""
    empty, empty_like = torch.empty, torch.empty_like

    def poison(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.is_floating_point() else t

    monkeypatch.setattr(torch, "empty", lambda *a, **k: poison(empty(*a, **k)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: poison(empty_like(*a, **k)))


_SM90_CHILD = r"""
import importlib, json, re, subprocess, sys, tempfile
from pathlib import Path
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
results = []
for spec in json.load(sys.stdin):
    kernel = getattr(importlib.import_module(spec["module"]), spec["kernel"])
    types, constexprs = spec["types"], spec["constexprs"]
    names = kernel.arg_names
    signature = {n: "constexpr" if n in constexprs else types[n] for n in names}
    # Pointers and strides are 16-divisible, as triton specialises them at launch.
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names)
             if n not in constexprs and (types[n].startswith("*") or n.startswith("stride"))}
    compiled = triton.compile(
        ASTSource(kernel, signature, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
        options={"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "k.cubin").write_bytes(compiled.asm["cubin"])
        dump = subprocess.run([str(tools / "cuobjdump"), "-res-usage", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True, check=True).stdout
    regs, stack = re.search(r"REG:(\d+).*?STACK:(\d+)", dump, re.S).groups()
    ptx = compiled.asm["ptx"]
    results.append({"registers": int(regs), "stack_bytes": int(stack),
                    "shared_bytes": compiled.metadata.shared,
                    "v4_loads": ptx.count("ld.global.v4"), "v4_stores": ptx.count("st.global.v4")})
print(json.dumps(results))
"""


@pytest.fixture
def compile_sm90():
    """Compile ``@triton.jit`` kernels ahead of time for an H100/H200 (sm_90) with the ptxas
    in the triton wheel: no GPU needed. In a child process, since the interpreter (this
    process on CPU) patches triton.language. ``fn(specs) -> results``, where a spec is
    ``{"module", "kernel", "types": {arg: "*bf16"|"i32"|...}, "constexprs", "num_warps",
    "num_stages"}`` and a result ``{"registers", "stack_bytes", "shared_bytes",
    "v4_loads", "v4_stores"}`` (16-byte vector loads/stores in the PTX)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import triton

    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    if not (tools / "ptxas").exists() or not (tools / "cuobjdump").exists():
        pytest.skip("triton wheel without ptxas/cuobjdump")
    root = Path(__file__).resolve().parents[1]

    def compile_kernels(specs: list[dict]) -> list[dict]:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
        done = subprocess.run(
            [sys.executable, "-c", _SM90_CHILD], input=json.dumps(specs), env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return compile_kernels
