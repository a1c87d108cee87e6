//! ELF files the recorded processes mapped: their unwind sections for framehop, their
//! function symbols, and where a mapping of them puts each address.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use framehop::{ExplicitModuleSectionInfo, Module};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use super::symbols::SymbolTable;

pub type Bytes = Arc<[u8]>;

/// What we keep of one ELF file.
pub struct ElfFile {
    /// The file name without its directory, for frames no symbol covers.
    pub name: String,
    /// Its GNU build id, to tell whether it is still the file the recording saw.
    pub build_id: Option<Vec<u8>>,
    /// (file offset, address, size in the file) of each loadable segment.
    segments: Vec<(u64, u64, u64)>,
    eh_frame: Option<(Range<u64>, Bytes)>,
    eh_frame_hdr: Option<(Range<u64>, Bytes)>,
    debug_frame: Option<Bytes>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    pub symbols: SymbolTable,
}

impl ElfFile {
    /// Reads the ELF file at `path`; None when it cannot be read or is not ELF.
    pub fn load(path: &Path) -> Option<ElfFile> {
        let data = std::fs::read(path).ok()?;
        let name = path
            .file_name()
            .map_or_else(|| path.to_string_lossy(), |n| n.to_string_lossy());
        ElfFile::parse(&name, &data)
    }

    pub fn parse(name: &str, data: &[u8]) -> Option<ElfFile> {
        let file = object::File::parse(data).ok()?;
        if file.format() != object::BinaryFormat::Elf {
            return None;
        }
        let mut symbols = function_symbols(&file);
        if file.section_by_name(".symtab").is_none() {
            // Stripped (only exported functions left): the rest may be in a debug package.
            symbols.extend(separate_debug_symbols(&file).unwrap_or_default());
        }
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            let range = s.address()..s.address() + s.size();
            // Compressed sections (.debug_frame may be) need a decompressor we do not carry.
            let plain = s.compressed_file_range().ok()?.format == object::CompressionFormat::None;
            Some((
                range,
                plain.then(|| s.data().ok().map(Bytes::from)).flatten(),
            ))
        };
        let with_data = |name: &str| section(name).and_then(|(r, d)| Some((r, d?)));
        Some(ElfFile {
            name: name.to_string(),
            build_id: file.build_id().ok().flatten().map(<[u8]>::to_vec),
            segments: file
                .segments()
                .map(|s| {
                    let (offset, size) = s.file_range();
                    (offset, s.address(), size)
                })
                .collect(),
            eh_frame: with_data(".eh_frame"),
            eh_frame_hdr: with_data(".eh_frame_hdr"),
            debug_frame: with_data(".debug_frame").map(|(_, d)| d),
            text: section(".text").map(|(r, _)| r),
            got: section(".got").map(|(r, _)| r),
            symbols: SymbolTable::new(symbols),
        })
    }

    /// What to add to an address in the file to get where the mapping of file offset
    /// `offset` at `start` puts it.
    pub fn bias(&self, start: u64, offset: u64) -> u64 {
        let (seg_offset, seg_addr) = self
            .segments
            .iter()
            .find(|&&(o, _, size)| o <= offset && offset < o + size)
            .map_or((0, 0), |&(o, a, _)| (o, a));
        start
            .wrapping_sub(offset)
            .wrapping_add(seg_offset)
            .wrapping_sub(seg_addr)
    }

    /// The framehop module for a mapping of this file over `avma` with `bias`.
    pub fn module(&self, avma: Range<u64>, bias: u64) -> Module<Bytes> {
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: self.eh_frame.as_ref().map(|(_, d)| d.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
            debug_frame: self.debug_frame.clone(),
            ..Default::default()
        };
        Module::new(self.name.clone(), avma, bias, info)
    }
}

fn function_symbols(file: &object::File<'_>) -> Vec<(u64, u64, String)> {
    file.symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
        .filter_map(|s| Some((s.address(), s.size(), demangle(s.name().ok()?))))
        .collect()
}

/// Rust symbols as perf shows them (`crate::module::function`); others as they are.
fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_string(),
    }
}

/// The functions of the debug file Debian's `-dbgsym` packages (and most distributions)
/// install as /usr/lib/debug/.build-id/<2 hex digits>/<rest>.debug.
fn separate_debug_symbols(file: &object::File<'_>) -> Option<Vec<(u64, u64, String)>> {
    let id = file.build_id().ok()??;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let path = format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        hex.get(..2)?,
        hex.get(2..)?
    );
    let debug = std::fs::read(path).ok()?;
    Some(function_symbols(&object::File::parse(&*debug).ok()?))
}

/// The kernel's vDSO as this process has it mapped: the same image the recorded processes
/// had, when this runs on the machine that recorded (perf keeps no copy in perf.data).
pub fn vdso() -> Option<ElfFile> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    );
    // SAFETY: the kernel maps the vDSO readable for the life of the process, at these bounds.
    let image = unsafe { std::slice::from_raw_parts(start as *const u8, end.checked_sub(start)?) };
    ElfFile::parse("[vdso]", image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_binary_and_the_vdso() {
        let exe = std::env::current_exe().unwrap();
        let elf = ElfFile::load(&exe).unwrap();
        assert!(elf.eh_frame.is_some() && elf.eh_frame_hdr.is_some());
        let vdso = vdso().expect("every x86-64 Linux process has a vDSO");
        assert!(vdso.eh_frame.is_some());
        assert!(!vdso.symbols.is_empty(), "the vDSO names its functions");
    }

    #[test]
    fn bias_maps_file_offsets_to_addresses() {
        let mut elf = ElfFile::parse(
            "x",
            &std::fs::read(std::env::current_exe().unwrap()).unwrap(),
        )
        .unwrap();
        elf.segments = vec![(0, 0, 0x1000), (0x1000, 0x201000, 0x5000)];
        // Code at file offset 0x1000, mapped at 0x7f0000001000: address 0x201000 lands there.
        assert_eq!(
            elf.bias(0x7f00_0000_1000, 0x1000).wrapping_add(0x201000),
            0x7f00_0000_1000
        );
    }
}
