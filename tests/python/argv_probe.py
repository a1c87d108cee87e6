"""Prints what a script sees of how it was started, then exits as asked (for runner parity)."""

import json
import os
import sys


def main():
    print(json.dumps({"argv": sys.argv, "name": __name__, "file": __file__,
                      "path0": sys.path[0], "pid": os.getpid()}))
    sys.stdout.flush()
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "exit":
        sys.exit(int(sys.argv[2]))
    if action == "raise":
        raise ValueError("raised on purpose")


main()
