"""Recordings made with ``perf record --call-graph dwarf`` and the perf map, folded through
the extension's own unwinder (src/perfdata/) instead of ``perf script``: no ``perf inject``,
no jitdump, time that grows with samples rather than with functions."""

from .stacks import Profile


def has_user_stacks(data):
    """Whether the recording at ``data`` copied user stacks; ValueError if it is no perf.data."""
    from ._native import perf_data_has_user_stacks

    return perf_data_has_user_stacks(data)


def read(data, native, tick, moved=None):
    """(Profile of every sample of ``data``, the unwinder's report: ``pids``, ``notes``,
    ``samples``). ``tick(samples, bytes_read)`` is called now and then. ``moved``: {(pid,
    path): where to read that file instead} (host_copies.through_roots)."""
    from ._native import unwind_perf_data

    result = unwind_perf_data(data, tick, moved or {})
    return profile_of(result, native), result


def profile_of(result, native):
    """The Profile of what ``unwind_perf_data`` or ``unwind_perf_stream`` returned."""
    profile = Profile(native)
    profile.add_samples(result["profile"])
    return profile
