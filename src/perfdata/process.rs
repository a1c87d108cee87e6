//! One recorded process as the recording's side-band events describe it: what is mapped
//! where, and the framehop unwinder over those mappings.

use std::collections::BTreeMap;
use std::sync::Arc;

use framehop::Unwinder;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};

use super::elf::{Bytes, ElfFile};

/// What backs a mapping of executable memory.
#[derive(Clone)]
pub enum Backing {
    /// An ELF file, mapped with this bias (file address + bias = address in the process).
    Elf(Arc<ElfFile>, u64),
    /// Anonymous memory: perf names it from /tmp/perf-<pid>.map, pid being the process that
    /// made the mapping (a forked child inherits it with its parent's pid).
    PerfMap(i32),
    /// A file we cannot read or parse; named by its file name.
    Opaque(Arc<str>),
}

#[derive(Clone)]
pub struct Mapping {
    pub end: u64,
    /// Unique to this mapping event in the whole recording: names found in it can be kept.
    pub id: u64,
    pub backing: Backing,
}

#[derive(Default)]
pub struct Process {
    maps: BTreeMap<u64, Mapping>,
    unwinder: UnwinderX86_64<Bytes>,
}

impl Process {
    /// A forked child: the parent's mappings, each as the parent had it.
    pub fn fork(&self) -> Process {
        let mut child = Process::default();
        for (&start, m) in &self.maps {
            child.map(start, m.clone());
        }
        child
    }

    /// Adds a mapping at `start`, replacing whatever it overlaps (an munmap leaves no event;
    /// a later mapping at the same place tells us the old one is gone).
    pub fn map(&mut self, start: u64, mapping: Mapping) {
        let overlapping: Vec<u64> = self
            .maps
            .range(..mapping.end)
            .filter(|(_, m)| m.end > start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            if let Some(Mapping {
                backing: Backing::Elf(..),
                ..
            }) = self.maps.remove(&s)
            {
                self.unwinder.remove_module(s);
            }
        }
        if let Backing::Elf(file, bias) = &mapping.backing {
            self.unwinder
                .add_module(file.module(start..mapping.end, *bias));
        }
        self.maps.insert(start, mapping);
    }

    /// The mapping holding `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let (_, m) = self.maps.range(..=addr).next_back()?;
        (addr < m.end).then_some(m)
    }

    /// Appends to `out` the look-up address of each frame of the user stack, innermost
    /// first: DWARF CFI where a module has it, the frame pointer elsewhere (our trampolines
    /// always keep a frame record). `stack` is the copy perf took from `sp` up.
    pub fn unwind(
        &self,
        cache: &mut CacheX86_64,
        (ip, sp, bp): (u64, u64, u64),
        stack: &[u8],
        max_frames: usize,
        out: &mut Vec<u64>,
    ) {
        let mut read_stack = |addr: u64| {
            let at = usize::try_from(addr.checked_sub(sp).ok_or(())?).map_err(|_| ())?;
            let word = stack.get(at..at.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(word.try_into().expect("8 bytes")))
        };
        let mut frames = self.unwinder.iter_frames(
            ip,
            UnwindRegsX86_64::new(ip, sp, bp),
            cache,
            &mut read_stack,
        );
        while out.len() < max_frames {
            match frames.next() {
                Ok(Some(frame)) => out.push(frame.address_for_lookup()),
                // The end of the stack, or of the copy perf took of it.
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(end: u64, id: u64) -> Mapping {
        Mapping {
            end,
            id,
            backing: Backing::PerfMap(1),
        }
    }

    #[test]
    fn a_new_mapping_replaces_what_it_overlaps_and_a_fork_keeps_them() {
        let mut p = Process::default();
        p.map(0x1000, anon(0x3000, 1));
        p.map(0x3000, anon(0x4000, 2));
        assert_eq!(p.find(0x2fff).map(|m| m.id), Some(1));
        assert_eq!(p.find(0x3000).map(|m| m.id), Some(2));
        assert!(p.find(0x4000).is_none() && p.find(0xfff).is_none());
        // Over the end of the first and the start of the second: both are gone.
        p.map(0x2000, anon(0x3800, 3));
        assert!(p.find(0x1000).is_none() && p.find(0x3900).is_none());
        let child = p.fork();
        assert_eq!(child.find(0x37ff).map(|m| m.id), Some(3));
    }
}
