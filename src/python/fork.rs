//! The Python at-fork hook and `prepare()`: forked children get outputs of their own, and
//! code can get its trampolines before a fork so that children inherit them.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{capi, hook, stack_guard, state};

/// Runs in the child right after `os.fork()` (see [`register_at_fork`]): the child's outputs
/// move to files named by its own pid, so parent and child never write into one file; with
/// `persist_after_fork` (the default) they start with everything the parent's named, since the
/// child runs the trampolines it inherited.
#[pyfunction]
fn _after_fork_in_child() {
    stack_guard::forget();
    state::follow_fork().print();
}

/// Registers [`_after_fork_in_child`] with `os.register_at_fork` as the module is made, so
/// that it is there however the module was loaded: through the package, or alone by the
/// start-up switches (python/data/purelib/_perf_trampoline_switches.py).
pub fn register_at_fork(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let kwargs = PyDict::new(m.py());
    kwargs.set_item("after_in_child", wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.py()
        .import("os")?
        .call_method("register_at_fork", (), Some(&kwargs))?;
    Ok(())
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
    if !state::installed() {
        return Err(PyRuntimeError::new_err("call activate() before prepare()"));
    }
    // SAFETY: the GIL is held (we have a Python token) and `code` is a live code object.
    Ok(unsafe { hook::ensure_slot(code.as_ptr()) })
}
