"""What the TIDL device computes, simulated with numpy int64 arithmetic.

Power-of-two scales make every tensor an integer times a power of two, so the
float ops between a dequantize and the next quantize of the core's Q/DQ graph
can be carried out exactly on integers: a value is ``ints * 2**exp`` (``/ den``
after a non power-of-two average). Convolutions accumulate int8 x int8
products and the int32 bias in int64; requantization is a right shift with
rounding, then saturation to the output range.

Rounding, from TI's TIDL reference kernels:

* requantization (``TIDL_roundSat`` in ``tidl_commonUtils.c``): add
  ``1 << (shift - 1)``, arithmetic right shift, saturate: round half up;
* float input to fixed point (``TIDL_refDataConvert``): ``val +/- 0.5``, then
  truncation: round half away from zero.

``rounding="torch"`` replaces both with round half to even, which is what the
core's Q/DQ graph does in torch (``quantized_decomposed.quantize_per_tensor``
uses ``torch.round``); in that mode the simulation reproduces the core's
simulation bit for bit, which is how its integer arithmetic is tested.

Not simulated: TIDL stores biases at 16 bits in 8-bit mode with their own
scale, and computes non power-of-two averages with a fixed-point reciprocal;
here biases stay int32 at input x weight scale and averages round exactly.
``accumulator_bits`` reports the widest accumulator seen (bits counted by the core's
``qconvert.core.accumulator.signed_bits``, which the recipe's ``accumulator_bits`` check
also uses), to compare with the device's 32-bit (8-bit mode) accumulators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from qconvert.targets import signed_bits

__all__ = ["Fixed", "IntSim", "Ref", "Rounding", "Step", "UnsupportedGraph", "exact_matmul", "round_div", "shift_round"]

Rounding = Literal["tidl", "torch"]


class UnsupportedGraph(ValueError):
    """The Q/DQ graph has an op or a scale the integer simulation cannot run exactly."""


@dataclass
class Fixed:
    """An exact dyadic tensor: ``ints * 2**exp / den``; ``exp`` broadcasts against ``ints``."""

    ints: np.ndarray
    exp: np.ndarray
    den: int = 1

    def to_float(self) -> np.ndarray:
        return (self.ints.astype(np.float64) * np.exp2(self.exp.astype(np.float64)) / self.den).astype(np.float32)


@dataclass
class QValue:
    """The integer output of a quantize node and the grid it lives on."""

    q: np.ndarray
    scale: float
    zero_point: int


def round_div(num: np.ndarray, den: np.ndarray | int, mode: Literal["half_up", "half_even"]) -> np.ndarray:
    """``num / den`` rounded to the nearest integer, exactly, for int64 arrays and ``den > 0``."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if mode == "half_up":
        return np.floor_divide(2 * num + den, 2 * den)
    q = np.floor_divide(num, den)
    twice = 2 * (num - q * den)
    return q + ((twice > den) | ((twice == den) & (q % 2 == 1))).astype(np.int64)


def shift_round(v: np.ndarray, shift: np.ndarray | int, mode: Literal["half_up", "half_even"]) -> np.ndarray:
    """``v * 2**-shift`` rounded: a right shift with rounding where ``shift > 0``, exact otherwise."""
    shift = np.asarray(shift, dtype=np.int64)
    right = np.maximum(shift, 0)
    left = np.maximum(-shift, 0)
    widened = np.asarray(v, dtype=np.int64) << left
    if not np.any(right):
        return widened
    if int(right.max()) > 62:
        raise UnsupportedGraph(f"a requantization shift of {int(right.max())} bits does not fit int64")
    return round_div(widened, np.int64(1) << right, mode)


def _exp_of(scale: float, where: str) -> int:
    e = math.log2(scale)
    if scale <= 0 or e != round(e):
        raise UnsupportedGraph(f"{where}: scale {scale!r} is not a power of two")
    return round(e)


@dataclass
class Step:
    """One value of the integer program: ``fn(sim, name, *args, **kwargs)`` with ``Ref`` arguments resolved."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class IntSim:
    """An integer program compiled from a Q/DQ ``GraphModule``; ``run`` needs numpy only.

    Build it with ``qconvert_tidl.intsim_compile.compile_graph(qmodel.graph)``.
    """

    inputs: tuple[str, ...]
    steps: list[Step]
    outputs: tuple[str, ...]
    rounding: Rounding = "tidl"
    accumulator_bits: dict[str, int] = field(default_factory=dict)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Float outputs (dequantized) for float inputs, in graph output order."""
        env: dict[str, Any] = {name: np.asarray(feeds[name], dtype=np.float32) for name in self.inputs}
        for step in self.steps:
            kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()}
            env[step.name] = step.fn(self, step.name, *(_resolve(a, env) for a in step.args), **kwargs)
        return [_as_float(env[o]) for o in self.outputs]

    def note_accumulator(self, name: str, ints: np.ndarray) -> None:
        bits = signed_bits(int(np.abs(ints).max()) if ints.size else 0)
        self.accumulator_bits[name] = max(bits, self.accumulator_bits.get(name, 0))


@dataclass(frozen=True)
class Ref:
    """An argument that names an earlier value of the program."""

    ref: str


def _resolve(a: Any, env: dict[str, Any]) -> Any:
    if isinstance(a, Ref):
        return env[a.ref]
    if isinstance(a, (list, tuple)):
        return type(a)(_resolve(x, env) for x in a)
    return a


def _as_float(v: Any) -> np.ndarray:
    if isinstance(v, Fixed):
        return v.to_float()
    if isinstance(v, QValue):
        return ((v.q - v.zero_point) * v.scale).astype(np.float32)
    return np.asarray(v, dtype=np.float32)


# -- op implementations: fn(sim, name, *args) -------------------------------------------------


def op_quantize(sim: IntSim, name: str, x: Any, scale: float, zp: int, qmin: int, qmax: int) -> QValue:
    e_out = _exp_of(scale, name)
    if isinstance(x, Fixed):
        mode: Literal["half_up", "half_even"] = "half_up" if sim.rounding == "tidl" else "half_even"
        shift = e_out - x.exp
        if x.den == 1:
            q = shift_round(x.ints, shift, mode)
        else:
            num = x.ints << np.maximum(-shift, 0)
            q = round_div(num, x.den * (np.int64(1) << np.maximum(shift, 0)), mode)
    else:
        v = np.asarray(x, dtype=np.float64) * 2.0**-e_out
        q = np.trunc(v + np.copysign(0.5, v)) if sim.rounding == "tidl" else np.rint(v)
        q = q.astype(np.int64)
    return QValue(np.clip(q + zp, qmin, qmax), float(scale), int(zp))


def op_dequantize(sim: IntSim, name: str, v: QValue | np.ndarray, scale: Any, zp: Any, axis: int | None = None) -> Fixed:
    q = v.q if isinstance(v, QValue) else np.asarray(v, dtype=np.int64)
    scales = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    zps = np.atleast_1d(np.asarray(zp, dtype=np.int64))
    exps = np.array([_exp_of(float(s), name) for s in scales], dtype=np.int64)
    if axis is None:
        return Fixed(q - int(zps[0]), np.asarray(exps[0]))
    shape = [1] * q.ndim
    shape[axis] = -1
    return Fixed(q - zps.reshape(shape), exps.reshape(shape))


def _aligned(*xs: Fixed) -> tuple[list[np.ndarray], np.ndarray]:
    if any(x.den != 1 for x in xs):
        raise UnsupportedGraph("an average that is not a power of two feeds an arithmetic op before being quantized")
    emin = xs[0].exp
    for x in xs[1:]:
        emin = np.minimum(emin, x.exp)
    return [x.ints << (x.exp - emin) for x in xs], emin


def op_add(sim: IntSim, name: str, a: Fixed, b: Fixed, alpha: int = 1) -> Fixed:
    (ia, ib), e = _aligned(a, b)
    return Fixed(ia + alpha * ib, e)


def op_mul(sim: IntSim, name: str, a: Fixed, b: Fixed) -> Fixed:
    if a.den != 1 or b.den != 1:
        raise UnsupportedGraph(f"{name}: multiply of a non power-of-two average")
    return Fixed(a.ints * b.ints, a.exp + b.exp)


def op_relu(sim: IntSim, name: str, x: Fixed) -> Fixed:
    return Fixed(np.maximum(x.ints, 0), x.exp, x.den)


def op_clamp(sim: IntSim, name: str, x: Fixed, lo: float | None, hi: float | None) -> Fixed:
    ints = x.ints
    for bound, fn in ((lo, np.maximum), (hi, np.minimum)):
        if bound is None:
            continue
        units = bound * x.den / np.exp2(x.exp.astype(np.float64))
        if not np.all(units == np.round(units)):
            raise UnsupportedGraph(f"{name}: clamp bound {bound} is not on the tensor's grid")
        ints = fn(ints, units.astype(np.int64))
    return Fixed(ints, x.exp, x.den)


#: Integers up to this magnitude are exact in float64.
_EXACT_F64 = 2**53


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of integer arrays as int64, exactly. numpy has no BLAS for integers (an int64 matmul is a plain
    loop, 20-50x slower), so where no partial sum can reach 2**53 the product runs in float64, which holds every
    such integer exactly; otherwise in int64."""
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if not a64.size or not b64.size:
        return a64 @ b64
    bound = int(np.abs(a64).max()) * int(np.abs(b64).max()) * a64.shape[-1]
    if bound >= _EXACT_F64:
        return a64 @ b64
    return np.rint(a64.astype(np.float64) @ b64.astype(np.float64)).astype(np.int64)


def _windows(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) views of an already padded NCHW array."""
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    v = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(2, 3))
    return v[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def op_conv2d(sim: IntSim, name: str, x: Fixed, w: Fixed, b: Fixed | None, stride: Any = (1, 1),
              padding: Any = (0, 0), dilation: Any = (1, 1), groups: int = 1) -> Fixed:
    if not isinstance(x, Fixed) or not isinstance(w, Fixed):  # a layer the recipe keeps in float (exclude)
        raise UnsupportedGraph(f"{name}: convolution in float (a layer kept out of quantization); TIDL runs it in integer")
    if x.exp.ndim and x.exp.size > 1:
        raise UnsupportedGraph(f"{name}: per-channel input grid")
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    xi = np.pad(x.ints, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    cout, cin_g, kh, kw = w.ints.shape
    win = _windows(xi, kh, kw, s, d)  # N, C, Ho, Wo, kh, kw
    n, _, ho, wo = win.shape[:4]
    cout_g = cout // groups
    # all groups at once: (groups, N*Ho*Wo, cin_g*kh*kw) @ (groups, cin_g*kh*kw, cout_g)
    cols = win.reshape(n, groups, cin_g, ho, wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(groups, n * ho * wo, cin_g * kh * kw)
    wg = w.ints.reshape(groups, cout_g, cin_g * kh * kw).transpose(0, 2, 1)
    out = exact_matmul(cols, wg).reshape(groups, n, ho, wo, cout_g).transpose(1, 0, 4, 2, 3).reshape(n, cout, ho, wo)
    exp = x.exp + w.exp.reshape(1, -1, 1, 1) if w.exp.ndim else x.exp + w.exp
    acc = Fixed(out, np.asarray(exp))
    if b is not None:
        acc = _add_bias(name, acc, b, (1, -1, 1, 1))
    sim.note_accumulator(name, acc.ints)
    return acc


def op_linear(sim: IntSim, name: str, x: Fixed, w: Fixed, b: Fixed | None = None) -> Fixed:
    if not isinstance(x, Fixed) or not isinstance(w, Fixed):  # a layer the recipe keeps in float (exclude)
        raise UnsupportedGraph(f"{name}: linear layer in float (a layer kept out of quantization); TIDL runs it in integer")
    if x.exp.ndim and x.exp.size > 1:
        raise UnsupportedGraph(f"{name}: per-channel input grid")
    out = exact_matmul(x.ints, w.ints.T)
    exp = x.exp + (w.exp.reshape(1, -1) if w.exp.ndim else w.exp)
    acc = Fixed(out, np.asarray(exp))
    if b is not None:
        acc = _add_bias(name, acc, b, (1, -1))
    sim.note_accumulator(name, acc.ints)
    return acc


def _add_bias(name: str, acc: Fixed, b: Fixed, shape: tuple[int, ...]) -> Fixed:
    bexp = b.exp.reshape(shape) if b.exp.ndim else b.exp
    diff = bexp - acc.exp
    if np.any(diff < 0):
        raise UnsupportedGraph(f"{name}: bias grid is finer than the accumulator's")
    return Fixed(acc.ints + (b.ints.reshape(shape) << diff), acc.exp)


def op_mean(sim: IntSim, name: str, x: Fixed, dims: tuple[int, ...], keepdim: bool) -> Fixed:
    if x.exp.ndim and x.exp.size > 1:
        raise UnsupportedGraph(f"{name}: average of a per-channel grid")
    count = int(np.prod([x.ints.shape[d] for d in dims]))
    total = x.ints.sum(axis=tuple(dims), keepdims=keepdim)
    log = count.bit_length() - 1
    if count == 1 << log:
        return Fixed(total, x.exp - log, x.den)
    return Fixed(total, x.exp, x.den * count)


def op_max_pool2d(sim: IntSim, name: str, x: Fixed, kernel: Any, stride: Any = None, padding: Any = (0, 0),
                  dilation: Any = (1, 1), ceil_mode: bool = False) -> Fixed:
    if ceil_mode:
        raise UnsupportedGraph(f"{name}: max_pool2d with ceil_mode")
    k, p = _pair(kernel), _pair(padding)
    s = _pair(stride) if stride else k
    low = np.iinfo(np.int64).min
    xi = np.pad(x.ints, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=low)
    return Fixed(_windows(xi, k[0], k[1], s, _pair(dilation)).max(axis=(-2, -1)), x.exp, x.den)


def op_reshape_like(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[..., Fixed]:
    """A data-movement op: applied to the integers (and a non-scalar grid alike)."""

    def run(sim: IntSim, name: str, x: Fixed) -> Fixed:
        exp = fn(np.broadcast_to(x.exp, x.ints.shape)) if x.exp.ndim and x.exp.size > 1 else x.exp
        return Fixed(fn(x.ints), exp, x.den)

    return run


def op_cat(sim: IntSim, name: str, xs: list[Fixed], dim: int = 0) -> Fixed:
    ints, e = _aligned(*xs)
    if e.ndim and e.size > 1:
        raise UnsupportedGraph(f"{name}: concatenation of per-channel grids")
    return Fixed(np.concatenate(ints, axis=dim), e)


def op_identity(sim: IntSim, name: str, x: Any) -> Any:
    return x


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = list(v)
    return (int(v[0]), int(v[-1])) if v else (1, 1)
