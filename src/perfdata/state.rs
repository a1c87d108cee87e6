//! The state the unwinder keeps while it reads one recording: each process's mappings, the
//! files and perf maps that name their frames, and every sample read so far.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use framehop::x86_64::CacheX86_64;
use linux_perf_data::PerfFile;
use linux_perf_data::linux_perf_event_reader::{
    CommOrExecRecord, EventRecord, ForkOrExitRecord, SampleRecord, constants as c,
};

use super::elf::{self, ElfFile};
use super::process::{Backing, Mapping, Process};
use super::symbols::{self, SymbolTable};
use crate::profile::{self, Frame, Kind, Samples};
use crate::registry::{DEFAULT_DIR, OutputKind};

/// Frames kept per sample, as `perf script --max-stack 1024` keeps.
const MAX_FRAMES: usize = 1024;
/// perf's callchain context markers are the values from -4095 up (PERF_CONTEXT_MAX).
const CONTEXT_MAX: u64 = -4095i64 as u64;
const CONTEXT_KERNEL: u64 = -128i64 as u64;

/// Every sample, unwound and named.
#[derive(Default)]
pub(crate) struct Unwound {
    pub profile: Samples,
    pub samples: u64,
    /// Every process of the recording.
    pub pids: BTreeSet<i32>,
    /// Things the user should know: perf maps missing or refused, files changed since the
    /// recording, a recording cut short.
    pub notes: Vec<String>,
}

/// Files to read elsewhere than the recording names them: `(pid, path)` -> where.
pub(crate) type Moved = HashMap<(i32, PathBuf), PathBuf>;

#[derive(Default)]
pub(super) struct State {
    processes: HashMap<i32, Process>,
    comms: HashMap<i32, u32>,
    elf_files: HashMap<Vec<u8>, Option<Arc<ElfFile>>>,
    build_ids: HashMap<Vec<u8>, Vec<u8>>,
    moved: Moved,
    perf_maps: HashMap<i32, Option<SymbolTable>>,
    kernel: Option<SymbolTable>,
    vdso: Option<Option<Arc<ElfFile>>>,
    cache: CacheX86_64,
    next_mapping: u64,
    /// Frame names by (mapping id, or pid for unmapped addresses, and address).
    frame_names: HashMap<(u64, u64), u32>,
    /// Frames in anonymous memory, named by `finish`: (index into `names`, the pid whose
    /// perf map names the memory, the sample's pid, address). The perf maps grow while the
    /// program runs, and a recording read as it is made would otherwise see them half written.
    unnamed: Vec<(u32, Option<i32>, i32, u64)>,
    /// Samples perf dropped because its buffers were full (reader or disk too slow).
    lost: u64,
    interned: HashMap<String, u32>,
    /// Every frame name and thread name the samples use (indices in `stacks` and `samples`).
    names: Vec<String>,
    /// Kernel frames and the module of native ones, by name index (Python and unnamed
    /// frames are told apart once named).
    kernel_names: HashSet<u32>,
    modules: HashMap<u32, Arc<str>>,
    /// Distinct stacks (name indices, innermost first) and their indices.
    stacks: HashMap<Vec<u32>, u32>,
    /// Every sample, named by `finish`: 32 bytes each (a minute of 4 busy threads at 999 Hz
    /// is 8 MB), so the formats with timelines have each sample's time and thread.
    samples: Vec<RawSample>,
    addrs: Vec<u64>,
    out: Unwound,
}

/// A sample as read, before the perf maps name its Python frames.
struct RawSample {
    time: u64,
    period: u64,
    pid: i32,
    tid: i32,
    comm: u32,
    stack: u32,
}

impl State {
    pub(super) fn new(perf_file: &PerfFile, moved: Moved) -> State {
        State {
            // perf writes the build ids of the files its samples hit at the end of the
            // recording (not at all in pipe mode, where the files are read while they are
            // current anyway).
            build_ids: perf_file
                .build_ids()
                .unwrap_or_default()
                .into_values()
                .map(|info| (info.path, trim_zeros(&info.build_id).to_vec()))
                .collect(),
            moved,
            ..State::default()
        }
    }

    /// Takes in one record; kinds that tell nothing about the samples' stacks are passed over.
    pub(super) fn record(&mut self, record: EventRecord<'_>) {
        match record {
            EventRecord::Sample(s) => self.sample(&s),
            EventRecord::Mmap2(m) => self.mmap(
                m.pid,
                m.address,
                m.length,
                m.page_offset,
                m.protection & libc::PROT_EXEC as u32 != 0,
                &m.path.as_slice(),
            ),
            EventRecord::Mmap(m) => self.mmap(
                m.pid,
                m.address,
                m.length,
                m.page_offset,
                m.is_executable,
                &m.path.as_slice(),
            ),
            EventRecord::Comm(comm) => self.comm(&comm),
            EventRecord::Fork(fork) => self.fork(&fork),
            EventRecord::Lost(lost) => self.lost += lost.count,
            _ => {}
        }
    }

    /// Samples read so far.
    pub(super) fn samples(&self) -> u64 {
        self.out.samples
    }

    pub(super) fn note(&mut self, note: String) {
        self.out.notes.push(note);
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.interned.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.interned.insert(name.to_string(), i);
        i
    }

    fn mmap(&mut self, pid: i32, start: u64, len: u64, offset: u64, exec: bool, path: &[u8]) {
        if pid == -1 || !exec || len == 0 {
            return; // the kernel's own, or data
        }
        self.out.pids.insert(pid);
        let backing = if is_anonymous(path) {
            Backing::PerfMap(pid)
        } else if path == b"[vdso]" {
            match self.vdso.get_or_insert_with(|| elf::vdso().map(Arc::new)) {
                Some(file) => Backing::Elf(file.clone(), file.bias(start, offset)),
                None => Backing::Opaque("[vdso]".into()),
            }
        } else if path.ends_with(b".dump") && base_name(path).starts_with("jit-") {
            // A jitdump's marker mapping, not code: `perf inject` is what names its functions.
            Backing::Opaque(base_name(path).into())
        } else {
            let (recorded, notes) = (self.build_ids.get(path), &mut self.out.notes);
            let named = Path::new(std::ffi::OsStr::from_bytes(path));
            let at = self
                .moved
                .get(&(pid, named.to_path_buf()))
                .map_or(named, PathBuf::as_path);
            let file = self
                .elf_files
                .entry(at.as_os_str().as_bytes().to_vec())
                .or_insert_with(|| {
                    let elf = ElfFile::load(at)?;
                    let now = elf.build_id.as_deref().map(trim_zeros);
                    if recorded.is_some_and(|r| now.is_some_and(|n| n != r.as_slice())) {
                        // Rebuilt or upgraded since: its symbols and CFI would be wrong.
                        notes.push(format!(
                            "{} changed since the recording (another build id): its frames stay unnamed",
                            String::from_utf8_lossy(path)
                        ));
                        return None;
                    }
                    Some(Arc::new(elf))
                })
                .clone();
            match file {
                Some(file) => Backing::Elf(file.clone(), file.bias(start, offset)),
                None => Backing::Opaque(base_name(path).into()),
            }
        };
        self.next_mapping += 1;
        let mapping = Mapping {
            end: start.saturating_add(len),
            id: self.next_mapping,
            backing,
        };
        self.processes.entry(pid).or_default().map(start, mapping);
    }

    fn comm(&mut self, comm: &CommOrExecRecord<'_>) {
        self.out.pids.insert(comm.pid);
        if comm.is_execve {
            // A new program: nothing of the old address space is left.
            self.processes.insert(comm.pid, Process::default());
        }
        let name = String::from_utf8_lossy(&comm.name.as_slice()).replace(';', ":");
        let name = self.intern(&name);
        self.comms.insert(comm.tid, name);
    }

    fn fork(&mut self, fork: &ForkOrExitRecord) {
        self.out.pids.insert(fork.pid);
        if let Some(&comm) = self.comms.get(&fork.ptid) {
            self.comms.insert(fork.tid, comm);
        }
        if fork.pid != fork.ppid {
            let child = self
                .processes
                .get(&fork.ppid)
                .map(Process::fork)
                .unwrap_or_default();
            self.processes.insert(fork.pid, child);
        }
    }

    fn sample(&mut self, s: &SampleRecord<'_>) {
        let (Some(pid), Some(tid)) = (s.pid, s.tid) else {
            return;
        };
        self.out.samples += 1;
        let comm = match self.comms.get(&tid).or_else(|| self.comms.get(&pid)) {
            Some(&c) => c,
            None => self.intern(&format!("[pid {pid}]")),
        };
        let mut frames = Vec::new();
        self.kernel_frames(s, &mut frames);
        self.user_frames(pid, s, &mut frames);
        let next = self.stacks.len() as u32;
        let stack = *self.stacks.entry(frames).or_insert(next);
        self.samples.push(RawSample {
            time: s.timestamp.unwrap_or(0),
            period: s.period.unwrap_or(1),
            pid,
            tid,
            comm,
            stack,
        });
    }

    /// The kernel part of perf's callchain, innermost first.
    fn kernel_frames(&mut self, s: &SampleRecord<'_>, frames: &mut Vec<u32>) {
        let Some(chain) = &s.callchain else { return };
        let mut in_kernel = false;
        for i in 0..chain.len() {
            let addr = chain.get(i).expect("index below len");
            if addr >= CONTEXT_MAX {
                in_kernel = addr == CONTEXT_KERNEL;
                continue;
            }
            if in_kernel && frames.len() < MAX_FRAMES {
                let kernel = self.kernel.get_or_insert_with(symbols::read_kallsyms);
                let name = kernel.lookup(addr).unwrap_or("[kernel]").to_string();
                let name = self.intern(&name);
                self.kernel_names.insert(name);
                frames.push(name);
            }
        }
    }

    fn user_frames(&mut self, pid: i32, s: &SampleRecord<'_>, frames: &mut Vec<u32>) {
        let (Some(regs), Some((stack, dyn_size))) = (&s.user_regs, &s.user_stack) else {
            return;
        };
        let (Some(ip), Some(sp), Some(bp)) = (
            regs.get(c::PERF_REG_X86_IP),
            regs.get(c::PERF_REG_X86_SP),
            regs.get(c::PERF_REG_X86_BP),
        ) else {
            return; // a kernel thread: no user registers
        };
        let stack = stack.as_slice();
        let stack = &stack[..stack.len().min(*dyn_size as usize)];
        let mut addrs = std::mem::take(&mut self.addrs);
        addrs.clear();
        if let Some(process) = self.processes.get(&pid) {
            process.unwind(
                &mut self.cache,
                (ip, sp, bp),
                stack,
                MAX_FRAMES - frames.len(),
                &mut addrs,
            );
        } else {
            addrs.push(ip);
        }
        for &addr in &addrs {
            let name = self.name_user_frame(pid, addr);
            frames.push(name);
        }
        self.addrs = addrs;
    }

    fn name_user_frame(&mut self, pid: i32, addr: u64) -> u32 {
        let mapping = self.processes.get(&pid).and_then(|p| p.find(addr)).cloned();
        let key = (
            mapping
                .as_ref()
                .map_or(1 << 63 | pid as u32 as u64, |m| m.id),
            addr,
        );
        if let Some(&name) = self.frame_names.get(&key) {
            return name;
        }
        let (name, module): (String, Arc<str>) = match mapping.map(|m| m.backing) {
            Some(Backing::Elf(file, bias)) => match file.symbols.lookup(addr.wrapping_sub(bias)) {
                Some(sym) => (sym.to_string(), file.name.as_str().into()),
                None => (format!("[{}]", file.name), file.name.as_str().into()),
            },
            Some(Backing::Opaque(name)) => (format!("[{name}]"), name),
            Some(Backing::PerfMap(owner)) => return self.name_later(Some(owner), pid, key, addr),
            None => return self.name_later(None, pid, key, addr),
        };
        let name = self.intern(&name);
        self.modules.entry(name).or_insert(module);
        self.frame_names.insert(key, name);
        name
    }

    /// A name slot for a frame `finish` names from the perf maps.
    fn name_later(&mut self, owner: Option<i32>, pid: i32, key: (u64, u64), addr: u64) -> u32 {
        let name = self.names.len() as u32;
        self.names.push(String::new());
        self.unnamed.push((name, owner, pid, addr));
        self.frame_names.insert(key, name);
        name
    }

    fn perf_map_symbol(&mut self, pid: i32, addr: u64) -> Option<String> {
        let notes = &mut self.out.notes;
        let table = self.perf_maps.entry(pid).or_insert_with(|| {
            let path = perf_map_path(pid);
            match symbols::read_perf_map(&path) {
                Ok(t) => Some(t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    notes.push(format!("{} ignored: {e}", path.display()));
                    None
                }
            }
        });
        table.as_ref()?.lookup(addr).map(str::to_string)
    }

    pub(super) fn finish(mut self) -> Unwound {
        if self.lost > 0 {
            self.out.notes.push(format!(
                "perf lost {} records (its buffers were full: the machine was too busy to keep up)",
                self.lost
            ));
        }
        for (name, owner, pid, addr) in std::mem::take(&mut self.unnamed) {
            // Code a forked child named in its own map may sit in memory its parent mapped.
            let found = owner
                .and_then(|owner| self.perf_map_symbol(owner, addr))
                .or_else(|| self.perf_map_symbol(pid, addr));
            self.names[name as usize] = found.unwrap_or_else(|| "[unknown]".to_string());
        }
        let mut missing: Vec<i32> = self
            .perf_maps
            .iter()
            .filter(|(_, t)| t.is_none())
            .map(|(&p, _)| p)
            .collect();
        missing.sort_unstable();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|&p| perf_map_path(p).display().to_string())
                .collect();
            self.out.notes.push(format!(
                "no perf map for some code (its frames stay [unknown]): {}",
                list.join(", ")
            ));
        }
        self.out.profile = self.profile();
        self.out
    }

    /// The samples with their frames named, in the model the output formats are written from.
    fn profile(&mut self) -> Samples {
        let mut profile = Samples::default();
        let mut frames: Vec<Option<u32>> = vec![None; self.names.len()];
        let mut stacks: Vec<(&Vec<u32>, u32)> = self.stacks.iter().map(|(f, &i)| (f, i)).collect();
        stacks.sort_unstable_by_key(|&(_, i)| i);
        let mut renamed = Vec::with_capacity(stacks.len());
        let mut frame_ids = Vec::new();
        for (names, _) in stacks {
            frame_ids.clear();
            for &n in names {
                let id = *frames[n as usize].get_or_insert_with(|| {
                    let name = self.names[n as usize].clone();
                    let kind = if self.kernel_names.contains(&n) {
                        Kind::Kernel
                    } else if name.starts_with("py::") {
                        Kind::Python
                    } else {
                        Kind::Native
                    };
                    let module = self.modules.get(&n).map(|m| m.to_string());
                    profile.frame(Frame { name, kind, module })
                });
                frame_ids.push(id);
            }
            renamed.push(profile.stack(&frame_ids));
        }
        for s in std::mem::take(&mut self.samples) {
            let thread = profile.thread(s.pid, s.tid, &self.names[s.comm as usize]);
            profile.add(profile::Sample {
                time: s.time,
                thread,
                stack: renamed[s.stack as usize],
                period: s.period,
            });
        }
        profile
    }
}

/// perf's rule for memory it names from /tmp/perf-<pid>.map: anonymous memory, and the
/// few pseudo-files that are not files.
fn is_anonymous(path: &[u8]) -> bool {
    path.is_empty()
        || path == b"//anon"
        || path == b"[heap]"
        || [
            &b"/dev/zero"[..],
            b"/anon_hugepage",
            b"[stack",
            b"/SYSV",
            b"[anon:",
        ]
        .iter()
        .any(|p| path.starts_with(p))
}

/// A build id without the zeros perf pads it with to 20 bytes.
fn trim_zeros(id: &[u8]) -> &[u8] {
    let end = id.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &id[..end]
}

fn base_name(path: &[u8]) -> String {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    String::from_utf8_lossy(name).into_owned()
}

/// Where perf (and so we) look for process `pid`'s perf map: always /tmp, whatever our own
/// output directory is.
fn perf_map_path(pid: i32) -> PathBuf {
    OutputKind::PerfMap.path(Path::new(DEFAULT_DIR), pid as u32)
}
