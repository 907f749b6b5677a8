"""Low-bit number formats for simulated quantization: how each picks its range, how it rounds.

A format is parsed from a short spec and fitted to one tensor (weights: the array itself;
activations: the calibrated range of a layer's input or output); fitting returns a grid that
rounds numpy arrays (weights, once, in the params) and MXNet symbols (activations, in the graph).

* ``dfp:BITS``: Ristretto's dynamic fixed point. Integer length ``il = ceil(log2(max|w|) + 1)``
  for weights and ``ceil(log2(max|x|))`` for activations (Ristretto drops one bit there),
  fractional length ``BITS - il``; values saturate to ``[-2^(BITS-1), 2^(BITS-1) - 1] * 2^-fl``.
* ``int:BITS``: symmetric linear with a calibrated threshold ``t``, in MXNet's convention
  (``quantization_utils.h``: ``kInt8Range = 127.5``, ``kUint8Range = 255.5``): scale
  ``(2^(BITS-1) - 0.5) / t`` and integers ``[-2^(BITS-1), 2^(BITS-1) - 1]``, or for a
  never-negative tensor scale ``(2^BITS - 0.5) / t`` and ``[0, 2^BITS - 1]``; so ``t`` itself
  saturates to the top integer. Weights get one scale per output channel, as oneDNN's int8
  convolution does in MXNet 1.9.1 when its output is requantized.
* ``pow2:LO:HI``: DeepShift-Q, ``sign(w) * 2^round(log2|w|)`` with ``|w|`` clamped into
  ``[2^LO, 2^HI]`` first and rounded in the log domain; zero stays zero.
* ``pow2clip:BITS[:J]``: linear inside a power-of-two clip ``[-2^j, 2^j]``, scale ``2^(BITS-1-j)``;
  ``j`` is the smallest exponent with ``2^j`` at or above the calibrated threshold, or ``J``.
* ``clip:J``: clipping to ``[-2^J, 2^J]`` only, values stay fp32 (the clipping paper's tables).

Rounding is to nearest with halves away from zero: ``sign(x) * floor(|x| * scale + 0.5) / scale``.
"""
import math
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ssdq.errors import SsdqError
from ssdq.quant.quantize import _mse_threshold

KINDS = ("dfp", "int", "pow2", "pow2clip", "clip")


def round_half_away(x):
    """Round to nearest, halves away from zero (Ristretto's and C's ``round``)."""
    x = np.asarray(x)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def ceil_log2(value):
    return int(math.ceil(math.log2(value))) if value > 0 else 0


@dataclass(frozen=True)
class Grid:
    """A uniform grid: ``clip(round(x * scale), qmin, qmax) / scale`` (``scale`` may be per channel).

    ``scale=None`` is no rounding (only the clip, in real units ``qmin..qmax``)."""
    scale: object  # float, (C,) array for per-output-channel weights, or None
    qmin: float
    qmax: float
    describe: dict

    def _scale_for(self, x):
        if np.ndim(self.scale) == 0:
            return self.scale
        return np.asarray(self.scale, np.float64).reshape((-1,) + (1,) * (np.ndim(x) - 1))

    def apply(self, x):
        x = np.asarray(x, np.float64)
        if self.scale is None:
            return np.clip(x, self.qmin, self.qmax).astype(np.float32)
        scale = self._scale_for(x)
        q = np.clip(round_half_away(x * scale), self.qmin, self.qmax)
        return (q / scale).astype(np.float32)

    def symbol(self, sym):
        if self.scale is None:
            return mx.sym.clip(sym, float(self.qmin), float(self.qmax))
        if np.ndim(self.scale) != 0:
            raise SsdqError("per-channel activation grids are not supported")
        scale = float(self.scale)
        # MXNet's round is C's round(): halves away from zero, one op instead of four
        rounded = mx.sym.round(sym * scale)
        return mx.sym.clip(rounded, float(self.qmin), float(self.qmax)) * (1.0 / scale)


@dataclass(frozen=True)
class Pow2Grid:
    """DeepShift-Q: ``sign(x) * 2^round(log2(clamp(|x|, 2^lo, 2^hi)))``, zero kept."""
    lo: int
    hi: int
    describe: dict

    def apply(self, x):
        x = np.asarray(x, np.float64)
        mag = np.clip(np.abs(x), 2.0 ** self.lo, 2.0 ** self.hi)
        shift = np.clip(round_half_away(np.log2(mag)), self.lo, self.hi)
        return (np.sign(x) * 2.0 ** shift).astype(np.float32)

    def symbol(self, sym):
        mag = mx.sym.clip(mx.sym.abs(sym), 2.0 ** self.lo, 2.0 ** self.hi)
        shift = mx.sym.clip(mx.sym.round(mx.sym.log2(mag)), float(self.lo), float(self.hi))
        return mx.sym.sign(sym) * mx.sym.pow(2.0, shift)


class NumberFormat:
    """A parsed format spec; ``weights(w)`` and ``activations(lo, hi)`` fit it to one tensor."""

    def __init__(self, spec, calibration="naive"):
        self.spec = spec
        self.calibration = calibration
        parts = spec.split(":")
        self.kind = parts[0]
        try:
            args = [int(p) for p in parts[1:]]
        except ValueError:
            raise SsdqError("bad number format %r (dfp:BITS, int:BITS, pow2:LO:HI, "
                            "pow2clip:BITS[:J], clip:J)" % spec) from None
        arity = {"dfp": (1,), "int": (1,), "pow2": (2,), "pow2clip": (1, 2), "clip": (1,)}
        if self.kind not in arity or len(args) not in arity[self.kind]:
            raise SsdqError("bad number format %r (dfp:BITS, int:BITS, pow2:LO:HI, "
                            "pow2clip:BITS[:J], clip:J)" % spec)
        if self.kind in ("dfp", "int", "pow2clip") and not 1 <= args[0] <= 32:
            raise SsdqError("bad number format %r: BITS must be 1..32" % spec)
        if self.kind == "int" and args[0] < 2:
            raise SsdqError("bad number format %r: int needs at least 2 bits" % spec)
        if self.kind == "pow2" and args[0] > args[1]:
            raise SsdqError("bad number format %r: LO must not exceed HI" % spec)
        self.args = args
        self.bits = args[0] if self.kind in ("dfp", "int", "pow2clip") else None

    def __repr__(self):
        return "NumberFormat(%r)" % self.spec

    @property
    def needs_threshold(self):
        """Whether activations need calibrated thresholds (everything but fixed clips/pow2)."""
        return self.kind in ("dfp", "int") or (self.kind == "pow2clip" and len(self.args) == 1)

    @property
    def fixed_clip(self):
        """A clip set by the spec (clip:J, pow2clip:BITS:J), not by calibration."""
        return self.kind == "clip" or (self.kind == "pow2clip" and len(self.args) == 2)

    def calibrated_clip(self):
        """The same width with its clip from calibration (pow2clip:BITS), or None for clip:J."""
        if self.kind == "pow2clip":
            return NumberFormat("pow2clip:%d" % self.bits, self.calibration)
        return None

    # -- weights -------------------------------------------------------------------------
    def weights(self, w, per_channel=None):
        """Fit to a weight array (output channels first) -> a grid with ``apply``."""
        w = np.asarray(w, np.float64)
        max_abs = float(np.abs(w).max()) if w.size else 0.0
        if self.kind == "dfp":
            il = int(math.ceil(math.log2(max_abs) + 1)) if max_abs > 0 else 1
            return self._dfp(il)
        if self.kind == "pow2":
            return Pow2Grid(self.args[0], self.args[1], {"lo": self.args[0], "hi": self.args[1]})
        if self.kind == "clip":
            t = 2.0 ** self.args[0]
            return Grid(None, -t, t, {"clip": t})
        if self.kind == "int":
            per_channel = True if per_channel is None else per_channel
            half = 2 ** (self.bits - 1)
            if per_channel and w.ndim > 1:
                ch_max = np.abs(w.reshape(len(w), -1)).max(axis=1)
                ch_max = np.where(ch_max > 0, ch_max, 1.0)
                return Grid((half - 0.5) / ch_max, -half, half - 1,
                            {"threshold": "per channel", "max_abs": max_abs})
            t = max_abs if max_abs > 0 else 1.0
            return Grid((half - 0.5) / t, -half, half - 1, {"threshold": t})
        # pow2clip
        t = max_abs if self.calibration == "naive" else _mse_weight_threshold(w, self.bits)
        return self._pow2clip(t, signed=True)

    def bias(self, b, weight_grid):
        """The bias grid. dfp: the weights' bit width with the bias's own integer length.
        Ristretto shares the weights' integer length, but after BatchNorm folding the biases
        are up to ten times the weights (conv0: max|w| 0.02, max|b| 0.31) and saturate, and 8-bit
        weights then lose most of the model's accuracy."""
        if self.kind == "dfp":
            return self.weights(b)
        if self.kind == "int":
            return None  # oneDNN's int32 bias: see simulate.bias_grid (needs the input scale)
        if self.kind == "pow2":
            return None  # DeepShift keeps biases in fixed point: a bias add is no multiply
        return self.weights(b, per_channel=False)

    # -- activations ---------------------------------------------------------------------
    def activations(self, lo=None, hi=None):
        """Fit to a calibrated activation range (min, max) -> a grid with ``symbol``."""
        if self.kind == "pow2":
            return Pow2Grid(self.args[0], self.args[1], {"lo": self.args[0], "hi": self.args[1]})
        if self.kind == "clip":
            t = 2.0 ** self.args[0]
            return Grid(None, -t, t, {"clip": t})
        if self.kind == "pow2clip" and len(self.args) == 2:
            return self._pow2clip(None, signed=lo is None or lo < 0)
        if lo is None or hi is None:
            raise SsdqError("format %s needs calibrated activation ranges" % self.spec)
        max_abs = max(abs(float(lo)), abs(float(hi)))
        unsigned = float(lo) >= 0
        if self.kind == "dfp":
            return self._dfp(ceil_log2(max_abs) if max_abs > 0 else 0)
        if self.kind == "int":
            t = max_abs if max_abs > 0 else 1.0
            if unsigned:
                top = 2 ** self.bits
                return Grid((top - 0.5) / t, 0, top - 1, {"threshold": t, "unsigned": True})
            half = 2 ** (self.bits - 1)
            return Grid((half - 0.5) / t, -half, half - 1, {"threshold": t, "unsigned": False})
        return self._pow2clip(max_abs, signed=True)

    # -- helpers ---------------------------------------------------------------------------
    def _dfp(self, il):
        fl = self.bits - il
        scale = 2.0 ** fl
        return Grid(scale, -2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1, {"il": il, "fl": fl})

    def _pow2clip(self, threshold, signed=True):
        if len(self.args) == 2:
            j = self.args[1]
        else:
            j = ceil_log2(threshold) if threshold and threshold > 0 else 0
        scale = 2.0 ** (self.bits - 1 - j)
        return Grid(scale, -2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1,
                    {"j": j, "clip": 2.0 ** j})


def _mse_weight_threshold(w, bits):
    """The clip minimising rounding plus clipping error over |w| (quantize's mse search)."""

    counts, edges = np.histogram(np.abs(w), bins=2048)
    centers = (edges[:-1] + edges[1:]) / 2
    return _mse_threshold(counts.astype(np.float64), centers, levels=2 ** (bits - 1) - 1)


def parse(spec, calibration="naive"):
    if spec in (None, "", "none", "fp32"):
        return None
    return NumberFormat(spec, calibration)
