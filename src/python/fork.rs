//! Forked children: outputs of their own, and trampolines made before fork.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use super::{capi, hook, stack_guard, warn};
use crate::backend;

/// Forks this process has gone through, counted in the child by a `pthread_atfork` handler:
/// every fork, also one made from C that runs no Python at-fork hook.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Starts counting forks (once per process).
pub fn count_forks() {
    static ONCE: Once = Once::new();
    extern "C" fn in_child() {
        FORKS.fetch_add(1, Relaxed);
    }
    // SAFETY: registering a plain extern "C" fn; it only touches an atomic.
    ONCE.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(in_child));
    });
}

/// Moves the outputs to files of this process's own if it was forked since they were opened:
/// the child's records must never go into its parent's files (a shared mapping of them would
/// even write over the parent's own records), and its new slots to memory it maps itself
/// (see `SlotSource::after_fork`). Called before every record is written, and
/// from the Python at-fork hook. Returns the messages to print once the lock is released.
pub fn own_outputs(cold: &mut hook::Cold) -> Vec<String> {
    let forks = FORKS.load(Relaxed);
    if cold.forks_seen == forks {
        return Vec::new();
    }
    cold.forks_seen = forks;
    crate::registry::jitdump::forget_thread_id();
    if let Some(source) = cold.source.as_mut() {
        source.after_fork();
    }
    let Some(template) = cold.template.as_ref() else { return Vec::new() };
    if cold.registry.is_empty() {
        return Vec::new();
    }
    if !cold.forks_keep_support {
        super::children::stay_off_in_fork(cold);
        return Vec::new();
    }
    let pid = std::process::id();
    let messages = cold.registry.after_fork(
        cold.persist_after_fork,
        |kind, dir| backend::output_path(kind, dir, pid),
        |kind, path| backend::open_sink(kind, path, pid, template, cold.writers),
    );
    hook::close_outputs_at_exit();
    messages
}

/// Runs in the child right after `os.fork()` (registered with `os.register_at_fork`): the
/// child's outputs move to files named by its own pid, so parent and child never write into
/// one file; with `persist_after_fork` (the default) they start with everything the parent's
/// named, since the child runs the trampolines it inherited.
#[pyfunction]
pub fn _after_fork_in_child() {
    stack_guard::forget();
    let messages = own_outputs(&mut hook::cold());
    for m in messages {
        warn(&m);
    }
}

/// Gives a code object its trampoline now, without running it; returns whether it has one.
/// `perf_trampoline.prepare()` walks modules, classes and functions and calls this.
#[pyfunction]
pub fn _prepare_code(code: &Bound<'_, PyAny>) -> PyResult<bool> {
    let api = capi::api().map_err(PyRuntimeError::new_err)?;
    // SAFETY: reading the type of a live object.
    if !std::ptr::eq(unsafe { (*code.as_ptr()).ob_type }, api.code_type) {
        return Err(PyTypeError::new_err("expected a code object"));
    }
    if !hook::cold().installed {
        return Err(PyRuntimeError::new_err("call activate() before prepare()"));
    }
    // SAFETY: the GIL is held (we have a Python token) and `code` is a live code object.
    Ok(unsafe { hook::ensure_slot(code.as_ptr()) })
}
