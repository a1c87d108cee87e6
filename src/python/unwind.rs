//! The unwinder over perf recordings (crate::perfdata) for `perf-trampoline record/report`.
use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::profile::Samples;
use crate::perfdata::{self, Error, Progress, Unwound};

/// Unwinds every sample of the recording at `path` (made with `--call-graph dwarf`).
/// `tick(samples_so_far, bytes_read)` is called now and then; what it raises (and Ctrl-C)
/// stops the work. Returns a dict: `profile` (the Samples), `samples` (how many), `pids` (every process of the
/// recording), `notes` (perf maps missing or refused, a recording cut short). Raises
/// `ValueError` when the file is not a perf.data file we can read. `moved` maps `(pid, path)`
/// of a file the recording maps to where to read it instead (a container's, through its root).
#[pyfunction]
#[pyo3(signature = (path, tick, moved = perfdata::Moved::new()))]
pub fn unwind_perf_data<'py>(
    py: Python<'py>,
    path: PathBuf,
    tick: Py<PyAny>,
    moved: perfdata::Moved,
) -> PyResult<Bound<'py, PyDict>> {
    let unwound = py.detach(|| perfdata::unwind_file(&path, moved, |p| call_tick(&tick, p)));
    to_dict(py, unwound)
}

/// As `unwind_perf_data`, for perf's pipe format read from the descriptor `fd` (the read end
/// of `perf record -o -`'s stdout) until its end; with `copy_fd`, every byte read is written
/// there too. Both descriptors stay the caller's (they are duplicated here).
#[pyfunction]
#[pyo3(signature = (fd, copy_fd, tick))]
pub fn unwind_perf_stream<'py>(
    py: Python<'py>,
    fd: RawFd,
    copy_fd: Option<RawFd>,
    tick: Py<PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let input = own(fd)?;
    let copy = copy_fd.map(own).transpose()?;
    let unwound =
        py.detach(|| perfdata::stream::unwind_stream(input, copy, |p| call_tick(&tick, p)));
    to_dict(py, unwound)
}

/// A file of our own on a descriptor the caller keeps.
fn own(fd: RawFd) -> PyResult<File> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "{fd}: not a file descriptor"
        )));
    }
    // SAFETY: only borrowed for the duplication below; a closed descriptor fails there.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(File::from(borrowed.try_clone_to_owned()?))
}

/// Progress of work done without the GIL: calls `tick(samples, bytes)`, and stops the work
/// with what it raises or with Ctrl-C.
pub(super) fn call_tick(tick: &Py<PyAny>, p: Progress) -> PyResult<()> {
    Python::attach(|py| {
        py.check_signals()?;
        tick.call1(py, (p.samples, p.bytes)).map(drop)
    })
}

fn to_dict(py: Python<'_>, unwound: Result<Unwound, Error<PyErr>>) -> PyResult<Bound<'_, PyDict>> {
    let unwound = unwound.map_err(py_error)?;
    let d = PyDict::new(py);
    d.set_item("profile", Samples(unwound.profile))?;
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

/// The Python exception for a failed pass over a recording.
pub(super) fn py_error(e: Error<PyErr>) -> PyErr {
    match e {
        Error::Read(message) => PyValueError::new_err(message),
        Error::Stopped(err) => err,
    }
}
