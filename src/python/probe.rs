//! Compiles the probe code objects that the layout discoveries (co_extra, code_fields) inspect.
//!
//! Through `Py_CompileString`, not the `compile()` builtin: the builtin first builds every
//! `ast` node type (11 million instructions, about 3 ms, on 3.12), which was most of what
//! turning support on cost at start-up. No Python frame runs either way.

use std::ffi::{CStr, c_int};

use pyo3::prelude::*;

pub use pyo3::ffi::{Py_eval_input as EVAL, Py_file_input as FILE};

/// The code object of `source` (`start` is [`EVAL`] or [`FILE`]), named `filename`.
pub fn compile<'py>(
    py: Python<'py>,
    source: &CStr,
    filename: &CStr,
    start: c_int,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: two NUL-terminated strings; the GIL is held (we have `py`).
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::Py_CompileString(source.as_ptr(), filename.as_ptr(), start),
        )
    }
}
