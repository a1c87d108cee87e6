//! Property tests: whatever names and addresses come in, every record we write reads back
//! as exactly what was recorded (names as cleaned), and one record is always one record.

use perf_trampoline::jitdump::{self, JitDump, Record, SALT_LEN};
use perf_trampoline::perf_map::PerfMap;
use perf_trampoline::{
    MAX_NAME_BYTES, Sink, Symbol, Target, Writers, clean_name as clean, compile, jit_template,
};
use proptest::prelude::*;

fn names() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        ".{0,100}".prop_map(String::into_bytes),
        // Now and then far past the length limit.
        (any::<u8>(), 4000..9000usize).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn symbols() -> impl Strategy<Value = Vec<(usize, usize, Vec<u8>)>> {
    proptest::collection::vec((any::<usize>(), 1..4096usize, names()), 1..20)
}

/// A scratch directory, removed when the guard drops (a failed case's too).
fn tmp(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("pt-roundtrip-{tag}-"))
        .tempdir()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn cleaned_names_are_one_short_valid_line(raw in names()) {
        let c = clean(&raw);
        prop_assert!(c.len() <= MAX_NAME_BYTES);
        prop_assert!(!c.chars().any(char::is_control));
        prop_assert_eq!(clean(c.as_bytes()), c.clone(), "cleaning twice changes nothing");
        if let Ok(s) = std::str::from_utf8(&raw)
            && s.len() <= MAX_NAME_BYTES
            && !s.chars().any(char::is_control)
        {
            prop_assert_eq!(c, s, "clean names pass unchanged");
        }
    }

    #[test]
    fn perf_map_lines_read_back_as_recorded(syms in symbols()) {
        let dir = tmp("map");
        let path = dir.path().join("perf-1.map");
        let mut map = PerfMap::open(&path, Writers::OnlyUs).unwrap();
        for (addr, size, name) in &syms {
            map.record(&Symbol { addr: *addr, size: *size, name }).unwrap();
        }
        let back = map.read_back().unwrap();
        let live = std::fs::read(&path).unwrap();
        map.close().unwrap();
        let text = std::fs::read(&path).unwrap();
        drop(dir);
        // While open, the unused room past the records reads as blank lines; closing cuts it.
        prop_assert!(live.starts_with(&text) && live[text.len()..].iter().all(|&b| b == b'\n'));
        prop_assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), syms.len());
        prop_assert_eq!(back.len(), syms.len());
        for ((addr, size, name), got) in syms.iter().zip(&back) {
            prop_assert_eq!((got.addr, got.size), (*addr, *size));
            let want = clean(name);
            prop_assert_eq!(&got.name[..], want.as_bytes());
        }
    }

    #[test]
    fn jitdump_records_read_back_as_recorded(syms in symbols()) {
        let t = jit_template(&compile(&Target::Host, false).unwrap()).unwrap();
        let dir = tmp("dump");
        let path = dir.path().join("jit-1.dump");
        let mut dump = JitDump::open(&path, 1, &t, Writers::OnlyUs).unwrap();
        let batch: Vec<Symbol> = syms.iter().map(|(a, s, n)| Symbol { addr: *a, size: *s, name: n }).collect();
        // Half one by one, half in one batch (the after-fork path).
        let (one, many) = batch.split_at(batch.len() / 2);
        for s in one {
            dump.record(s).unwrap();
        }
        dump.record_many(many).unwrap();
        let live = std::fs::read(&path).unwrap();
        dump.close().unwrap();
        let parsed = jitdump::parse(&std::fs::read(&path).unwrap()).unwrap();
        drop(dir);
        // While open, zeros follow the records (perf stops there); closing cuts them.
        let live_dump = jitdump::parse(&live).unwrap();
        prop_assert!(live[live.len() - live_dump.trailing..].iter().all(|&b| b == 0));
        prop_assert_eq!(live_dump.records.len() + 1, parsed.records.len(), "all but CODE_CLOSE");
        prop_assert_eq!(parsed.trailing, 0);
        let loads: Vec<_> = parsed.records.iter().filter_map(|r| match r {
            Record::CodeLoad { code_addr, code_index, name, code, .. } => Some((*code_addr, *code_index, name.clone(), code.len())),
            _ => None,
        }).collect();
        prop_assert_eq!(loads.len(), syms.len());
        for (k, ((addr, _, name), (got_addr, index, got_name, code_len))) in syms.iter().zip(&loads).enumerate() {
            prop_assert_eq!(*got_addr, *addr as u64);
            prop_assert_eq!(*index, k as u64);
            let want = clean(name);
            prop_assert_eq!(&got_name[..], want.as_bytes());
            prop_assert_eq!(*code_len, t.code.len() + SALT_LEN);
        }
    }
}
