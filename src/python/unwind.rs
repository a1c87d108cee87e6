//! The unwinder over perf recordings (crate::perfdata) for `perf-trampoline record/report`.
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::perfdata::{self, Error};

/// Unwinds every sample of the recording at `path` (made with `--call-graph dwarf`).
/// `tick(samples_so_far)` is called now and then; what it raises (and Ctrl-C) stops the
/// work. Returns a dict: `names`, `stacks` as `(thread name, frames innermost first,
/// samples)` with indices into `names`, `samples`, `pids` (every process of the recording),
/// `notes` (perf maps missing or refused, a recording cut short). Raises `ValueError` when the file is not a perf.data file we can read.
#[pyfunction]
pub fn unwind_perf_data<'py>(
    py: Python<'py>,
    path: PathBuf,
    tick: Py<PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let unwound = py
        .detach(|| perfdata::unwind_file(&path, ticker(&tick)))
        .map_err(py_error)?;
    let d = PyDict::new(py);
    d.set_item("names", unwound.names)?;
    d.set_item("stacks", unwound.stacks)?;
    d.set_item("samples", unwound.samples)?;
    d.set_item("pids", unwound.pids)?;
    d.set_item("notes", unwound.notes)?;
    Ok(d)
}

/// Whether the recording at `path` copied user stacks (`--call-graph dwarf`), so
/// `unwind_perf_data` can unwind it. Raises `ValueError` when it is not a perf.data file.
#[pyfunction]
pub fn perf_data_has_user_stacks(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
    py.detach(|| perfdata::has_user_stacks(&path))
        .map_err(PyValueError::new_err)
}

/// A progress callback for work done without the GIL: calls `tick(count)`, and stops the
/// work with what it raises or with Ctrl-C.
pub(super) fn ticker(tick: &Py<PyAny>) -> impl FnMut(u64) -> PyResult<()> + '_ {
    |n| {
        Python::attach(|py| {
            py.check_signals()?;
            tick.call1(py, (n,)).map(drop)
        })
    }
}

/// The Python exception for a failed pass over a recording.
pub(super) fn py_error(e: Error<PyErr>) -> PyErr {
    match e {
        Error::Read(message) => PyValueError::new_err(message),
        Error::Stopped(err) => err,
    }
}
