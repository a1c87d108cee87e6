//! Forked children: outputs of their own, and trampolines made before fork.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use super::{capi, hook, stack_guard, warn};
use crate::backend;

/// Runs in the child right after `os.fork()` (registered with `os.register_at_fork`): the
/// child's outputs move to files named by its own pid, so parent and child never write into
/// one file; with `persist_after_fork` (the default) they start with everything the parent's
/// named, since the child runs the trampolines it inherited.
#[pyfunction]
pub fn _after_fork_in_child() {
    stack_guard::forget();
    crate::registry::jitdump::forget_thread_id();
    let mut cold = hook::cold();
    let cold = &mut *cold;
    let Some(template) = cold.template.as_ref() else { return };
    if cold.registry.is_empty() {
        return;
    }
    let pid = std::process::id();
    let messages = cold.registry.after_fork(
        cold.persist_after_fork,
        |kind, dir| backend::output_path(kind, dir, pid),
        |kind, path| backend::open_sink(kind, path, pid, template),
    );
    hook::close_outputs_at_exit();
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
    if unsafe { (*code.as_ptr()).ob_type } as usize != api.code_type as usize {
        return Err(PyTypeError::new_err("expected a code object"));
    }
    if !hook::cold().installed {
        return Err(PyRuntimeError::new_err("call activate() before prepare()"));
    }
    // SAFETY: the GIL is held (we have a Python token) and `code` is a live code object.
    Ok(unsafe { hook::ensure_slot(code.as_ptr()) })
}
