"""Four threads busy for argv[1] seconds: Python loops around hashlib digests of large
buffers, which release the GIL, so the four can keep four CPUs busy at once."""

import hashlib
import sys
import threading
import time


def crunch(buf):
    return hashlib.sha256(buf).digest()


def step(buf):
    total = 0
    for i in range(300):
        total += i
    return crunch(buf), total


def worker(seconds):
    buf = bytes(1 << 16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        step(buf)


if __name__ == "__main__":
    threads = [threading.Thread(target=worker, args=(float(sys.argv[1]),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
