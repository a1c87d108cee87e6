//! Our output files for the Python side (commands, tests, benchmarks): where they go, how
//! they are named, and what a jitdump holds, each spelled once, here in the registry's terms.

use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::registry::jitdump_read::{self, Record};
use crate::registry::{self, OutputKind};

/// The directory our files go to in this process: `$PERF_TRAMPOLINE_DIR`, else /tmp.
#[pyfunction]
pub fn output_dir() -> PathBuf {
    registry::output_dir()
}

/// The path of process `pid`'s output of `kind` ("perf map" or "jitdump") in `directory`
/// (default: `output_dir()`).
#[pyfunction]
#[pyo3(signature = (kind, pid, directory = None))]
pub fn output_path(kind: &str, pid: u32, directory: Option<PathBuf>) -> PyResult<PathBuf> {
    let kind = OutputKind::ALL
        .into_iter()
        .find(|k| k.to_string() == kind)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown output kind {kind:?}: \"perf map\" or \"jitdump\""
            ))
        })?;
    Ok(kind.path(&directory.unwrap_or_else(registry::output_dir), pid))
}

/// `(kind, pid)` for a file name of ours such as `perf-123.map`, else None.
#[pyfunction]
pub fn parse_output_name(name: &str) -> Option<(String, u32)> {
    OutputKind::parse_file_name(name).map(|(kind, pid)| (kind.to_string(), pid))
}

/// The jitdump at `path` as a dict: `header` (version, elf_mach, pid, timestamp, flags),
/// `records` (one dict per whole record: `kind` "load", "unwinding", "close" or "other",
/// and its fields), `end` (the offset after the last whole record) and `trailing` (the bytes
/// after it: a writer's unused room, or a record cut short). Raises ValueError for a file that
/// is not a jitdump, OSError when it cannot be read.
#[pyfunction]
pub fn read_jitdump<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let bytes = read(&path)?;
    let dump = jitdump_read::parse(&bytes)
        .map_err(|e| PyValueError::new_err(format!("{}: {e}", path.display())))?;
    let header = PyDict::new(py);
    header.set_item("version", dump.header.version)?;
    header.set_item("elf_mach", dump.header.elf_mach)?;
    header.set_item("pid", dump.header.pid)?;
    header.set_item("timestamp", dump.header.timestamp)?;
    header.set_item("flags", dump.header.flags)?;
    let records = PyList::empty(py);
    for record in &dump.records {
        records.append(record_dict(py, record)?)?;
    }
    let out = PyDict::new(py);
    out.set_item("header", header)?;
    out.set_item("records", records)?;
    out.set_item("end", bytes.len() - dump.trailing)?;
    out.set_item("trailing", dump.trailing)?;
    Ok(out)
}

fn read(path: &Path) -> PyResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))
}

fn record_dict<'py>(py: Python<'py>, record: &Record) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match record {
        Record::CodeLoad {
            timestamp,
            pid,
            tid,
            vma,
            code_addr,
            code_index,
            name,
            code,
        } => {
            d.set_item("kind", "load")?;
            d.set_item("timestamp", timestamp)?;
            d.set_item("pid", pid)?;
            d.set_item("tid", tid)?;
            d.set_item("vma", vma)?;
            d.set_item("code_addr", code_addr)?;
            d.set_item("code_index", code_index)?;
            d.set_item("name", String::from_utf8_lossy(name))?;
            d.set_item("code", PyBytes::new(py, code))?;
        }
        Record::UnwindingInfo {
            timestamp,
            eh_frame_hdr_size,
            mapped_size,
            data,
        } => {
            d.set_item("kind", "unwinding")?;
            d.set_item("timestamp", timestamp)?;
            d.set_item("eh_frame_hdr_size", eh_frame_hdr_size)?;
            d.set_item("mapped_size", mapped_size)?;
            d.set_item("data", PyBytes::new(py, data))?;
        }
        Record::Close { timestamp } => {
            d.set_item("kind", "close")?;
            d.set_item("timestamp", timestamp)?;
        }
        Record::Other { id, timestamp } => {
            d.set_item("kind", "other")?;
            d.set_item("id", id)?;
            d.set_item("timestamp", timestamp)?;
        }
    }
    Ok(d)
}
