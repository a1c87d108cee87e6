//! What is found once per process about the running CPython, in one value: its C API, our
//! co_extra index and where co_extra sits, where code objects keep their names, the frame
//! layout, and which version-dependent paths the hook takes.

use std::sync::OnceLock;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::capi::{self, Api};
use super::co_extra;
use super::code_fields::{self, Fields};
use crate::frame_layout::{self, FrameLayout};

/// Everything about this interpreter that activation finds once and never again.
pub struct Discovered {
    /// Entry points into the interpreter.
    pub api: &'static Api,
    /// Our co_extra index: one per interpreter for the life of the process (indices are a
    /// limited resource that CPython never hands back; PyO3 modules load in one interpreter
    /// only).
    pub index: isize,
    /// Where co_extra sits in a code object (None: read it through the API).
    pub extra_offset: Option<usize>,
    /// Where code objects keep their names (None: names come from getattr).
    pub fields: Option<Fields>,
    /// Where a frame keeps its code object.
    pub layout: FrameLayout,
    /// Whether code objects have `co_qualname` (3.11+); before, names use `co_name`.
    pub has_qualname: bool,
    /// Whether the hook checks the C stack itself (3.9-3.11, see stack_guard.rs).
    pub guard_stack: bool,
}

static FOUND: OnceLock<Discovered> = OnceLock::new();

/// What an earlier [`find`] found, if it ran.
pub fn found() -> Option<&'static Discovered> {
    FOUND.get()
}

/// Finds it all the first time (later calls return the same value). Runs Python code
/// (compiles probes, reads attributes): call it at activation, never holding the state lock.
/// A failure is not remembered: the next activation tries again.
pub fn find(py: Python<'_>) -> PyResult<&'static Discovered> {
    if let Some(d) = FOUND.get() {
        return Ok(d);
    }
    let v = py.version_info();
    let (major, minor) = (v.major, v.minor);
    let layout = frame_layout::layout_for(major, minor).ok_or_else(|| {
        PyRuntimeError::new_err(format!(
            "CPython {major}.{minor} is not supported; perf_trampoline supports {}",
            frame_layout::SUPPORTED
        ))
    })?;
    let api = capi::api().map_err(PyRuntimeError::new_err)?;
    // SAFETY: called with the GIL held; no free function is needed (slots are never reused).
    let index = unsafe { (api.request_index)(None) };
    if index < 0 {
        return Err(PyRuntimeError::new_err(
            "no co_extra index left in this interpreter (CPython allows 255)",
        ));
    }
    let has_qualname = minor >= 11;
    let name_attr = if has_qualname {
        "co_qualname"
    } else {
        "co_name"
    };
    let found = Discovered {
        api,
        index,
        extra_offset: co_extra::discover(py, api, index),
        fields: code_fields::discover(py, api, name_attr).ok().flatten(),
        layout,
        has_qualname,
        guard_stack: minor < 12,
    };
    // Were another thread first (a probe may let it run), its value wins; this index stays unused.
    Ok(FOUND.get_or_init(|| found))
}
