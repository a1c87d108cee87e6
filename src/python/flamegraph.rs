//! Interactive SVG flame graphs from folded stacks, for `perf-trampoline record/report`.
use inferno::flamegraph::{self, Options, Palette, color::MultiPalette};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Renders folded stacks (`outer;inner count` per line, any order) as an SVG flame graph
/// titled `title`. Raises `ValueError` when no line holds a sample count.
#[pyfunction]
pub fn flamegraph_svg(py: Python<'_>, folded: &str, title: &str) -> PyResult<String> {
    py.detach(|| render(folded, title))
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

fn render(folded: &str, title: &str) -> std::io::Result<String> {
    let mut options = Options::default();
    options.title = title.to_string();
    // Stdlib yellow, site-packages aqua, the rest red; colours from name hashes so the same
    // profile always gives the same picture.
    options.colors = Palette::Multi(MultiPalette::Python);
    options.hash = true;
    // from_lines merges neighbouring lines only: equal stacks must be adjacent.
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort_unstable();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines, &mut svg)?;
    String::from_utf8(svg).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
