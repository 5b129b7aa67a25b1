"""ingest/heap.py: the malloc arena cap the ingest's forkserver sets before TensorFlow starts its threads."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from nextword.ingest.heap import _libc, limit_malloc_arenas
    if sys.argv[1] == "capped":
        assert limit_malloc_arenas(2)
    libc = _libc()
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    start = threading.Barrier(8)

    def allocate():  # 8 threads allocating at once: glibc gives each an arena unless capped
        start.wait()
        for _ in range(2000):
            libc.malloc(256)

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
    report = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, report)
    libc.fclose(report)
    print(open(sys.argv[2]).read().count("<heap nr="))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and malloc_info")
def test_the_arena_cap_holds_threads_to_two_arenas(tmp_path):
    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", PROBE, mode, str(tmp_path / f"{mode}.xml")],
                              capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert arenas("capped") <= 2
    assert arenas("free") > 2  # the probe does make arenas: without the cap, threads get their own
