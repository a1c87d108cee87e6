"""Placeholder: the perf-trampoline command (record, report, doctor), being written."""

import sys


def main(argv=None):
    sys.stderr.write("perf-trampoline: not written yet\n")
    return 2
