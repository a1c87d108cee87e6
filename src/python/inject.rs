//! Injection of only the jitted functions a recording reaches (crate::inject), for
//! `perf-trampoline inject`, and `record`/`report` in jitdump mode.
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::unwind::{py_error, ticker};
use crate::inject;

/// Filters the jitdumps the recording at `path` maps to the functions its samples can
/// reach, into `directory` (existing, ours alone), with a copy of the recording naming the
/// filtered dumps. `tick(samples_so_far)` is called now and then; what it raises (and
/// Ctrl-C) stops the work. Returns a dict: `perf_data` (the copy to give `perf inject
/// --jit`), `dumps` as `(original, copy, kept, total)`, `notes` (dumps that could not be
/// read), `samples`. Raises `ValueError` for a file it cannot read or write.
#[pyfunction]
pub fn prepare_injection<'py>(
    py: Python<'py>,
    path: PathBuf,
    directory: PathBuf,
    tick: Py<PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let prepared = py
        .detach(|| inject::prepare(&path, &directory, ticker(&tick)))
        .map_err(py_error)?;
    let d = PyDict::new(py);
    d.set_item("perf_data", prepared.perf_data)?;
    let dumps: Vec<_> = prepared
        .dumps
        .into_iter()
        .map(|f| (f.original, f.copy, f.kept, f.total))
        .collect();
    d.set_item("dumps", dumps)?;
    d.set_item("notes", prepared.notes)?;
    d.set_item("samples", prepared.samples)?;
    Ok(d)
}
