"""Spends its time in C libraries under Python functions: zlib in compress_blobs, hashlib in
hash_blobs, json's C encoder in encode_docs, all three called from main, for argv[1] seconds."""

import hashlib
import json
import random
import sys
import time
import zlib


# Plain loops, no generator expressions: those would add a Python frame of their own.
def compress_blobs(blobs):
    n = 0
    for b in blobs:
        n += len(zlib.compress(b, 6))
    return n


def hash_blobs(blobs):
    digest = b""
    for b in blobs:
        digest = hashlib.sha256(b + digest).digest()
    return digest


def encode_docs(docs):
    n = 0
    for d in docs:
        n += len(json.dumps(d))
    return n


def main(seconds):
    rnd = random.Random(19)
    words = ["".join(rnd.choice("abcdefghij") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    blobs = [" ".join(rnd.choice(words) for _ in range(12000)).encode() for _ in range(4)]
    docs = [{"id": i, "name": rnd.choice(words), "tags": words[i % 50:i % 50 + 20], "score": i / 7}
            for i in range(3000)]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        compress_blobs(blobs)
        hash_blobs(blobs * 40)
        encode_docs(docs)


if __name__ == "__main__":
    main(float(sys.argv[1]))
