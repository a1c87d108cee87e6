//! Address-sorted symbol tables (an ELF file's functions, a perf map, the kernel's
//! kallsyms) and look-up by address.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::registry::perf_map;

/// Symbols sorted by start address. A symbol of size 0 reaches to the next one (as perf
/// treats them: kallsyms has no sizes, some assembly functions in ELF files neither).
#[derive(Default)]
pub struct SymbolTable {
    starts: Vec<u64>,
    ends: Vec<u64>,
    names: Vec<String>,
}

impl SymbolTable {
    /// Builds the table from `(start, size, name)` entries in any order.
    pub fn new(mut entries: Vec<(u64, u64, String)>) -> SymbolTable {
        entries.sort_by_key(|e| e.0);
        let mut table = SymbolTable::default();
        for (i, (start, size, _)) in entries.iter().enumerate() {
            let end = match size {
                0 => entries[i + 1..]
                    .iter()
                    .map(|e| e.0)
                    .find(|&s| s > *start)
                    .unwrap_or(u64::MAX),
                n => start.saturating_add(*n),
            };
            table.starts.push(*start);
            table.ends.push(end);
        }
        table.names = entries.into_iter().map(|e| e.2).collect();
        table
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The name of the symbol that covers `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.starts.partition_point(|&s| s <= addr).checked_sub(1)?;
        // Sized symbols may leave gaps, and a big one may hide behind a later small one.
        (i.saturating_sub(8)..=i)
            .rev()
            .find(|&j| addr < self.ends[j])
            .map(|j| self.names[j].as_str())
    }
}

/// Reads a perf map (`<hex start> <hex size> <name>` lines). Like perf, only a regular file
/// of ours or root's: a map someone else planted in /tmp must not name our frames. Never
/// through a symlink.
pub fn read_perf_map(path: &Path) -> io::Result<SymbolTable> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    let me = crate::os::euid();
    if !meta.is_file() || (meta.uid() != me && meta.uid() != 0) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("not a regular file owned by uid {me} or root"),
        ));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut text)?;
    let entries = text
        .split(|&b| b == b'\n')
        .filter_map(perf_map::parse_line)
        .map(|s| {
            (
                s.addr as u64,
                s.size as u64,
                String::from_utf8_lossy(&s.name).into_owned(),
            )
        })
        .collect();
    Ok(SymbolTable::new(entries))
}

/// The kernel's function symbols from /proc/kallsyms; empty when its addresses are hidden
/// (kptr_restrict shows them as zeros).
pub fn read_kallsyms() -> SymbolTable {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let entries = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let addr = u64::from_str_radix(words.next()?, 16).ok()?;
            let kind = words.next()?;
            let name = words.next()?;
            (addr != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                .then(|| (addr, 0, name.to_string()))
        })
        .collect();
    SymbolTable::new(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            (0x2000, 0x10, "small".into()),
            (0x1000, 0x2000, "big".into()),
            (0x4000, 0, "open".into()),
            (0x5000, 0x10, "last".into()),
        ])
    }

    #[test]
    fn looks_up_by_start_size_and_next_start() {
        let t = table();
        assert_eq!(t.lookup(0xfff), None);
        assert_eq!(t.lookup(0x1000), Some("big"));
        assert_eq!(t.lookup(0x2008), Some("small"));
        // Past "small" but still inside "big", which starts before it.
        assert_eq!(t.lookup(0x2fff), Some("big"));
        assert_eq!(t.lookup(0x3000), None);
        assert_eq!(t.lookup(0x4fff), Some("open"));
        assert_eq!(t.lookup(0x5010), None);
    }

    #[test]
    fn perf_map_refuses_symlinks_and_other_users_files() {
        let dir = tempfile::Builder::new()
            .prefix("perfdata-symbols-")
            .tempdir()
            .unwrap();
        let map = dir.path().join("perf-1.map");
        std::fs::write(&map, "1000 10 py::f:/a.py\n\n2000 8 py::g:/a.py\n").unwrap();
        let t = read_perf_map(&map).unwrap();
        assert_eq!(t.lookup(0x1008), Some("py::f:/a.py"));
        assert_eq!(t.lookup(0x2007), Some("py::g:/a.py"));
        let link = dir.path().join("perf-2.map");
        std::os::unix::fs::symlink(&map, &link).unwrap();
        assert!(read_perf_map(&link).is_err());
        if crate::os::euid() == 0 {
            // A map owned by another user (only root can make one for the test): refused.
            std::os::unix::fs::chown(&map, Some(4242), None).unwrap();
            assert_eq!(
                read_perf_map(&map).err().map(|e| e.kind()),
                Some(io::ErrorKind::PermissionDenied)
            );
        }
    }
}
