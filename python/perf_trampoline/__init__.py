"""Python functions in Linux perf profiles: each code object runs inside its own native
trampoline, named ``py::<qualname>:<filename>`` in ``/tmp/perf-<pid>.map`` and/or
``/tmp/jit-<pid>.dump``.

    import perf_trampoline
    perf_trampoline.activate()          # backend="perf": the perf map; "perf_jit": jitdump
    ...
    perf_trampoline.deactivate()
"""

# activate() refuses a backend CPython's JIT would make wrong (3.14+), asking jit.py why only
# while the JIT runs. The start-up switches may have loaded _native before this package (see
# _startup.py): `from . import _native` binds it here either way.
from . import _native as _native
from ._native import BACKENDS, STRATEGIES, _prepare_code, activate, deactivate, is_active
from ._native import _state as _state  # for tests and diagnostics

__all__ = ["BACKENDS", "STRATEGIES", "activate", "deactivate", "is_active", "prepare"]


def _code_objects(obj, seen):
    """Yields every code object reachable from a module, class, function, method or code."""
    import types  # here, not at the top: standby and attach import this package, never prepare()

    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, types.CodeType):
        yield obj
        for const in obj.co_consts:  # nested functions, lambdas, comprehensions, classes
            if isinstance(const, types.CodeType):
                yield from _code_objects(const, seen)
    elif isinstance(obj, (types.FunctionType, types.MethodType)):
        yield from _code_objects(getattr(obj, "__func__", obj).__code__, seen)
    elif isinstance(obj, (types.ModuleType, type)):
        for value in list(vars(obj).values()):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            elif isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    if accessor is not None:
                        yield from _code_objects(accessor, seen)
                continue
            if isinstance(value, type) and isinstance(obj, types.ModuleType) and value.__module__ != obj.__name__:
                continue  # imported, not defined here
            if isinstance(value, (types.FunctionType, types.MethodType, type, types.CodeType)):
                yield from _code_objects(value, seen)


def prepare(*objects):
    """Gives every code object of these modules, classes, functions or code objects its
    trampoline now, before they run. Call it in a pre-fork server before forking: workers
    then inherit the trampolines (and, with persist_after_fork, their names) instead of each
    writing its own as the code first runs there. Returns how many code objects have one."""
    seen = set()
    return sum(_prepare_code(code) for obj in objects for code in _code_objects(obj, seen))
