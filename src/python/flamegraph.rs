//! Placeholder: flame graphs for the command-line tool (being written).
use pyo3::prelude::*;

/// Renders folded stacks as an SVG flame graph.
#[pyfunction]
pub fn flamegraph_svg(_folded: &str, _title: &str) -> PyResult<String> {
    Err(pyo3::exceptions::PyNotImplementedError::new_err("flame graphs are not written yet"))
}
