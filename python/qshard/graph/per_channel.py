"""Per-channel weight codes for tfjs graph models, in a form stock tfjs loads.

The tfjs manifest gives each weight one `min` and `scale`. A per-channel weight is stored as integer
codes u whose per-tensor decode is exact: `scale` 1 and `min` -z, so tfjs computes
Math.fround(u * 1 - z), the integer u - z. z is one integer zero point for the whole tensor, chosen
so that the channels use as many of the qmax + 1 levels as one zero point allows (channel c's step
is max(-min_c / z, max_c / (qmax - z)); z minimizes the sum of squared steps relative to each
channel's range); zeros stay exact, and the weight is the codes times one scale per channel. Or (`channel_zero_points`) each channel has its own integer zero point
zp[c] (a Sub(codes, zp) op at predict time, for channels skewed in different directions).
The per-channel scale is applied by the graph:
- "weight" placement: the weight's Const node becomes a node of the same name computing
  Mul(codes, scale) or Mul(Sub(codes, zp), scale). tfjs recomputes it on every predict; the scale
  vector is shaped as the weight's trailing axes so tfjs's cpu backend multiplies in a flat loop.
- "output" placement: the layer computes with the codes (bias b/s) and a Mul by the scale follows it.
- "absorbed" placement: the scale is divided out of the layer (its bias becomes b/s) and multiplied
  into the input channels of every layer reading its output (see channels.Move): the weight node
  stays a Const of codes (or Sub(codes, zp)), and no op is added at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .channels import HOMOGENEOUS_FUSED, GraphView, Layer, Move

QMAX = {"uint8": 255, "uint16": 65535}
ZERO_POINT_CANDIDATES = 1025  # evenly spread over [0, qmax]: every uint8 zero point, a fine grid for uint16
CODE_DTYPE = {"uint8": np.uint8, "uint16": np.uint16}


@dataclass(frozen=True)
class Choice:
    """How one weight is quantized per channel: uint8 or uint16 codes, and whether each channel has
    its own zero point (else one for the tensor)."""

    dtype: str = "uint8"
    channel_zero_points: bool = False


@dataclass(frozen=True)
class ChannelCodes:
    """A weight as integer codes: value = (code - offset - zero_point[c]) * scale[c] in float32.
    `scale` and `zero_point` have the layer's per-output-channel broadcast shape."""

    dtype: str
    codes: np.ndarray
    offset: int
    scale: np.ndarray
    zero_point: Optional[np.ndarray] = None

    def decoded(self) -> np.ndarray:
        """The codes as tfjs decodes them (exact integers in float32)."""
        return (self.codes.astype(np.float64) - self.offset).astype(np.float32)

    def centered(self) -> np.ndarray:
        """decoded - zero_point, as the graph computes it (exact)."""
        d = self.decoded()
        return d if self.zero_point is None else d - self.zero_point

    def values(self) -> np.ndarray:
        """The weight's values as the rewritten graph computes them (float32)."""
        return self.centered() * self.scale


def _floored(bound: np.ndarray) -> np.ndarray:
    """Channel ranges, none below 2^-24 of the largest: a channel that small is noise (a dead
    filter), and its scale must not make b / scale overflow where a scale moves into a bias."""
    return np.maximum(bound, bound.max(initial=0.0) * 2.0 ** -24)


def shared_zero_point(lo: np.ndarray, hi: np.ndarray, qmax: int) -> int:
    """The integer zero point z for channels spanning [lo_c <= 0, hi_c >= 0] that minimizes the sum
    over channels of (step_c / span_c)^2, step_c = max(-lo_c / z, hi_c / (qmax - z)): each channel's
    error relative to its own range (a step that cannot hold its channel is inf)."""
    z = np.unique(np.rint(np.linspace(0, qmax, min(qmax + 1, ZERO_POINT_CANDIDATES))))[None, :]
    span = (hi - lo)[:, None]
    neg, pos = -lo[:, None] / np.where(span > 0, span, 1.0), hi[:, None] / np.where(span > 0, span, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.maximum(np.where(neg > 0, neg / z, 0.0), np.where(pos > 0, pos / (qmax - z), 0.0))
    return int(z[0, np.argmin((step ** 2).sum(axis=0))])


def quantize_channels(layer: Layer, w: np.ndarray, choice: Choice) -> ChannelCodes:
    """Per-output-channel codes of a float32 weight of `layer`."""
    w = np.asarray(w, np.float32)
    rows = layer.rows(w).astype(np.float64)
    shape = layer.out_shape(w.shape)
    if rows.shape[1] == 0:
        rows = np.zeros((rows.shape[0], 1))
    if not np.isfinite(rows).all():
        raise ValueError("holds NaN or Inf")
    qmax = QMAX[choice.dtype]
    lo = np.minimum(rows.min(axis=1), 0.0)
    hi = np.maximum(rows.max(axis=1), 0.0)
    if choice.channel_zero_points:
        span = _floored(hi - lo)
        scale = np.where(span > 0, span / qmax, 1.0).astype(np.float32)
        zero = np.clip(np.rint(-lo / scale.astype(np.float64)), 0, qmax).reshape(shape)
        q = np.clip(np.rint(w / scale.reshape(shape).astype(np.float64)) + zero, 0, qmax)
        return ChannelCodes(choice.dtype, q.astype(CODE_DTYPE[choice.dtype]), 0, scale.reshape(shape),
                            zero.astype(np.float32))
    z = shared_zero_point(lo, hi, qmax)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.maximum(np.where(lo < 0, -lo / z, 0.0), np.where(hi > 0, hi / (qmax - z), 0.0))
    step = _floored(step)
    scale = np.where(step > 0, step, 1.0).astype(np.float32).reshape(shape)
    q = np.clip(np.rint(w / scale.astype(np.float64)) + z, 0, qmax)
    return ChannelCodes(choice.dtype, q.astype(CODE_DTYPE[choice.dtype]), z, scale)


@dataclass
class LayerRewrite:
    """What happened to one per-channel weight."""

    layer: Layer
    codes: ChannelCodes
    placement: str                      # "absorbed", "output" (Mul on the layer's output) or "weight"
    readers: Tuple[str, ...] = ()       # weights that took the scale on their input channels
    divided: Tuple[str, ...] = ()       # the bias and constants added on the way, now b / scale

    output_elements: Optional[int] = None  # of the layer's output, for "output"

    @property
    def ops_added(self) -> int:
        """Ops tfjs runs on every predict for this weight."""
        return (self.codes.zero_point is not None) + (self.placement != "absorbed")

    @property
    def elements(self) -> int:
        """Elements those ops compute on every predict."""
        weight = self.codes.codes.size * (self.codes.zero_point is not None)
        if self.placement == "output":
            return weight + int(self.output_elements or 0)
        return weight + self.codes.codes.size * (self.placement == "weight")


def _tiled(vector: np.ndarray, times: int) -> np.ndarray:
    return np.tile(vector.reshape(-1), times)


def apply_move(move: Move, values: Dict[str, np.ndarray], t: np.ndarray, scale_producer: bool = True,
               in_factors: Optional[Dict[str, np.ndarray]] = None) -> None:
    """Divide the factor t (per output channel) out of the move's layer and multiply it into the
    layers reading it, in `values` (weights by name): the graph computes the same function.
    in_factors (reader weight -> per-input-channel factor) records that each reader's input is now
    its source-model input divided by the factor."""
    layer = move.layer
    t = np.asarray(t, np.float64).reshape(-1)
    if scale_producer:
        w = values[layer.weight]
        values[layer.weight] = layer.scale_out(w.astype(np.float64), 1.0 / t).astype(np.float32)
    if layer.bias is not None:
        values[layer.bias] = (values[layer.bias].astype(np.float64) / t.reshape(values[layer.bias].shape)).astype(np.float32)
    for name, times in move.addends:
        b = values[name]
        values[name] = (b.reshape(-1).astype(np.float64) / _tiled(t, times)).reshape(b.shape).astype(np.float32)
    for reader, times in move.readers:
        w = values[reader.weight].astype(np.float64)
        values[reader.weight] = reader.scale_in(w, _tiled(t, times)).astype(np.float32)
        if in_factors is not None:
            in_factors[reader.weight] = in_factors.get(reader.weight, 1.0) * _tiled(t, times)


def quantization_error(layer: Layer, w: np.ndarray, choice: Choice, weight: Optional[np.ndarray] = None) -> float:
    """Squared error of quantizing w per channel, each input channel's share times weight[c]."""
    w = np.asarray(w, np.float32)
    err = (quantize_channels(layer, w, choice).values().astype(np.float64) - w) ** 2
    return float(np.sum(layer.in_rows(err).sum(axis=1) * (1.0 if weight is None else weight)))


def absorbable(move: Move, values: Dict[str, np.ndarray], scale: np.ndarray, reader_choice,
               max_growth: float) -> bool:
    """Whether every reader may take the scale: its weight is float (reader_choice "float") or per
    channel (a Choice) and its quantization error, as the output sees it, grows at most max_growth
    times. Input channel c's activation is taken to be proportional to scale[c] (its producer's
    range): the error of the reader without the scale counts scale[c]^2 times on channel c, with it
    once (the activation reaching the reader is then divided by scale[c])."""
    for reader, times in move.readers:
        choice = reader_choice(reader.weight)
        if choice == "float":
            continue
        if not isinstance(choice, Choice):
            return False
        w = values[reader.weight]
        t = _tiled(np.asarray(scale, np.float64), times)
        scaled = reader.scale_in(w.astype(np.float64), t).astype(np.float32)
        try:
            if quantization_error(reader, scaled, choice) > max_growth * quantization_error(reader, w, choice, t ** 2):
                return False
        except ValueError:  # NaN / Inf in the reader: it will not be per channel
            return False
    return True


def rewrite_layers(view: GraphView, values: Dict[str, np.ndarray], choices: Dict[str, Choice], reader_choice,
                   absorb: bool = True, refused: Optional[List[Tuple[str, str]]] = None,
                   max_growth: float = 2.0, output_elements=None, means: Optional[Dict[str, np.ndarray]] = None,
                   in_factors: Optional[Dict[str, np.ndarray]] = None, rounding=None) -> List[LayerRewrite]:
    """Quantize the chosen weights per channel, in graph order, moving each scale into the layers
    that read the output where the graph allows it and absorbable() says the readers lose little
    (reader_choice(weight name) -> Choice, "float" or None: what the reader's weight becomes);
    else onto the layer's output where that is fewer elements than the weight (output_elements(node
    name) -> int or None) and the fused activation lets it through; else onto the weight.
    Updates `values` in place: chosen weights become their codes' centred values (absorbed) or
    dequantized values (weight side), and readers, biases and addends change.
    Weights holding NaN or Inf are left alone and appended to `refused` with the reason.
    With `means` (weight -> mean source-model input per channel), each layer's bias absorbs the mean
    output shift its quantization causes (bias correction; in_factors as apply_move keeps it).
    `rounding(layer, w, codes, in_factor) -> codes` may replace round-to-nearest codes (same grid)."""
    done = []
    in_factors = {} if in_factors is None else in_factors
    for name in view.topological():
        layer = view.layer(name)
        if layer is None or layer.weight not in choices or not view.single_use(layer.weight):
            continue
        try:
            codes = quantize_channels(layer, values[layer.weight], choices[layer.weight])
        except ValueError as error:
            if refused is not None:
                refused.append((layer.weight, str(error)))
            continue
        if rounding is not None:
            codes = rounding(layer, values[layer.weight], codes, in_factors.get(layer.weight))
        bias = bias_of(view, layer, values) if means is not None and layer.weight in means else None
        if bias is not None:
            correct_bias(layer, bias, values, codes, means[layer.weight] / in_factors.get(layer.weight, 1.0))
        move = view.move(layer, values) if absorb else None
        if move is not None and absorbable(move, values, codes.scale, reader_choice, max_growth):
            values[layer.weight] = codes.centered()
            apply_move(move, values, codes.scale, scale_producer=False, in_factors=in_factors)
            divided = ((layer.bias,) if layer.bias else ()) + tuple(n for n, _ in move.addends)
            done.append(LayerRewrite(layer, codes, "absorbed", tuple(r.weight for r, _ in move.readers), divided))
        elif (layer.bias is None or view.single_use(layer.bias)) and _output_side(layer, codes, absorb, output_elements):
            values[layer.weight] = codes.centered()
            apply_move(Move(layer), values, codes.scale, scale_producer=False)
            done.append(LayerRewrite(layer, codes, "output", divided=(layer.bias,) if layer.bias else (),
                                     output_elements=output_elements(layer.node)))
        else:
            values[layer.weight] = codes.values()
            done.append(LayerRewrite(layer, codes, "weight"))
    return done


def bias_of(view: GraphView, layer: Layer, values: Dict[str, np.ndarray]) -> Optional[str]:
    """The constant added to the layer's output per channel and to nothing else: its fused bias, or
    the Const of the BiasAdd / Add that alone reads an unfused layer; None when there is none."""
    if layer.bias is not None:
        return layer.bias if view.single_use(layer.bias) else None
    users = view.consumers.get(layer.node, [])
    if layer.fused or len(users) != 1 or layer.node in view.outputs:
        return None
    user, index = users[0]
    node = view.nodes[user]
    if node["op"] not in ("BiasAdd", "Add", "AddV2"):
        return None
    const = view.const_input(node, index)
    channels = layer.out_channels(values[layer.weight].shape)
    if const is None or not view.single_use(const) or const not in values or values[const].size != channels:
        return None
    return const if values[const].shape[-1] == channels else None


def correct_bias(layer: Layer, bias: str, values: Dict[str, np.ndarray], codes: ChannelCodes,
                 mean_in: np.ndarray) -> None:
    """Subtract from the bias the mean output shift quantizing the layer's weight to `codes` causes."""
    shift = layer.output_shift(codes.values().astype(np.float64) - values[layer.weight], mean_in)
    b = values[bias]
    if shift.size == b.size and np.isfinite(shift).all():
        values[bias] = (b.astype(np.float64) - shift.reshape(b.shape)).astype(np.float32)


def _output_side(layer: Layer, codes: ChannelCodes, allowed: bool, output_elements) -> bool:
    """A Mul on the output is cheaper than one on the weight, and the fused ops let it through."""
    if not allowed or output_elements is None or not set(layer.fused) <= HOMOGENEOUS_FUSED:
        return False
    n = output_elements(layer.node)
    return n is not None and n < codes.codes.size


def _shape_attr(shape) -> dict:
    return {"dim": [{"size": str(int(d))} for d in shape]} if len(shape) else {}


def const_node(name: str, shape, dtype: str = "DT_FLOAT") -> dict:
    """A Const node in the tfjs JSON form; its value comes from the manifest weight of that name."""
    return {"name": name, "op": "Const",
            "attr": {"value": {"tensor": {"dtype": dtype, "tensorShape": _shape_attr(shape)}}, "dtype": {"type": dtype}}}


def binary_node(name: str, op: str, a: str, b: str) -> dict:
    """A float32 binary op node (Mul, Sub)."""
    return {"name": name, "op": op, "input": [a, b], "attr": {"T": {"type": "DT_FLOAT"}}}


def _fresh(base: str, suffix: str, taken) -> str:
    """A node name not yet in `taken` (which it joins)."""
    candidate, i = f"{base}/{suffix}", 1
    while candidate in taken:
        candidate, i = f"{base}/{suffix}_{i}", i + 1
    taken.add(candidate)
    return candidate


def weight_nodes(rewrite: LayerRewrite, taken) -> Tuple[List[dict], Dict[str, np.ndarray], Dict[str, ChannelCodes]]:
    """The nodes that replace a per-channel weight's Const (the last one carries its name), the
    float32 constants they add (name -> value) and the code tensors (name -> codes)."""
    name = rewrite.layer.weight
    codes = rewrite.codes
    scaled_elsewhere = rewrite.placement != "weight"
    if scaled_elsewhere and codes.zero_point is None:
        return [], {}, {name: codes}  # the Const stays; its stored codes decode to the weight

    def fresh(suffix: str) -> str:
        return _fresh(name, suffix, taken)

    shape = codes.codes.shape
    code_name = fresh("pc_codes")
    nodes = [const_node(code_name, shape)]
    consts: Dict[str, np.ndarray] = {}
    current = code_name
    if codes.zero_point is not None:
        zp_name = fresh("pc_zero_point")
        nodes.append(const_node(zp_name, codes.zero_point.shape))
        consts[zp_name] = codes.zero_point
        centred = name if scaled_elsewhere else fresh("pc_centered")
        nodes.append(binary_node(centred, "Sub", current, zp_name))
        current = centred
    if rewrite.placement == "weight":
        scale_name = fresh("pc_scale")
        nodes.append(const_node(scale_name, codes.scale.shape))
        consts[scale_name] = codes.scale
        nodes.append(binary_node(name, "Mul", current, scale_name))
    return nodes, consts, {code_name: codes}


def output_nodes(rewrite: LayerRewrite, node: dict, taken) -> List[dict]:
    """The layer renamed, then a Mul by its scale named as the layer was (consumers, control edges
    and signature outputs now read the scaled value)."""
    name = node["name"]
    inner = _fresh(name, "pc_unscaled", taken)
    scale = _fresh(rewrite.layer.weight, "pc_scale", taken)
    return [dict(node, name=inner), const_node(scale, (rewrite.codes.scale.size,)), binary_node(name, "Mul", inner, scale)]


@dataclass
class RewrittenGraph:
    """The new node list and the weights it needs beyond the source's: float32 constants (scales,
    zero points) and code tensors by name, each under the source weight it belongs to."""

    nodes: List[dict]
    consts: Dict[str, Dict[str, np.ndarray]]
    codes: Dict[str, Dict[str, ChannelCodes]]


def rewrite_nodes(nodes: List[dict], rewrites: List[LayerRewrite]) -> RewrittenGraph:
    """The node list with each rewritten weight's Const replaced in place and each output-side
    layer followed by its Mul."""
    by_weight = {r.layer.weight: r for r in rewrites}
    by_layer = {r.layer.node: r for r in rewrites if r.placement == "output"}
    taken = {n["name"] for n in nodes}
    out = RewrittenGraph([], {r.layer.weight: {} for r in rewrites}, {r.layer.weight: {} for r in rewrites})
    for node in nodes:
        rewrite = by_weight.get(node["name"])
        if node["name"] in by_layer:
            rewrite = by_layer[node["name"]]
            new = output_nodes(rewrite, node, taken)
            out.consts[rewrite.layer.weight][new[1]["name"]] = rewrite.codes.scale.reshape(-1)
            out.nodes.extend(new)
            continue
        if rewrite is None or node["op"] != "Const":
            out.nodes.append(node)
            continue
        new, added, coded = weight_nodes(rewrite, taken)
        out.nodes.extend(new or [node])
        out.consts[rewrite.layer.weight].update(added)
        out.codes[rewrite.layer.weight].update(coded)
    return out
