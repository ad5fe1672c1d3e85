"""Compile the fused SSIM kernels for an H100/H200 (sm_90) on a machine without a GPU; print ptxas's resources.

    python tests/fused_ssim_compile.py      (run by tests/test_fused_ssim.py in a fresh process: Triton's
                                             interpreter, once imported, replaces the compiler)

Catches what the interpreter does not: code Triton cannot lower, and register spills. One line per kernel:
`NAME DTYPE registers=N spill_bytes=M`. Exit 77: this Triton lacks the ahead-of-time API or its ptxas.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile


def main() -> int:
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1: nothing to compile", file=sys.stderr)
        return 77
    try:
        from triton.backends.compiler import GPUTarget
        from triton.backends.nvidia.compiler import get_ptxas
        from triton.compiler import ASTSource
        from triton.compiler import compile as triton_compile
    except ImportError as exc:
        print(f"no ahead-of-time compile API in this Triton: {exc}", file=sys.stderr)
        return 77
    from splatforge.splat import fused_ssim as fs

    ints = ("n_rows", "row_in", "row_out", "row_t", "plane", "plane_in", "plane_out", "C", "H", "Ho", "row")
    row, column = fs.ROW_TILE, fs.COLUMN_TILE
    kernels = [(fs._ssim_moments_hblur, row, {}), (fs._ssim_vblur, column, {"WRITE_GRAD": True}),
               (fs._ssim_vblur, column, {"WRITE_GRAD": False}), (fs._ssim_vblur_t, column, {}),
               (fs._ssim_hblur_t_grad, row, {})]
    ptxas = get_ptxas(90).path
    for dtype in ("fp32", "fp64"):
        for kernel, (rows, block), extra in kernels:
            constants = {"WIN": 11, "ROWS": rows, "BLOCK": block, **extra}
            signature = {name: "constexpr" if name in constants else "i32" if name in ints else f"*{dtype}"
                         for name in kernel.arg_names}
            compiled = triton_compile(ASTSource(fn=kernel, signature=signature, constexprs=constants),
                                      target=GPUTarget("cuda", 90, 32), options={"num_warps": fs.NUM_WARPS})
            with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
                f.write(compiled.asm["ptx"])
            report = subprocess.run([ptxas, "--gpu-name", "sm_90a", "-v", f.name, "-o", os.devnull],
                                    capture_output=True, text=True)
            os.unlink(f.name)
            if report.returncode != 0:
                print(report.stderr, file=sys.stderr)
                return 1
            info = report.stderr
            registers = int(info.split("Used ")[1].split(" registers")[0])
            spills = int(info.split(" bytes spill stores")[0].rsplit(" ", 1)[1])
            name = kernel.__name__ + "".join(f"[{k}={v}]" for k, v in extra.items())
            print(f"{name} {dtype} registers={registers} spill_bytes={spills}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
