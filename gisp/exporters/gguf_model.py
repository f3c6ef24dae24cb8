"""A checkpoint folder as a GGUF file for llama.cpp's `deci` architecture, written tensor by tensor.

The deci architecture (the one Llama-3.1-Nemotron-51B uses) reads head_count, head_count_kv and
feed_forward_length as per-layer arrays and sizes every layer's tensors and KV cache by them; the
plain `llama` architecture parses such arrays but builds every layer with layer 0's sizes.
Head size and rotary width are written explicitly (llama.cpp would derive them from layer 0).
q/k rows are permuted per head from Hugging Face's rotate-half layout to llama.cpp's
consecutive-pair rotary, with each layer's own head counts. A tied LM head writes no `output`
tensor (llama.cpp reuses token_embd). Zero-weight units fill the layouts deci cannot express
(see `gguf_layers`). Tensor types follow llama.cpp's converter: 1-D tensors and norms in F32,
the rest in the chosen type, F16 where a row does not split into Q8_0 blocks.

Tensors are planned from the safetensors header, then read, converted and written one at a time:
the model is never in memory, let alone twice.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gisp.exporters.base import ExportError
from gisp.exporters.checkpoint import CheckpointLayout, TensorReader
from gisp.exporters.gguf_layers import WrittenLayer, padding_cost, plan_layers
from gisp.exporters.gguf_vocab import add_tokenizer

log = logging.getLogger("gisp")

ARCH = "deci"
DTYPE_NAMES = ("f32", "f16", "bf16", "q8_0")


@dataclass
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # row-major ([out, in]), as numpy and torch hold it
    qtype: Any  # gguf.GGMLQuantizationType
    produce: Callable[[], torch.Tensor]


@dataclass
class GgufReport:
    path: Path
    bytes: int
    dtype: str
    tokenizer: str
    layers: list[WrittenLayer]
    heads_per_group: int
    padding: dict[str, int]
    tensor_types: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "bytes": self.bytes,
            "dtype": self.dtype,
            "tokenizer": self.tokenizer,
            "head_count": [layer.groups * self.heads_per_group for layer in self.layers],
            "head_count_kv": [layer.groups for layer in self.layers],
            "feed_forward_length": [layer.channels for layer in self.layers],
            "padded_layers": {layer.index: layer.reason for layer in self.layers if layer.reason},
            **self.padding,
            "tensor_types": self.tensor_types,
        }


def _gguf():
    try:
        import gguf
    except ImportError:
        raise ExportError("GGUF export needs the gguf package: pip install 'gisp-service[gguf]'") from None
    return gguf


def file_types() -> dict[str, tuple[Any, Any]]:
    """dtype name -> (general.file_type, the tensor type of the matrices)."""
    gguf = _gguf()
    q, f = gguf.GGMLQuantizationType, gguf.LlamaFileType
    return {
        "f32": (f.ALL_F32, q.F32),
        "f16": (f.MOSTLY_F16, q.F16),
        "bf16": (f.MOSTLY_BF16, q.BF16),
        "q8_0": (f.MOSTLY_Q8_0, q.Q8_0),
    }


def rotary_pairs(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Rows of q_proj/k_proj (or their bias) from HF's rotate-half order, where a head's rotary pairs
    are (i, i + head_dim/2), to llama.cpp's, where they are (2i, 2i + 1); per head."""
    heads = t.shape[0] // head_dim
    return t.reshape(heads, 2, head_dim // 2, *t.shape[1:]).transpose(1, 2).reshape(t.shape)


def _append_zero_rows(t: torch.Tensor | None, extra: int, tail: tuple[int, ...]) -> torch.Tensor:
    """`t` with `extra` zero rows of shape `tail` after it; `t` None (nothing kept) gives only the zeros."""
    zeros = torch.zeros((extra, *tail))
    if t is None:
        return zeros
    return torch.cat([t, zeros]) if extra else t


class _Planner:
    """Decides every tensor's name, shape, type and how to produce it, from the header only."""

    def __init__(self, layout: CheckpointLayout, reader: TensorReader, matrix_type: Any) -> None:
        self.layout, self.reader, self.matrix_type = layout, reader, matrix_type
        self.gguf = _gguf()
        self.names = self.gguf.get_tensor_name_map(self.gguf.MODEL_ARCH.DECI, layout.num_layers)
        self.used: set[str] = set()
        self.tensors: list[PlannedTensor] = []

    def tensor_type(self, name: str, shape: tuple[int, ...]) -> Any:
        q = self.gguf.GGMLQuantizationType
        if len(shape) <= 1 or name.endswith("_norm.weight"):
            return q.F32
        block = self.gguf.GGML_QUANT_SIZES[self.matrix_type][0]
        return self.matrix_type if shape[-1] % block == 0 else q.F16

    def add(self, name: str, shape: tuple[int, ...], produce: Callable[[], torch.Tensor]) -> None:
        self.tensors.append(PlannedTensor(name, shape, self.tensor_type(name, shape), produce))

    def gguf_name(self, hf_name: str) -> str:
        base, _, suffix = hf_name.rpartition(".")
        mapped = self.names.get_name(base)
        if mapped is None:
            raise ExportError(f"tensor {hf_name} has no place in llama.cpp's deci layout", field="checkpoint")
        return f"{mapped}.{suffix}"

    def copy(self, hf_name: str, gguf_name: str | None = None) -> None:
        self.used.add(hf_name)
        shape = self.reader.shape(hf_name)
        self.add(gguf_name or self.gguf_name(hf_name), shape, lambda: self.reader.get(hf_name))

    def plan(self, layers: list[WrittenLayer]) -> list[PlannedTensor]:
        layout = self.layout
        self.copy("model.embed_tokens.weight")
        rope_freqs = rope_frequency_factors(layout)
        if rope_freqs is not None:
            self.add(
                f"{self.gguf.TENSOR_NAMES[self.gguf.MODEL_TENSOR.ROPE_FREQS]}.weight",
                tuple(rope_freqs.shape),
                lambda: rope_freqs,
            )
        for layer in layers:
            self.plan_attention(layer)
            self.plan_mlp(layer)
        self.copy("model.norm.weight")
        if "lm_head.weight" in self.reader:
            if layout.tied_embeddings:
                self.used.add("lm_head.weight")  # llama.cpp reuses token_embd for a tied head
            else:
                self.copy("lm_head.weight")
        elif not layout.tied_embeddings:
            raise ExportError(f"{layout.folder}: untied model without lm_head.weight", field="checkpoint")
        unused = sorted(set(self.reader.names()) - self.used)
        if unused:
            names = ", ".join(unused[:5])
            raise ExportError(f"llama.cpp's deci graph has no place for tensor(s) {names}", field="checkpoint")
        return self.tensors

    def rows(self, hf_name: str, kept: int, extra: int, tail: tuple[int, ...], transform=None, columns=False) -> None:
        """Plan `hf_name` with `extra` zero units appended: rows, or with `columns` (o_proj, down_proj)
        columns. `kept` 0 means the checkpoint keeps no unit here (its tensor may be absent)."""
        self.used.add(hf_name)
        shape = (kept + extra, *tail)

        def produce() -> torch.Tensor:
            t = self.reader.get(hf_name) if kept else None
            if t is not None and columns:
                t = t.T
            if t is not None and transform is not None:
                t = transform(t)
            out = _append_zero_rows(t, extra, tail)
            return out.T.contiguous() if columns else out.contiguous()

        gguf_name = self.gguf_name(hf_name)
        self.add(gguf_name, tuple(reversed(shape)) if columns else shape, produce)

    def plan_attention(self, layer: WrittenLayer) -> None:
        layout, p = self.layout, f"model.layers.{layer.index}.self_attn."
        hd, hidden = layout.head_dim, layout.hidden_size
        q_rows = layout.heads_per_group * hd
        self.used.update(n for n in self.reader.names() if n.startswith(p) and 0 in self.reader.shape(n))
        if layer.groups == 0:  # attention-free: llama.cpp reads neither the norm nor projections
            self.used.add(f"model.layers.{layer.index}.input_layernorm.weight")
            return
        self.copy(f"model.layers.{layer.index}.input_layernorm.weight")
        kept, extra = layer.kept_groups, int(layer.zero_group)
        rotary = lambda t: rotary_pairs(t, hd)  # noqa: E731
        for proj, unit, transform in (("q", q_rows, rotary), ("k", hd, rotary), ("v", hd, None)):
            self.rows(f"{p}{proj}_proj.weight", kept * unit, extra * unit, (hidden,), transform)
            if f"{p}{proj}_proj.bias" in self.reader and kept:
                self.rows(f"{p}{proj}_proj.bias", kept * unit, extra * unit, (), transform)
        self.rows(f"{p}o_proj.weight", kept * q_rows, extra * q_rows, (hidden,), columns=True)
        for bias in (f"{p}o_proj.bias", f"{p}o_bias"):
            if bias in self.reader:
                self.copy(bias, f"blk.{layer.index}.attn_output.bias")

    def plan_mlp(self, layer: WrittenLayer) -> None:
        p, hidden = f"model.layers.{layer.index}.", self.layout.hidden_size
        kept, extra = layer.kept_channels, layer.zero_channels
        self.copy(p + "post_attention_layernorm.weight")
        for proj in ("gate", "up"):
            self.rows(f"{p}mlp.{proj}_proj.weight", kept, extra, (hidden,))
            if f"{p}mlp.{proj}_proj.bias" in self.reader:
                self.rows(f"{p}mlp.{proj}_proj.bias", kept, extra, ())
        self.rows(f"{p}mlp.down_proj.weight", kept, extra, (hidden,), columns=True)
        if f"{p}mlp.down_proj.bias" in self.reader:
            self.copy(f"{p}mlp.down_proj.bias")


def rope_frequency_factors(layout: CheckpointLayout) -> torch.Tensor | None:
    """llama.cpp's rope_freqs tensor (each rotary frequency is divided by its factor) for rope
    types that only rescale frequencies; None for plain rotary. Linear scaling is a key instead."""
    kind = layout.rope.get("rope_type", "default")
    if kind in ("default", "linear"):
        return None
    if kind != "llama3":
        raise ExportError(f"rope type {kind!r} is not exported to GGUF (supported: default, linear, llama3)")
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(
        hidden_size=layout.hidden_size,
        num_attention_heads=layout.num_heads,
        head_dim=layout.head_dim,
        max_position_embeddings=layout.max_positions,
        rope_parameters=dict(layout.rope),
    )
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    theta = float(layout.rope["rope_theta"])
    plain = 1.0 / theta ** (torch.arange(0, layout.head_dim, 2, dtype=torch.float32) / layout.head_dim)
    return (plain / scaled.float()).float()


def _encode(data: torch.Tensor, qtype: Any) -> np.ndarray:
    gguf = _gguf()
    array = data.detach().to(torch.float32).contiguous().numpy()
    if qtype == gguf.GGMLQuantizationType.F32:
        return array
    if qtype == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16)
    return gguf.quants.quantize(array, qtype)


def _add_hparams(writer: Any, layout: CheckpointLayout, layers: list[WrittenLayer], file_type: Any) -> None:
    gguf = _gguf()
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(layout.name)
    gisp = layout.config.get("gisp") or {}
    if gisp.get("base_model"):
        writer.add_string("gisp.base_model", str(gisp["base_model"]))
        writer.add_float32("gisp.target_sparsity", float(gisp.get("target_sparsity", 0.0)))
    context = layout.max_positions
    if layout.sliding_window and layout.sliding_window < context:
        log.warning("deci has no sliding-window attention: context_length set to the window, %d", layout.sliding_window)
        context = layout.sliding_window
    writer.add_block_count(layout.num_layers)
    writer.add_context_length(context)
    writer.add_embedding_length(layout.hidden_size)
    writer.add_feed_forward_length([layer.channels for layer in layers])
    writer.add_head_count([layer.groups * layout.heads_per_group for layer in layers])
    writer.add_head_count_kv([layer.groups for layer in layers])
    writer.add_key_length(layout.head_dim)
    writer.add_value_length(layout.head_dim)
    writer.add_rope_dimension_count(layout.head_dim)
    writer.add_rope_freq_base(float(layout.rope.get("rope_theta", 10000.0)))
    if layout.rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(layout.rope["factor"]))
    writer.add_layer_norm_rms_eps(layout.rms_norm_eps)
    writer.add_vocab_size(layout.vocab_size)
    writer.add_file_type(int(file_type))
    if file_type == gguf.LlamaFileType.MOSTLY_Q8_0:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _o_bias_layers(layout: CheckpointLayout, reader: TensorReader) -> set[int]:
    names = set(reader.names())
    return {
        i
        for i in range(layout.num_layers)
        if {f"model.layers.{i}.self_attn.o_proj.bias", f"model.layers.{i}.self_attn.o_bias"} & names
    }


def write_gguf(
    folder: str | Path, out: str | Path, dtype: str = "f16", tokenizer_pre: str | None = None, align: int = 32
) -> GgufReport:
    """Write checkpoint folder `folder` as a GGUF file at `out` (atomically), every MLP width
    rounded up to a multiple of `align` with zero channels (see `gguf_layers`)."""
    gguf = _gguf()
    types = file_types()
    if dtype not in types:
        raise ExportError(f"dtype must be one of {', '.join(types)}, not {dtype!r}", field="dtype")
    if align < 1:
        raise ExportError(f"align must be at least 1, not {align}", field="align")
    file_type, matrix_type = types[dtype]
    layout = CheckpointLayout.read(folder)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with TensorReader(layout.folder) as reader:
            layers = plan_layers(layout, _o_bias_layers(layout, reader), align)
            planned = _Planner(layout, reader, matrix_type).plan(layers)
            writer = gguf.GGUFWriter(None, ARCH)
            _add_hparams(writer, layout, layers, file_type)
            tokenizer = add_tokenizer(writer, layout.folder, layout.vocab_size, tokenizer_pre)
            counts: dict[str, int] = {}
            for tensor in planned:
                byte_shape = gguf.quant_shape_to_byte_shape(tensor.shape, tensor.qtype)
                item = np.dtype(np.float32 if tensor.qtype == gguf.GGMLQuantizationType.F32 else np.float16)
                raw = tensor.qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
                nbytes = math.prod(byte_shape) if raw else math.prod(tensor.shape) * item.itemsize
                writer.add_tensor_info(
                    tensor.name,
                    byte_shape if raw else tensor.shape,
                    np.dtype(np.uint8) if raw else item,
                    nbytes,
                    raw_dtype=tensor.qtype if raw else None,
                )
                counts[tensor.qtype.name] = counts.get(tensor.qtype.name, 0) + 1
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for tensor in planned:
                data = tensor.produce()
                if tuple(data.shape) != tensor.shape:
                    raise ExportError(f"{tensor.name}: planned {tensor.shape}, got {tuple(data.shape)}")
                writer.write_tensor_data(_encode(data, tensor.qtype))
            writer.close()
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return GgufReport(
        out, out.stat().st_size, dtype, tokenizer, layers, layout.heads_per_group, padding_cost(layout, layers), counts
    )
