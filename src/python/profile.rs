//! The samples model (crate::profile) for Python: built by the perf script reader or returned
//! by the unwinder, folded for the flame graph, and written in the viewers' formats.
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::profile::{self, Frame, Kind, Meta};

/// The formats written here, by name (SVG and folded stacks are drawn on the Python side).
pub const FORMATS: [&str; 3] = ["firefox", "speedscope", "pprof"];

/// Every sample of one recording with its time, thread, CPU time and frames.
#[pyclass(module = "perf_trampoline._native")]
#[derive(Default)]
pub struct Samples(pub profile::Samples);

#[pymethods]
impl Samples {
    #[new]
    fn new() -> Self {
        Samples::default()
    }

    /// Adds one sample of `perf script`: thread `tid` of process `pid` named `thread`, at
    /// `time` (ns) with `period`, its frames `(symbol, dso)` innermost first.
    #[pyo3(signature = (pid, tid, thread, time, period, frames))]
    fn add_perf_script(
        &mut self,
        pid: i32,
        tid: i32,
        thread: &str,
        time: u64,
        period: u64,
        frames: Vec<(String, String)>,
    ) {
        let samples = &mut self.0;
        let ids: Vec<u32> = frames
            .into_iter()
            .map(|(name, dso)| {
                let kind = Kind::of_perf_script(&name, &dso);
                let module = (kind != Kind::Python && !dso.is_empty())
                    .then(|| dso.rsplit('/').next().unwrap_or(&dso).to_string());
                samples.frame(Frame { name, kind, module })
            })
            .collect();
        let stack = samples.stack(&ids);
        let thread = samples.thread(pid, tid, thread);
        samples.add(profile::Sample {
            time,
            thread,
            stack,
            period,
        });
    }

    fn __len__(&self) -> usize {
        self.0.samples.len()
    }

    /// `(thread name, [frame name, ...] innermost first, samples)` for each distinct pair.
    fn folded(&self) -> Vec<(&str, Vec<&str>, u64)> {
        self.0
            .folded()
            .into_iter()
            .map(|(thread, stack, n)| {
                let names = stack
                    .iter()
                    .map(|&f| self.0.frames[f as usize].name.as_str())
                    .collect();
                (thread, names, n)
            })
            .collect()
    }

    /// Writes the samples to `path` in `format` (one of FORMATS), through a new file beside it
    /// renamed over it when complete. `title` (the command or the recording) and
    /// `interpreter` go into the formats that keep them.
    #[pyo3(signature = (format, path, title, interpreter=None))]
    fn write(
        &self,
        py: Python<'_>,
        format: &str,
        path: PathBuf,
        title: String,
        interpreter: Option<String>,
    ) -> PyResult<()> {
        let writer: fn(&profile::Samples, &Meta, File) -> std::io::Result<()> = match format {
            "firefox" => |s, m, f| profile::firefox::write(s, m, f),
            "speedscope" => |s, m, f| profile::speedscope::write(s, m, f),
            "pprof" => |s, m, f| profile::pprof::write(s, m, f),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "{format}: not a format of ours ({})",
                    FORMATS.join(", ")
                )));
            }
        };
        let meta = Meta { title, interpreter };
        py.detach(|| write_atomically(&path, |f| writer(&self.0, &meta, f)))
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", path.display())))
    }
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    write(File::create(&tmp)?)?;
    fs::rename(&tmp, path)
}
