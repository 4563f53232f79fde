"""Thread settings shared by the PyTorch baselines: torch's own pool and the BLAS library's.

Debian's torch is built against the generic BLAS interface (BLAS_INFO=generic), so
torch.set_num_threads does not reach OpenBLAS, which would otherwise start one thread per core
whatever the baseline asked for. set_threads sets both, like `qshard --threads`, and returns
the BLAS library torch has loaded (expected: Debian's libopenblas0-pthread)."""

import ctypes
import sys

import torch


def loaded_blas():
    """Path of the OpenBLAS shared library mapped into this process, or None."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libopenblas" in line}
    return sorted(paths)[0] if paths else None


def set_threads(threads):
    torch.set_num_threads(threads)
    blas = loaded_blas()
    if blas is None:
        print("warning: torch has no OpenBLAS loaded; BLAS threads are not set", file=sys.stderr)
        return "unknown"
    if "openblas-pthread" not in blas:
        print(f"warning: torch uses {blas}, not libopenblas0-pthread", file=sys.stderr)
    ctypes.CDLL(blas).openblas_set_num_threads(threads)
    return blas
