"""CPU inference with fp16 weights: ``nn.Linear`` layers that run through fbgemm's fp16 GEMM.

Every shipped model stores its weights in fp16 and loads them as fp32 copies of
those fp16 values. On a CPU, one stream's matmuls are small (1-16 rows against a
256-1024 wide weight), so their time goes to reading the weights, not to
arithmetic: the decoder's and vocoder's weights (~30 MB as fp32) do not stay in
cache between steps. fbgemm (bundled with torch's CPU build) multiplies fp32
activations by a packed fp16 copy of the weight with fp32 accumulation, reading
half the bytes: 2-2.5x faster per matmul at these shapes on the 2-core AVX2 machine,
and voice-700's streaming encode + decode went from real-time factor 0.63 to 0.40
(``benchmarks/results/voice_speed.md``). The weights are the same numbers (an
fp16-exact weight is packed without rounding; any other weight is not packed),
so outputs change only by the accumulation order, ~1e-6 relative.

:func:`pack_linears` swaps a module's ``nn.Linear`` children for
:class:`PackedLinear`, which shares their parameters (state dicts, ``.to(device)``
and training are unaffected). The packed path runs only for float32 CPU inputs
when no gradient is needed (and not inside ``torch.compile`` tracing); a weight
changed in place (optimiser step, ``load_state_dict``) is repacked on the next
call. ``STREAMCODEC_CPU_FP16_LINEAR=0`` turns packing off. torch marks the fbgemm
fp16 functions deprecated; where a torch build lacks them, :func:`available` is
False and the layers stay as they are.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

DISABLE_ENV = "STREAMCODEC_CPU_FP16_LINEAR"

# torch warns once per call site that these functions are deprecated; we check at run time
# that they exist (``available``) and fall back to F.linear where they do not
warnings.filterwarnings("ignore", message=r"fbgemm_(pack_gemm_matrix_fp16|linear_fp16_weight)")


@functools.cache
def available() -> bool:
    """True when this torch build can pack and multiply fp16 weights (checked once)."""
    try:
        w = torch.eye(8)
        y = torch.fbgemm_linear_fp16_weight(
            torch.ones(2, 8), torch.fbgemm_pack_gemm_matrix_fp16(w), torch.zeros(8)
        )
        ok = bool(torch.equal(y, torch.ones(2, 8)))
    except (AttributeError, RuntimeError) as exc:
        log.info("fbgemm fp16 linear unavailable: %s", exc)
        return False
    return ok


def enabled() -> bool:
    """Packing is available and not turned off by ``STREAMCODEC_CPU_FP16_LINEAR=0``."""
    return os.environ.get(DISABLE_ENV, "1").strip() not in ("0", "false", "no") and available()


class WeightPacker:
    """The fbgemm fp16 copy of one weight, for one call site: :class:`PackedLinear` holds
    one, and a module whose GEMM weight is not an ``nn.Linear`` (a conv weight flattened
    into a matrix) can hold one too. ``linear(x, weight, bias, owner)`` is ``F.linear``;
    ``owner`` is the parameter ``weight`` is (a view of): its identity and in-place version
    decide when to repack. A plain object, not a module: nothing of it is in a state dict;
    the packed handle is never copied or pickled."""

    def __init__(self) -> None:
        self._packed: torch.Tensor | None = None
        self._packed_of: tuple[int, int, int] | None = None  # weight_key of the packed weight
        self._zero_bias: torch.Tensor | None = None

    def linear(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        owner: torch.Tensor | None = None,
    ) -> torch.Tensor:
        owner = weight if owner is None else owner
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and (x.requires_grad or owner.requires_grad))
            and not torch.compiler.is_compiling()
        ):
            if self._packed_of != weight_key(owner):
                self._repack(weight, owner)
            if self._packed is not None:
                if bias is None:
                    if self._zero_bias is None or self._zero_bias.shape[0] != weight.shape[0]:
                        self._zero_bias = torch.zeros(weight.shape[0])
                    bias = self._zero_bias
                return torch.fbgemm_linear_fp16_weight(x, self._packed, bias)
        return F.linear(x, weight, bias)

    def _repack(self, weight: torch.Tensor, owner: torch.Tensor) -> None:
        w = weight.detach()
        self._packed = None
        if w.device.type == "cpu" and w.dtype == torch.float32 and torch.equal(w, w.half().float()):
            self._packed = torch.fbgemm_pack_gemm_matrix_fp16(w.contiguous())
        self._packed_of = weight_key(owner)

    @property
    def packed(self) -> bool:
        """True once the fbgemm path has run (tests, diagnostics)."""
        return self._packed is not None

    # the packed matrix is an opaque handle to fbgemm memory: never copy or pickle it
    def __getstate__(self) -> dict:
        return {"_packed": None, "_packed_of": None, "_zero_bias": None}


class PackedLinear(nn.Linear):
    """``nn.Linear`` that multiplies float32 CPU inputs by an fbgemm-packed fp16 copy of its
    weight when the weight is exactly representable in fp16 (else, or when a gradient is
    needed, plain ``F.linear``)."""

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> PackedLinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = lin.in_features, lin.out_features
        new.weight, new.bias = lin.weight, lin.bias  # shared parameters
        new.train(lin.training)
        new.packer = WeightPacker()
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.packer.linear(x, self.weight, self.bias)


def weight_key(w: torch.Tensor) -> tuple[int, int, int]:
    """Identity of a weight's values: object, storage and in-place version (inference-mode
    tensors have no version counter; they cannot be changed outside inference mode)."""
    return id(w), w.data_ptr(), -1 if w.is_inference() else w._version


def pack_linears(module: nn.Module) -> int:
    """Swap every ``nn.Linear`` inside ``module`` for a :class:`PackedLinear` sharing its
    parameters; returns how many were swapped (0 when :func:`enabled` is False)."""
    if not enabled():
        return 0
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear.from_linear(child))
                n += 1
    return n
