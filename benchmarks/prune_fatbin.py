"""Zero the CUDA code a shared library carries for GPUs other than one architecture, so it compresses away.

    python benchmarks/prune_fatbin.py LIBRARY.so 90

pycolmap-cuda12's extension carries SASS for sm_50 ... sm_120 and PTX (45 MB of fatbins); the H100 runs the
sm_90 entries only. The entries' payloads other than `arch` are overwritten with zeros in place (headers,
sizes and offsets unchanged, so the driver still finds the sm_90 SASS and PTX where it looks): the library,
unpacked and xz-compressed, shrinks from 44 MB to 29 MB, which leaves room in a 64 MiB device call for the
captures. Parses the fatbin container format (magic 0xBA55ED50, 16-byte header, 64-byte entry headers with the
architecture at offset 28) by hand: no tool for it exists outside the CUDA toolkit.
"""

from __future__ import annotations

import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50


def section(path: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if f" {name} " in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[3], 16), int(fields[4], 16)
    raise SystemExit(f"{path} has no {name} section")


def prune(path: str, keep_arch: int) -> tuple[int, int]:
    data = bytearray(open(path, "rb").read())
    start, size = section(path, ".nv_fatbin")
    pos, kept, zeroed = start, 0, 0
    while pos + 16 <= start + size:
        magic, _, header, body = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # fatbins are 8-byte aligned within the section
            continue
        entry, end = pos + header, pos + header + body
        while entry + 64 <= end:
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            if entry_header == 0:
                break
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if arch == keep_arch:
                kept += payload
            else:
                data[entry + entry_header:entry + entry_header + payload] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        pos = end
    open(path, "wb").write(data)
    return kept, zeroed


if __name__ == "__main__":
    kept, zeroed = prune(sys.argv[1], int(sys.argv[2]))
    print(f"kept {kept} bytes of sm_{sys.argv[2]} code, zeroed {zeroed}")
