//! Injection of only the jitted functions a recording reaches (crate::inject), for
//! `perf-trampoline inject`, and `record`/`report` in jitdump mode.
use std::collections::HashMap;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::unwind::{call_tick, py_error};
use crate::inject;
use crate::perfdata::Progress;

/// Filters the jitdumps the recording at `path` maps to the functions its samples can
/// reach, into `directory` (existing, ours alone), with a copy of the recording naming the
/// filtered dumps. `tick(samples_so_far, 0)` is called now and then; what it raises (and
/// Ctrl-C) stops the work. Returns a dict: `perf_data` (the copy to give `perf inject
/// --jit`), `dumps` as `(original, copy, kept, total)`, `notes` (dumps that could not be
/// read), `samples`. `moved` maps `(pid, path)` of a file the recording maps to where perf
/// should open it instead (a container's file through its root). Raises `ValueError` for a
/// file it cannot read or write.
#[pyfunction]
#[pyo3(signature = (path, directory, tick, moved = HashMap::new()))]
pub fn prepare_injection<'py>(
    py: Python<'py>,
    path: PathBuf,
    directory: PathBuf,
    tick: Py<PyAny>,
    moved: HashMap<(u32, PathBuf), PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let prepared = py
        .detach(|| {
            inject::prepare(&path, &directory, &moved, |samples| {
                call_tick(&tick, Progress { samples, bytes: 0 })
            })
        })
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
