"""How fast this machine copies from another process's memory through the
kernel (`process_vm_readv`, the "CMA" single-copy path MPI libraries use
for large shared-memory messages), against a plain copy in one process.

exodus-comm would only gain from a single-copy path for private buffers if
the kernel's copy ran near memcpy's speed; docs/comm.md cites this probe.

python3 bench/cma_probe.py [--mib 32]
"""

import argparse
import ctypes
import multiprocessing as mp
import time

libc = ctypes.CDLL("libc.so.6", use_errno=True)


class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def holder(size, queue, done):
    """Holds `size` touched bytes and reports their address until told to end."""
    buf = ctypes.create_string_buffer(b"x" * size)
    queue.put(ctypes.addressof(buf))
    done.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    size = a.mib << 20
    queue, done = mp.Queue(), mp.Event()
    peer = mp.Process(target=holder, args=(size, queue, done))
    peer.start()
    remote = queue.get()
    dst = ctypes.create_string_buffer(size)
    src = ctypes.create_string_buffer(b"y" * size)
    try:
        ctypes.memmove(dst, src, size)  # touch the destination's pages first
        t = time.perf_counter()
        for _ in range(a.repeats):
            ctypes.memmove(dst, src, size)
        local = size * a.repeats / (time.perf_counter() - t) / 1e9
        print(f"memcpy in one process: {local:.1f} GB/s")
        for chunk in [256 << 10, 1 << 20, size]:
            t = time.perf_counter()
            for _ in range(a.repeats):
                for off in range(0, size, chunk):
                    here = IoVec(ctypes.addressof(dst) + off, chunk)
                    there = IoVec(remote + off, chunk)
                    n = libc.process_vm_readv(peer.pid, ctypes.byref(here), 1,
                                              ctypes.byref(there), 1, 0)
                    if n != chunk:
                        raise SystemExit(f"process_vm_readv: errno {ctypes.get_errno()}")
            rate = size * a.repeats / (time.perf_counter() - t) / 1e9
            print(f"process_vm_readv in {chunk >> 10} KiB pieces: {rate:.1f} GB/s")
    finally:
        done.set()
        peer.join()


if __name__ == "__main__":
    main()
