//! Which jitted functions a recording's samples can reach: those whose code holds a value a
//! sample carries (its IP, a user register, a callchain entry, a word of its copied stack).
//! A frame's return address into a function is one of those values, so every function a
//! symbolized call chain can show is among them; a few more (stale stack words) cost nothing.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use linux_perf_data::linux_perf_event_reader::{EventRecord, SampleRecord};
use linux_perf_data::{PerfFileReader, PerfFileRecord};

use crate::perfdata::Error;
use crate::registry::OutputKind;

/// A jitdump the recording maps, as the recording names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DumpRef {
    /// Its path in the recording's MMAP record.
    pub path: PathBuf,
    /// The process it names (from the file name, as perf reads it).
    pub pid: u32,
    /// The process that maps it, as the recording knows it: another number than `pid` for a
    /// process in another pid namespace (a container), which names its files by its own pid.
    pub mapped_by: u32,
}

/// Every jitdump the recording at `path` maps, once per process that maps it.
pub fn dumps(path: &Path) -> Result<Vec<DumpRef>, String> {
    let mut found = Vec::new();
    each_record(path, |record| {
        let (name, mapped_by) = match record {
            EventRecord::Mmap(m) => (m.path.as_slice().into_owned(), m.pid),
            EventRecord::Mmap2(m) => (m.path.as_slice().into_owned(), m.pid),
            _ => return ControlFlow::Continue(()),
        };
        let name = PathBuf::from(std::ffi::OsString::from_vec(name));
        let parsed = name
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(OutputKind::parse_file_name);
        if let Some((OutputKind::JitDump, pid)) = parsed {
            let dump = DumpRef {
                path: name,
                pid,
                // perf's synthesized records of a system-wide run may carry no process.
                mapped_by: u32::try_from(mapped_by)
                    .ok()
                    .filter(|&p| p > 0)
                    .unwrap_or(pid),
            };
            if !found.contains(&dump) {
                found.push(dump);
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}

/// Code ranges of one process's functions: `(start, end, function id)`, sorted by start.
pub type Ranges = Vec<(u64, u64, usize)>;

/// Marks the functions (by the ids in `ranges`, below `functions`) some sample's values fall
/// in; also gives the samples read. `tick` gets the samples read so far, now and then.
pub fn mark<E>(
    path: &Path,
    ranges: &HashMap<u32, Ranges>,
    functions: usize,
    mut tick: impl FnMut(u64) -> Result<(), E>,
) -> Result<(Vec<bool>, u64), Error<E>> {
    let mut marked = vec![false; functions];
    let mut samples = 0u64;
    let mut stopped = None;
    each_record(path, |record| {
        let EventRecord::Sample(s) = record else {
            return ControlFlow::Continue(());
        };
        samples += 1;
        if samples.is_multiple_of(4096)
            && let Err(e) = tick(samples)
        {
            stopped = Some(e);
            return ControlFlow::Break(());
        }
        if let Some(r) = s.pid.and_then(|p| ranges.get(&u32::try_from(p).ok()?)) {
            for value in values(&s) {
                if let Some(id) = find(r, value) {
                    marked[id] = true;
                }
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(Error::Read)?;
    match stopped {
        Some(e) => Err(Error::Stopped(e)),
        None => Ok((marked, samples)),
    }
}

/// The id of the function whose code holds `addr`.
fn find(ranges: &Ranges, addr: u64) -> Option<usize> {
    let after = ranges.partition_point(|&(start, _, _)| start <= addr);
    let &(_, end, index) = ranges.get(after.checked_sub(1)?)?;
    (addr < end).then_some(index)
}

/// Every value in a sample that may be an address in a function on its stack.
fn values<'a>(s: &'a SampleRecord<'a>) -> impl Iterator<Item = u64> + 'a {
    let ip = s.ip.into_iter();
    let regs = s
        .user_regs
        .iter()
        .flat_map(|regs| (0..64).filter_map(|r| regs.get(r)));
    let chain = s
        .callchain
        .iter()
        .flat_map(|c| (0..c.len()).filter_map(|i| c.get(i)));
    let stack = s.user_stack.iter().flat_map(|(stack, dyn_size)| {
        let bytes = stack.as_slice();
        let len = bytes.len().min(*dyn_size as usize);
        // The copy starts at the stack pointer, which the ABIs keep 8-byte aligned, and saved
        // return addresses are 8-byte slots.
        let words: Vec<u64> = bytes[..len]
            .chunks_exact(8)
            .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
            .collect();
        words.into_iter()
    });
    ip.chain(regs).chain(chain).chain(stack)
}

/// Calls `f` on every event record of the recording until it breaks; a recording cut short
/// ends early.
fn each_record(
    path: &Path,
    mut f: impl FnMut(EventRecord<'_>) -> ControlFlow<()>,
) -> Result<(), String> {
    let PerfFileReader {
        mut perf_file,
        mut record_iter,
    } = crate::perfdata::open(path, Default::default())?;
    while let Ok(Some(record)) = record_iter.next_record(&mut perf_file) {
        if let PerfFileRecord::EventRecord { record, .. } = record
            && let Ok(parsed) = record.parse()
            && f(parsed).is_break()
        {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_found_in_the_range_that_holds_it_and_nowhere_else() {
        let ranges: Ranges = vec![
            (0x1000, 0x1010, 0),
            (0x1010, 0x1020, 1),
            (0x2000, 0x2008, 2),
        ];
        assert_eq!(find(&ranges, 0xfff), None);
        assert_eq!(find(&ranges, 0x1000), Some(0));
        assert_eq!(find(&ranges, 0x100f), Some(0));
        assert_eq!(find(&ranges, 0x1010), Some(1));
        assert_eq!(find(&ranges, 0x1020), None);
        assert_eq!(find(&ranges, 0x2007), Some(2));
        assert_eq!(find(&ranges, 0x2008), None);
        assert_eq!(find(&ranges, u64::MAX), None);
    }
}
