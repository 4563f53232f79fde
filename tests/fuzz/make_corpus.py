#!/usr/bin/env python3
"""Writes the seed corpus for safetensors_header_fuzz into corpus/safetensors_header/.

Seeds come in the fuzz target's two forms: a whole file (8-byte length, header, data) and a
framed one (header JSON followed by the data section's size as 4 little-endian bytes). Run from
this folder; the TinyStories seed needs ../../../shared/data.
"""
import json
import os
import struct

OUT = "corpus/safetensors_header"


def header_json(tensors, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        end = offset + count * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    return json.dumps(header, separators=(",", ":")).encode(), offset


def write(name, content):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(content)


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "two_tensors": ([("a", "F32", [2, 2]), ("b", "F16", [3])], {"format": "pt"}),
        "every_dtype": ([(d.lower(), d, [2]) for d in ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"]], None),
        "empty_and_scalar": ([("e", "F16", [0, 4]), ("s", "F32", [])], None),
        "gptq_layer": ([("l.qweight", "I32", [16, 64]), ("l.qzeros", "I32", [1, 8]), ("l.scales", "F16", [1, 64]),
                        ("l.g_idx", "I32", [128])], {"format": "pt", "quantizer": "qshard"}),
    }
    for name, (tensors, metadata) in cases.items():
        header, data_size = header_json(tensors, metadata)
        write(f"{name}.file", struct.pack("<Q", len(header)) + header + bytes(data_size))
        write(f"{name}.framed", header + struct.pack("<I", data_size))
    tinystories = "../../../shared/data/tinystories-656k/model.safetensors"
    with open(tinystories, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = f.read(length)
        data_size = os.path.getsize(tinystories) - 8 - length
    write("tinystories.framed", header + struct.pack("<I", data_size))


if __name__ == "__main__":
    main()
