//! Output files found at our path when we open it: a dead process's (our pid, written before
//! we began) is started over; one written since (an exec'd image of ours, CPython's own
//! trampoline) is kept and added to; links, non-files and other users' files are refused.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use perf_trampoline::jitdump::{self, JitDump, Record};
use perf_trampoline::perf_map::PerfMap;
use perf_trampoline::{Sink, Symbol, Target, Writers, compile, jit_template, process_start};

/// A scratch directory holding `name`, removed when the guard drops (a failed test's too).
fn scratch(tag: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("pt-stale-{tag}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// A map line covering every address we could hand out, as a dead process's map may.
const DEAD_LINE: &str = "1000 7ffffffff000 py::dead:/old.py\n";

/// Makes `path` look last written `age` before this process began.
fn age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(process_start().unwrap() - age).unwrap();
}

fn plant(path: &Path, bytes: &[u8], how_old: Duration) {
    std::fs::write(path, bytes).unwrap();
    age(path, how_old);
}

fn ours() -> Symbol<'static> {
    Symbol {
        addr: 0x7f00_0000_0000,
        size: 16,
        name: b"py::ours:/new.py",
    }
}

fn map_after_one_record(path: &Path, writers: Writers) -> String {
    let mut map = PerfMap::open(path, writers).unwrap();
    map.record(&ours()).unwrap();
    map.close().unwrap();
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_dead_processs_map_is_started_over() {
    let (_dir, path) = scratch("dead", "perf-1.map");
    plant(
        &path,
        DEAD_LINE.repeat(100).as_bytes(),
        Duration::from_secs(3600),
    );
    assert_eq!(
        map_after_one_record(&path, Writers::OnlyUs),
        "7f0000000000 10 py::ours:/new.py\n"
    );
}

#[test]
fn a_map_written_since_this_process_began_is_added_to() {
    let (_dir, path) = scratch("since", "perf-1.map");
    std::fs::write(&path, "10 10 py::before_exec:/a.py\n").unwrap();
    let text = map_after_one_record(&path, Writers::OnlyUs);
    assert_eq!(
        text,
        "10 10 py::before_exec:/a.py\n7f0000000000 10 py::ours:/new.py\n"
    );
}

#[test]
fn with_cpythons_trampoline_writing_too_an_old_map_is_kept() {
    let (_dir, path) = scratch("cpython", "perf-1.map");
    plant(&path, DEAD_LINE.as_bytes(), Duration::from_secs(3600));
    let text = map_after_one_record(&path, Writers::WithCpython);
    assert_eq!(
        text,
        format!("{DEAD_LINE}7f0000000000 10 py::ours:/new.py\n")
    );
}

#[test]
fn a_fifo_is_refused() {
    let (_dir, path) = scratch("fifo", "perf-1.map");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = PerfMap::open(&path, Writers::OnlyUs)
        .err()
        .expect("a FIFO is no output file");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn another_users_old_map_is_left_alone() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    let (_dir, path) = scratch("theirs", "perf-1.map");
    plant(&path, DEAD_LINE.as_bytes(), Duration::from_secs(3600));
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    let err = PerfMap::open(&path, Writers::OnlyUs)
        .err()
        .expect("not ours");
    assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), DEAD_LINE);
    assert_eq!(
        (after.mtime_nsec(), after.mtime(), after.uid()),
        (before.mtime_nsec(), before.mtime(), 65534)
    );
}

fn load_names_and_indices(path: &Path) -> (usize, Vec<(Vec<u8>, u64)>) {
    let bytes = std::fs::read(path).unwrap();
    let dump = jitdump::parse(&bytes).unwrap();
    let loads = dump
        .records
        .into_iter()
        .filter_map(|r| match r {
            Record::CodeLoad {
                name, code_index, ..
            } => Some((name, code_index)),
            _ => None,
        })
        .collect();
    (dump.trailing, loads)
}

/// A dump of process 7 at `path` naming `names` then ours; `exits`: whether its writer
/// ends it normally (else its unused room of zeros stays, as after an exec).
fn dump_of(path: &Path, names: &[&[u8]], exits: bool) {
    let t = jit_template(&compile(&Target::Host, false).unwrap()).unwrap();
    let mut dump = JitDump::open(path, 7, &t, Writers::OnlyUs).unwrap();
    for name in names {
        dump.record(&Symbol { name, ..ours() }).unwrap();
    }
    if exits {
        dump.close().unwrap();
    }
}

#[test]
fn a_dead_processs_dump_is_started_over() {
    let (_dir, path) = scratch("dump-dead", "jit-7.dump");
    dump_of(&path, &[b"py::dead:/old.py"], true);
    age(&path, Duration::from_secs(3600));
    dump_of(&path, &[b"py::ours:/new.py"], true);
    assert_eq!(
        load_names_and_indices(&path),
        (0, vec![(b"py::ours:/new.py".to_vec(), 0)])
    );
}

#[test]
fn a_dump_this_process_wrote_before_an_exec_goes_on_after_its_last_record() {
    let (_dir, path) = scratch("dump-exec", "jit-7.dump");
    dump_of(&path, &[b"py::a:/a.py", b"py::b:/a.py"], false);
    assert!(
        load_names_and_indices(&path).0 > 0,
        "the room should still be there"
    );
    dump_of(&path, &[b"py::ours:/new.py"], true);
    let (trailing, loads) = load_names_and_indices(&path);
    assert_eq!(trailing, 0);
    let expected: Vec<(Vec<u8>, u64)> = vec![
        (b"py::a:/a.py".to_vec(), 0),
        (b"py::b:/a.py".to_vec(), 1),
        (b"py::ours:/new.py".to_vec(), 2),
    ];
    assert_eq!(loads, expected);
}

#[test]
fn a_recent_dump_of_another_process_is_refused() {
    let t = jit_template(&compile(&Target::Host, false).unwrap()).unwrap();
    let (_dir, path) = scratch("dump-other", "jit-7.dump");
    JitDump::open(&path, 8, &t, Writers::OnlyUs)
        .unwrap()
        .close()
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = JitDump::open(&path, 7, &t, Writers::OnlyUs)
        .err()
        .expect("another process's dump");
    assert!(err.to_string().contains("the dump of process 8"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
