"""Writes tiny.safetensors with only json, struct and numpy, independently of
the Go writer, so the Go reader is tested against a foreign file.

Values are defined by formulas that the Go test recomputes:
  "conv.weight_v" shape [3,2,2]: (arange(12) - 5.5) / 4
  "conv.bias"     shape [3]:     [1e-3, -2.0, 65504.0]
  "scale"         shape []:      0.5 (a 0-d tensor)
  "empty"         shape [0,4]:   no data
The header lists the tensors in a different order from the data (data order:
scale, conv.bias, empty, conv.weight_v) so the reader must use data_offsets.
Run: /usr/bin/python3 make_tiny.py  (from train/testdata)
"""
import json
import struct

import numpy as np

tensors = {
    "scale": np.array(0.5, dtype="<f4"),
    "conv.bias": np.array([1e-3, -2.0, 65504.0], dtype="<f4"),
    "empty": np.zeros((0, 4), dtype="<f4"),
    "conv.weight_v": ((np.arange(12, dtype=np.float64) - 5.5) / 4).astype("<f4").reshape(3, 2, 2),
}
entries = {}
blobs = []
off = 0
for name, a in tensors.items():
    b = a.tobytes()
    entries[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header = {"__metadata__": {"writer": "numpy"}}
for name in ["conv.weight_v", "conv.bias", "__metadata__", "empty", "scale"]:
    if name != "__metadata__":
        header[name] = entries[name]
hb = json.dumps(header).encode()
hb += b" " * ((8 - (8 + len(hb)) % 8) % 8)
with open("tiny.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hb)))
    f.write(hb)
    for b in blobs:
        f.write(b)
