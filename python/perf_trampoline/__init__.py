"""Python functions in Linux perf profiles: each code object runs inside its own native
trampoline, named ``py::<qualname>:<filename>`` in ``/tmp/perf-<pid>.map``.

    import perf_trampoline
    perf_trampoline.activate()      # backend="perf": the perf map
    ...
    perf_trampoline.deactivate()
"""

from ._native import BACKENDS, STRATEGIES, activate, deactivate, is_active, _state

__all__ = ["BACKENDS", "STRATEGIES", "activate", "deactivate", "is_active"]
