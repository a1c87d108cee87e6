//! Jitdump files as we write them, read back: record layout and order, indices, timestamps,
//! salted code, and unwind data that finds the right FDE where `perf inject --jit` puts it,
//! for all four ISAs.

use gimli::{BaseAddresses, CfaRule, EhFrame, EhFrameHdr, UnwindContext, UnwindSection};
use perf_trampoline::jitdump::{self, JitDump, Record, SALT_LEN};
use perf_trampoline::{
    Sink, Symbol, Target, Template, Writers, compile, endianness, jit_template, jitdump_unwind,
};

const TRIPLES: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
];

/// A scratch directory, removed when the guard drops (a failed test's too).
fn tmpdir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pt-jitdump-{tag}-"))
        .tempdir()
        .unwrap()
}

fn write_dump(t: &Template, tag: &str, names: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
    let dir = tmpdir(tag);
    let path = dir.path().join("jit-4321.dump");
    let jt = jit_template(t).unwrap();
    let mut dump = JitDump::open(&path, 4321, &jt, Writers::OnlyUs).unwrap();
    let stride = jitdump::min_stride(&jt);
    let addrs: Vec<usize> = (0..names.len())
        .map(|i| 0x7f00_0000_0000 + i * stride)
        .collect();
    for (name, addr) in names.iter().zip(&addrs) {
        dump.record(&Symbol {
            addr: *addr,
            size: t.code.len(),
            name,
        })
        .unwrap();
    }
    dump.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (bytes, addrs)
}

#[test]
fn every_record_parses_in_order_with_unique_indices_and_salted_code() {
    let t = compile(&Target::Host, false).unwrap();
    let names: &[&[u8]] = &[b"py::f:/a.py", b"py::g\n:/b\xff.py", b"py::h:/c.py"];
    let (bytes, addrs) = write_dump(&t, "order", names);
    let dump = jitdump::parse(&bytes).unwrap();
    assert_eq!(dump.trailing, 0);
    assert_eq!(dump.header.version, 1);
    assert_eq!(dump.header.pid, 4321);
    assert_eq!(dump.header.elf_mach, t.arch.elf_machine());
    assert_eq!(dump.records.len(), 2 * names.len() + 1);
    let mut last_ts = dump.header.timestamp;
    let mut loads = Vec::new();
    for (i, r) in dump.records.iter().enumerate() {
        let ts = match r {
            Record::CodeLoad { timestamp, .. }
            | Record::UnwindingInfo { timestamp, .. }
            | Record::Close { timestamp } => *timestamp,
            Record::Other { id, .. } => panic!("unexpected record {id}"),
        };
        assert!(ts >= last_ts, "timestamps go backwards at record {i}");
        last_ts = ts;
        if let Record::CodeLoad { .. } = r {
            assert!(
                matches!(dump.records[i - 1], Record::UnwindingInfo { .. }),
                "CODE_LOAD {i} is not preceded by its unwinding record"
            );
            loads.push(r.clone());
        }
    }
    assert!(matches!(dump.records.last(), Some(Record::Close { .. })));
    let mut codes = Vec::new();
    for (k, r) in loads.iter().enumerate() {
        let Record::CodeLoad {
            vma,
            code_addr,
            code_index,
            name,
            code,
            pid,
            ..
        } = r
        else {
            unreachable!()
        };
        assert_eq!(
            *code_index, k as u64,
            "indices must be unique and increasing"
        );
        assert_eq!((*vma, *code_addr), (addrs[k] as u64, addrs[k] as u64));
        assert_eq!(*pid, 4321);
        assert_eq!(
            &code[..t.code.len()],
            &t.code[..],
            "dumped code starts with the real code"
        );
        assert_eq!(code.len(), t.code.len() + SALT_LEN);
        assert!(
            !name.contains(&b'\n') && std::str::from_utf8(name).is_ok(),
            "{name:?}"
        );
        codes.push(code.clone());
    }
    codes.sort();
    codes.dedup();
    assert_eq!(
        codes.len(),
        loads.len(),
        "two functions have identical code bytes: perf would merge them"
    );
}

#[test]
fn a_truncated_dump_reads_up_to_the_last_whole_record() {
    let t = compile(&Target::Host, false).unwrap();
    let (bytes, _) = write_dump(&t, "trunc", &[b"py::a:x", b"py::b:y"]);
    let whole = jitdump::parse(&bytes).unwrap();
    let cut = jitdump::parse(&bytes[..bytes.len() - 30]).unwrap();
    assert_eq!(cut.records[..], whole.records[..whole.records.len() - 2]);
    assert!(cut.trailing > 0);
}

#[test]
fn unwind_data_finds_the_fde_where_perf_inject_places_it_on_every_isa() {
    for triple in TRIPLES {
        let t = compile(&Target::parse(triple).unwrap(), false).unwrap();
        let (bytes, _) = write_dump(&t, triple, &[b"py::f:/a.py"]);
        let dump = jitdump::parse(&bytes).unwrap();
        let Record::UnwindingInfo {
            eh_frame_hdr_size,
            mapped_size,
            data,
            ..
        } = &dump.records[0]
        else {
            panic!("{triple}: first record is not CODE_UNWINDING_INFO")
        };
        let Record::CodeLoad { code, .. } = &dump.records[1] else {
            panic!()
        };
        // perf inject: .text at a multiple-of-8 offset, .eh_frame at align8(text + code_size),
        // .eh_frame_hdr right after .eh_frame; we try both text offsets perf has used.
        for text in [0x40u64, 0x80] {
            let eh_frame_at = (text + code.len() as u64).next_multiple_of(8);
            let split = data.len() - *eh_frame_hdr_size as usize;
            let (eh, hdr) = data.split_at(split);
            let hdr_at = eh_frame_at + eh.len() as u64;
            assert!(*mapped_size >= data.len() as u64, "{triple}");
            let endian = endianness(&t);
            let bases = BaseAddresses::default()
                .set_eh_frame(eh_frame_at)
                .set_eh_frame_hdr(hdr_at);
            let parsed = EhFrameHdr::new(hdr, endian).parse(&bases, 8).unwrap();
            let table = parsed.table().expect("binary search table");
            let eh_frame = EhFrame::new(eh, endian);
            let mut ctx = UnwindContext::new();
            let ret = text + u64::from(t.call_return_offset);
            let fde = table
                .fde_for_address(&eh_frame, &bases, ret - 1, EhFrame::cie_from_offset)
                .unwrap_or_else(|e| {
                    panic!("{triple} text@{text:#x}: no FDE via eh_frame_hdr: {e}")
                });
            assert_eq!(
                fde.initial_address(),
                text,
                "{triple}: FDE must start at the code"
            );
            assert_eq!(
                fde.len(),
                t.code.len() as u64,
                "{triple}: FDE must cover exactly the code"
            );
            let row = fde
                .unwind_info_for_address(&eh_frame, &bases, &mut ctx, ret - 1)
                .unwrap();
            assert!(
                matches!(row.cfa(), CfaRule::RegisterAndOffset { .. }),
                "{triple}"
            );
            // Nothing outside the code: the salt and the gap belong to no FDE.
            let past = text + t.code.len() as u64;
            assert!(
                table
                    .fde_for_address(&eh_frame, &bases, past, EhFrame::cie_from_offset)
                    .is_err(),
                "{triple}: an FDE claims the bytes after the code"
            );
        }
    }
}

#[test]
fn slot_stride_keeps_perfs_synthetic_ranges_apart() {
    for triple in TRIPLES {
        let t = compile(&Target::parse(triple).unwrap(), false).unwrap();
        let size = jitdump::dumped_code_size(t.code.len());
        let u = jitdump_unwind(&t, size).unwrap();
        let stride = jitdump::min_stride(&jit_template(&t).unwrap()) as u64;
        assert!(
            stride >= size.next_multiple_of(8) + u.mapped_size,
            "{triple}"
        );
    }
}
