"""Which network a SavedModel's weights are, by exact signature: the ordered sequence of its convolutions (kind,
kernel height and width, input and output filters, strides, dilations), read from the graph that runs, compared with
reference signatures derived from the networks' own definitions (TF-Slim's resnet_v1_50 built from the `tf-slim`
package, Keras' applications, the demo's own v1.5 builder). The references live in architectures.json beside this
module, with the package versions they came from; `python -m xeontl.experiment.references --write` makes them
again (tests/test_model.py runs it and fails on any drift). A signature no reference has exactly is "unknown", never
equal to anything. Which one is the paper's, and why: docs/paper-runs.md, "Which ResNet50 the paper ran".

Data format: a convolution's filter is [height, width, in, out] in NHWC and NCHW graphs alike, only the strides and
dilations attributes follow the data format; they are read at the format's spatial positions, so an NCHW export has
its NHWC twin's signature. Padding is not in the signature (TF-Slim pads explicitly, Keras with 'same': the same
network either way). Convolutions alone cannot tell ResNet v1 from v2 (pre-activation moves batch norms and ReLUs, not
convolutions), so each residual join (an Add of two computed feature maps) is an entry too: ["add", 1 when a ReLU
follows it (v1), else 0]. Order: an entry's depth is the number of convolutions on the longest path from the input to
it (a convolution's included); the sequence is sorted by (depth, entry), which does not depend on op names or on the
order a graph happens to list its nodes in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from xeontl.common.errors import UserError

DATA = Path(__file__).with_name("architectures.json")
UNKNOWN = "unknown"
# Graph ops that are convolutions, and what kind; any other op type with "Conv" in it makes a graph "unknown".
CONV_OPS = {"Conv2D": "conv", "_FusedConv2D": "conv", "DepthwiseConv2dNative": "depthwise",
            "_FusedDepthwiseConv2dNative": "depthwise"}
# The paper's backbone (docs/paper-runs.md, "Which ResNet50 the paper ran").
PAPER = "TF-Slim resnet_v1_50"


# ------------------------------------------------------------------------------------------------ the signature
def entry(kind: str, filter_shape, strides, dilations, data_format: str) -> list:
    """One convolution: [kind, kernel h, kernel w, in, out (x multiplier for a depthwise one), stride h, stride w,
    dilation h, dilation w], the strides and dilations read where DATA_FORMAT keeps the spatial axes."""
    spatial = {"NHWC": (1, 2), "NCHW": (2, 3)}.get(data_format.upper() if data_format else "NHWC")
    if spatial is None or len(filter_shape) != 4 or None in list(filter_shape):
        raise ValueError(f"convolution with data format {data_format!r}, filter {list(filter_shape)}")
    h, w = spatial
    strides, dilations = list(strides), list(dilations or [1, 1, 1, 1])
    return [kind, *(int(d) for d in filter_shape), int(strides[h]), int(strides[w]), int(dilations[h]),
            int(dilations[w])]


def ordered(convs: list[tuple[int, list]]) -> list[list]:
    """(depth, entry) pairs -> the signature: sorted by depth, then by the entry itself."""
    return [e for _, e in sorted(convs, key=lambda de: (de[0], de[1]))]


def sha256(signature: list[list]) -> str:
    return hashlib.sha256(json.dumps(signature, separators=(",", ":")).encode()).hexdigest()


def signature_of_graph(graph) -> tuple[list[list], list[str]]:
    """(signature, unsupported op types) of a frozen tf.Graph (every filter a constant of known shape, no function
    calls left). Ops are created after their inputs, so get_operations() is a topological order."""
    depth: dict[str, int] = {}
    convs, unsupported, joins = [], set(), []
    consumers: dict[str, list] = {}
    for op in graph.get_operations():
        for t in op.inputs:
            consumers.setdefault(t.op.name, []).append(op)
        d = max((depth.get(t.op.name, 0) for t in op.inputs), default=0)
        if op.type in CONV_OPS:
            d += 1
            fmt = op.get_attr("data_format").decode() if "data_format" in op.node_def.attr else "NHWC"
            dil = op.get_attr("dilations") if "dilations" in op.node_def.attr else None
            try:
                convs.append((d, entry(CONV_OPS[op.type], op.inputs[1].shape.as_list(), op.get_attr("strides"),
                                       dil, fmt)))
            except ValueError:
                unsupported.add(f"{op.type} ({fmt}, filter {op.inputs[1].shape})")
        elif op.type in ("Add", "AddV2") and len(op.inputs) == 2 and all(depth.get(t.op.name, 0) for t in op.inputs):
            joins.append((d, op))  # two computed feature maps (a batch norm's offset is a constant: depth 0)
        elif "conv" in op.type.lower() or op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            unsupported.add(op.type)
        depth[op.name] = d
    for d, op in joins:
        convs.append((d, ["add", int(_relu_after(op, consumers))]))
    return ordered(convs), sorted(unsupported)


def _relu_after(op, consumers) -> bool:
    """OP's output goes into a ReLU (through Identity ops): ResNet v1's join, not v2's (pre-activation)."""
    todo = list(consumers.get(op.name, []))
    while todo:
        c = todo.pop()
        if c.type in ("Relu", "Relu6"):
            return True
        if c.type == "Identity":
            todo += consumers.get(c.name, [])
    return False


def signature_of_function(concrete) -> tuple[list[list], list[str]]:
    """The signature of a concrete function: of its own graph where no op of it calls a function (a Keras model
    traced here: its variables' reads carry their shapes, and freezing ~25M weights into constants took 3.5 s), else
    frozen first (nested functions and control flow inlined, variables made constants: a SavedModel's restored
    function, a tf.cond); `calls_functions` says which."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if not calls_functions(concrete.graph):
        return signature_of_graph(concrete.graph)
    return signature_of_graph(convert_variables_to_constants_v2(concrete).graph)


def calls_functions(graph) -> bool:
    """Whether an op of GRAPH runs another function (PartitionedCall, If, While, Case...: an attribute naming one)."""
    return any(a.HasField("func") or len(a.list.func) for op in graph.get_operations()
               for a in op.node_def.attr.values())


# ------------------------------------------------------------------------------------------------ the references
def references(path: Path = DATA) -> dict:
    return json.loads(Path(path).read_text())


def identify(signature: list[list], unsupported: list[str] = (), refs: dict | None = None) -> dict:
    """What a weights record says of a signature: its reference name (or "unknown"), its sha256, whether it is the
    paper's; plus the convolution count and the stride-2 convolutions by kernel (descriptive only)."""
    refs = refs or references()
    digest = sha256(signature)
    name = UNKNOWN
    if not unsupported:
        name = next((a["name"] for a in refs["architectures"]
                     if a["signature_sha256"] == digest and a["signature"] == signature), UNKNOWN)
    strided: dict[str, int] = {}
    for e in signature:
        if e[0] != "add" and (e[5] > 1 or e[6] > 1):
            key = f"{e[1]}x{e[2]}" + (" depthwise" if e[0] == "depthwise" else "")
            strided[key] = strided.get(key, 0) + 1
    out = {"architecture": name, "architecture_sha256": digest, "architecture_is_paper": name == refs["paper"],
           "convolutions": sum(e[0] != "add" for e in signature), "stride2_convolutions": strided}
    if unsupported:
        out["unsupported_ops"] = list(unsupported)
    return out


# ------------------------------------------------------------------------------------------------ SavedModels
def load(path: Path):
    """A SavedModel as tensorflow_hub loads it (a TF1-Hub module: its meta graph without tags)."""
    import tensorflow as tf

    try:
        import tensorflow_hub as hub

        return hub.load(str(path))
    except ImportError:
        return tf.saved_model.load(str(path), tags=[] if (Path(path) / "tfhub_module.pb").is_file() else None)


def feature_function(loaded, size: int | None = None):
    """The concrete function hub.KerasLayer(path) calls, as hub chooses it: a TF1-Hub module's "default" signature,
    else the SavedModel's __call__ (a TF2 SavedModel; traced for [None, size, size, 3] when not saved for it).
    Anything else is refused in one line."""
    import tensorflow as tf

    if getattr(loaded, "_is_hub_module_v1", False):
        return loaded.signatures["default"]
    if not callable(loaded):
        names = sorted(getattr(loaded, "signatures", {}) or {})
        raise UserError(f"the SavedModel has no __call__ and is not in TF1-Hub format (tfhub_module.pb; signatures: "
                        f"{names or 'none'}): give a TF-Hub image feature-vector model")
    fn = loaded.__call__  # a restored object's tf.function, with the concrete functions it was saved with
    # hub.KerasLayer(trainable=False) calls it with training=False where it takes the argument: that variant first
    # (a training=True one updates batch-norm statistics: a graph with state, which does not freeze)
    saved = sorted(getattr(fn, "concrete_functions", None) or [],
                   key=lambda c: any(x is True for x in tf.nest.flatten(c.structured_input_signature)))
    for concrete in saved:
        specs = [s for s in tf.nest.flatten(concrete.structured_input_signature) if isinstance(s, tf.TensorSpec)]
        if specs and specs[0].shape.rank == 4 and (size is None or specs[0].shape[1] in (None, size)):
            return concrete
    return fn.get_concrete_function(tf.TensorSpec([None, size or 224, size or 224, 3], tf.float32))


def architecture_of(savedmodel_dir, loaded=None, size: int | None = None) -> dict:
    """{"name", "signature_sha256", "is_paper"} of a SavedModel directory, plus what a weights record keeps
    (`record`). LOADED: the object already loaded (hub.KerasLayer's resolved_object), which saves loading it again."""
    obj = loaded if loaded is not None else load(Path(savedmodel_dir))
    found = identify(*signature_of_function(feature_function(obj, size)))
    return {"name": found["architecture"], "signature_sha256": found["architecture_sha256"],
            "is_paper": found["architecture_is_paper"], "record": found}
