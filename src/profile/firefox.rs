//! The Firefox Profiler's processed profile format (gzipped JSON), through
//! fxprof-processed-profile: one track per thread with its name, each sample at its time with
//! its CPU time, frames in the categories Python, native and kernel.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;
use fxprof_processed_profile::{
    CategoryColor, CpuDelta, Frame as FxFrame, FrameFlags, FrameInfo, Profile, ReferenceTimestamp,
    SamplingInterval, Timestamp,
};

use super::{Kind, Meta, Samples};

/// Writes `samples` gzipped, as the profiler opens it.
pub fn write(samples: &Samples, meta: &Meta, out: impl Write) -> io::Result<()> {
    let profile = build(samples, meta);
    let mut gz = io::BufWriter::with_capacity(1 << 20, GzEncoder::new(out, Compression::fast()));
    serde_json::to_writer(&mut gz, &profile).map_err(io::Error::other)?;
    gz.into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .flush()
}

fn build(samples: &Samples, meta: &Meta) -> Profile {
    let product = match &meta.interpreter {
        Some(interpreter) => format!("{} ({interpreter})", meta.title),
        None => meta.title.clone(),
    };
    let (first, last) = samples.time_range();
    // Wall-clock time of the first sample, as near as we can tell: perf's clock is not.
    let start = SystemTime::now() - std::time::Duration::from_nanos(last - first);
    let mut profile = Profile::new(
        &product,
        ReferenceTimestamp::from_system_time(start),
        SamplingInterval::from_nanos(samples.interval()),
    );
    profile.set_os_name("Linux");
    let python = profile.add_category("Python", CategoryColor::Yellow);
    let native = profile.add_category("Native", CategoryColor::Orange);
    let kernel = profile.add_category("Kernel", CategoryColor::LightRed);
    let at = |time: u64| Timestamp::from_nanos_since_reference(time.saturating_sub(first));

    let mut processes = HashMap::new();
    let mut threads = Vec::with_capacity(samples.threads.len());
    for t in &samples.threads {
        let process = *processes.entry(t.pid).or_insert_with(|| {
            let name = samples
                .threads
                .iter()
                .find(|o| o.pid == t.pid && o.tid == t.pid)
                .unwrap_or(t)
                .name
                .clone();
            profile.add_process(&name, t.pid as u32, at(first))
        });
        let handle = profile.add_thread(process, t.tid as u32, at(first), t.tid == t.pid);
        profile.set_thread_name(handle, &t.name);
        threads.push(handle);
    }
    let labels: Vec<_> = samples
        .frames
        .iter()
        .map(|f| {
            let category = match f.kind {
                Kind::Python => python,
                Kind::Native => native,
                Kind::Kernel => kernel,
            };
            (profile.intern_string(&f.name), category)
        })
        .collect();
    let mut stacks = HashMap::new();
    for s in &samples.samples {
        let thread = threads[s.thread as usize];
        let stack = *stacks.entry((s.thread, s.stack)).or_insert_with(|| {
            let frames = samples.stacks[s.stack as usize].iter().rev().map(|&f| {
                let (label, category) = labels[f as usize];
                FrameInfo {
                    frame: FxFrame::Label(label),
                    category_pair: category.into(),
                    flags: FrameFlags::empty(),
                }
            });
            profile.intern_stack_frames(thread, frames)
        });
        profile.add_sample(thread, at(s.time), stack, CpuDelta::from_nanos(s.period), 1);
    }
    profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::one_stack;

    #[test]
    fn tables_and_categories() {
        let s = one_stack(
            &[
                ("do_syscall_64", Kind::Kernel, None),
                ("py::foo:/a.py", Kind::Python, None),
            ],
            &[
                (100, (5, 5, "python3"), 1),
                (200, (5, 6, "worker"), 1),
                (300, (5, 5, "python3"), 1),
            ],
        );
        let meta = Meta {
            title: "python3 app.py".into(),
            interpreter: Some("CPython 3.15".into()),
        };
        let v = serde_json::to_value(build(&s, &meta)).unwrap();
        assert_eq!(v["meta"]["product"], "python3 app.py (CPython 3.15)");
        let threads = v["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 2);
        let names: Vec<_> = threads.iter().map(|t| t["name"].clone()).collect();
        assert!(names.contains(&"worker".into()) && names.contains(&"python3".into()));
        let categories: Vec<_> = v["meta"]["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert!(
            ["Python", "Native", "Kernel"]
                .iter()
                .all(|c| categories.iter().any(|n| n == c))
        );
    }
}
