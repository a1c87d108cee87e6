"""The foo/bar/baz program from CPython's perf how-to: baz calls bar calls foo, which loops.

Profile it and every sample in foo's loop should read foo < bar < baz < <module>.
"""

import sys


def foo(n):
    result = 0
    for _ in range(n):
        result += 1
    return result


def bar(n):
    foo(n)


def baz(n):
    bar(n)


if __name__ == "__main__":
    baz(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
