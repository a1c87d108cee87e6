"""A bench workload: argv[1] nested Python calls, then busy in the innermost one, as a
request handler deep inside a framework is (scripts/bench-stack-size.py)."""

import sys


def level(n):
    if n == 0:
        return spin()
    return level(n - 1)


def spin():
    total = 0
    for i in range(30_000_000):
        total += i
    return total


level(int(sys.argv[1]))
