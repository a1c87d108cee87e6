//! The one model of a recording's samples that every output is written from: threads, frames
//! (Python, native, kernel), stacks, and each sample's time, thread, stack and CPU time. Both
//! readers build it (perf script's output, through the extension, and our own unwinder); one
//! writer module per format reads it (firefox.rs, speedscope.rs, pprof.rs; the folded stacks
//! and the SVG are folded from it on the Python side).

pub mod firefox;
pub mod pprof;
pub mod speedscope;

use std::collections::HashMap;

/// What ran in a frame; each kind has its own category (colour) in the viewers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A Python function (`py::qualname:file`), named from a perf map or jitdump.
    Python,
    /// User-space machine code: the interpreter, C extensions, libraries.
    Native,
    /// The kernel.
    Kernel,
}

impl Kind {
    /// The kind of a frame `perf script` printed as `sym (dso)`.
    pub fn of_perf_script(sym: &str, dso: &str) -> Kind {
        if sym.starts_with("py::") {
            Kind::Python
        } else if dso.starts_with("[kernel") || dso.starts_with("[guest.kernel") {
            Kind::Kernel
        } else {
            Kind::Native
        }
    }
}

/// One distinct frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// As the flame graph shows it: `py::qualname:file`, a symbol, or `[module]`.
    pub name: String,
    pub kind: Kind,
    /// The file the code is in (a library's base name, `[kernel.kallsyms]`), when known.
    pub module: Option<String>,
}

impl Frame {
    /// A Python frame's (`py::qualname`, file); others: (name, None).
    pub fn function_and_file(&self) -> (&str, Option<&str>) {
        if self.kind == Kind::Python
            && let Some(rest) = self.name.strip_prefix("py::")
            && let Some(colon) = rest.find(':')
        {
            return (&self.name[..4 + colon], Some(&rest[colon + 1..]));
        }
        (&self.name, None)
    }
}

/// One thread of one process under one name (an exec or a rename starts another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    pub pid: i32,
    pub tid: i32,
    pub name: String,
}

/// One sample.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// perf's timestamp, nanoseconds (its clock: perf_clock, or CLOCK_MONOTONIC with `-k 1`).
    pub time: u64,
    pub thread: u32,
    pub stack: u32,
    /// The event's period: nanoseconds of CPU for cpu-clock, what `record` samples.
    pub period: u64,
}

/// Samples with their threads, stacks and frames, each interned once.
#[derive(Default, Debug)]
pub struct Samples {
    pub frames: Vec<Frame>,
    /// Frame indices, innermost first.
    pub stacks: Vec<Vec<u32>>,
    pub threads: Vec<Thread>,
    /// In the order they were read (perf's time order).
    pub samples: Vec<Sample>,
    frame_ids: HashMap<Frame, u32>,
    stack_ids: HashMap<Vec<u32>, u32>,
    thread_ids: HashMap<(i32, i32, String), u32>,
}

impl Samples {
    /// The index of `frame`.
    pub fn frame(&mut self, frame: Frame) -> u32 {
        if let Some(&i) = self.frame_ids.get(&frame) {
            return i;
        }
        let i = self.frames.len() as u32;
        self.frames.push(frame.clone());
        self.frame_ids.insert(frame, i);
        i
    }

    /// The index of the stack `frames` (innermost first).
    pub fn stack(&mut self, frames: &[u32]) -> u32 {
        if let Some(&i) = self.stack_ids.get(frames) {
            return i;
        }
        let i = self.stacks.len() as u32;
        self.stacks.push(frames.to_vec());
        self.stack_ids.insert(frames.to_vec(), i);
        i
    }

    /// The index of thread `tid` of process `pid` while it is called `name`.
    pub fn thread(&mut self, pid: i32, tid: i32, name: &str) -> u32 {
        let next = self.threads.len() as u32;
        *self
            .thread_ids
            .entry((pid, tid, name.to_string()))
            .or_insert_with(|| {
                self.threads.push(Thread {
                    pid,
                    tid,
                    name: name.to_string(),
                });
                next
            })
    }

    pub fn add(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// (thread name, stack, samples) for every distinct pair: what flame graphs are drawn from.
    pub fn folded(&self) -> Vec<(&str, &[u32], u64)> {
        let mut counts: HashMap<(&str, u32), u64> = HashMap::new();
        for s in &self.samples {
            *counts
                .entry((&self.threads[s.thread as usize].name, s.stack))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((thread, stack), n)| (thread, self.stacks[stack as usize].as_slice(), n))
            .collect()
    }

    /// The first and last sample times.
    pub fn time_range(&self) -> (u64, u64) {
        let first = self.samples.iter().map(|s| s.time).min().unwrap_or(0);
        let last = self.samples.iter().map(|s| s.time).max().unwrap_or(0);
        (first, last)
    }

    /// The median gap between a thread's samples, in nanoseconds (the sampling interval the
    /// viewers draw with); 1 ms when there are too few samples to tell.
    pub fn interval(&self) -> u64 {
        let mut last: HashMap<u32, u64> = HashMap::new();
        let mut gaps = Vec::new();
        for s in &self.samples {
            if let Some(prev) = last.insert(s.thread, s.time)
                && s.time > prev
            {
                gaps.push(s.time - prev);
            }
        }
        if gaps.is_empty() {
            return 1_000_000;
        }
        let mid = gaps.len() / 2;
        *gaps.select_nth_unstable(mid).1
    }
}

/// What the command line knew about the recording, for the formats that keep it.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// The recorded command line, or the recording's file name.
    pub title: String,
    /// The interpreter that ran, when known (`CPython 3.15.0 /usr/bin/python3.15`).
    pub interpreter: Option<String>,
}

/// Samples for tests: `frames` (name, kind, module) make one stack, innermost first; each of
/// `samples` is (time, (pid, tid, thread name), period) on that stack.
#[cfg(test)]
pub(crate) fn one_stack(
    frames: &[(&str, Kind, Option<&str>)],
    samples: &[(u64, (i32, i32, &str), u64)],
) -> Samples {
    let mut s = Samples::default();
    let ids: Vec<u32> = frames
        .iter()
        .map(|&(name, kind, module)| {
            s.frame(Frame {
                name: name.into(),
                kind,
                module: module.map(str::to_string),
            })
        })
        .collect();
    let stack = s.stack(&ids);
    for &(time, (pid, tid, name), period) in samples {
        let thread = s.thread(pid, tid, name);
        s.add(Sample {
            time,
            thread,
            stack,
            period,
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(name: &str) -> Frame {
        Frame {
            name: name.into(),
            kind: Kind::Python,
            module: None,
        }
    }

    #[test]
    fn interning_and_folding() {
        let mut s = Samples::default();
        let foo = s.frame(py("py::foo:/a.py"));
        let bar = s.frame(py("py::bar:/a.py"));
        assert_eq!(s.frame(py("py::foo:/a.py")), foo);
        let st = s.stack(&[foo, bar]);
        assert_eq!(s.stack(&[foo, bar]), st);
        assert_ne!(s.stack(&[bar]), st);
        let t = s.thread(1, 2, "main");
        assert_eq!(s.thread(1, 2, "main"), t);
        assert_ne!(s.thread(1, 2, "after exec"), t);
        for time in [10, 20, 30] {
            s.add(Sample {
                time,
                thread: t,
                stack: st,
                period: 5,
            });
        }
        assert_eq!(s.folded(), vec![("main", &[foo, bar][..], 3)]);
        assert_eq!(s.time_range(), (10, 30));
        assert_eq!(s.interval(), 10);
        assert_eq!(
            s.frames[foo as usize].function_and_file(),
            ("py::foo", Some("/a.py"))
        );
    }

    #[test]
    fn kinds_from_perf_script() {
        assert_eq!(
            Kind::of_perf_script("py::f:/x.py", "/tmp/perf-1.map"),
            Kind::Python
        );
        assert_eq!(
            Kind::of_perf_script("do_syscall_64", "[kernel.kallsyms]"),
            Kind::Kernel
        );
        assert_eq!(
            Kind::of_perf_script("malloc", "/usr/lib/libc.so.6"),
            Kind::Native
        );
    }
}
