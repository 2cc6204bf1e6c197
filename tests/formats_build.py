"""Files of every container dedup/formats splits, written by the real libraries (torch.save, the
gguf package, onnx, numpy), for the format tests, the fuzz seeds and bench/hublike.py."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def torch_bin(tensors: dict[str, np.ndarray]) -> bytes:
    import torch
    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, buf)
    return buf.getvalue()


def gguf_file(path: Path, tensors: dict[str, np.ndarray], quantize: set[str] = frozenset()) -> bytes:
    """F32/F16 arrays as such; names in ``quantize`` as Q8_0 blocks (gguf.quants)."""
    import gguf
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_string("general.name", "test model")
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(50)])
    for name, arr in tensors.items():
        if name in quantize:
            q = gguf.quants.quantize(arr.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def onnx_file(path: Path, tensors: dict[str, np.ndarray], external: bool = False) -> bytes:
    import onnx
    from onnx import helper, numpy_helper
    inits = [numpy_helper.from_array(v, k) for k, v in tensors.items()]
    first = next(iter(tensors))
    node = helper.make_node("Identity", [first], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              initializer=inits)
    model = helper.make_model(graph)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data",
                        size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path.read_bytes()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npz_bytes(tensors: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **tensors)
    return buf.getvalue()
