//! Output files a dead process with our pid left behind: told from ours by their age.
//!
//! Pids wrap, and `/tmp` keeps the `perf-<pid>.map` and `jit-<pid>.dump` of processes long
//! gone. perf reads every line of a map for its pid, so lines left in ours would name our
//! code with a dead process's functions wherever their addresses overlap ours.

use std::fs::Metadata;
use std::io;
use std::time::{Duration, SystemTime};

/// How much earlier than this process's start a file must have been written to count as a
/// dead process's: file times come from a clock that lags up to a kernel tick behind, and
/// /proc gives the start cut down to a clock tick.
const SLACK: Duration = Duration::from_millis(20);

/// When this process began (its fork; an exec keeps it), by the wall clock.
pub fn process_start() -> io::Result<SystemTime> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Field 22, `starttime`, in clock ticks since boot. The command name (field 2) may hold
    // spaces and parentheses, so fields are counted after its closing one.
    let ticks: u64 = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(22 - 3))
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other("no start time in /proc/self/stat"))?;
    let hz = crate::os::clock_ticks_per_second();
    let since_boot =
        Duration::from_secs(ticks / hz) + Duration::from_nanos(ticks % hz * 1_000_000_000 / hz);
    // The boot by the wall clock: now, less the time since boot on the clock /proc counts in.
    Ok(SystemTime::now() - crate::os::since_boot() + since_boot)
}

/// Whether a file with these metadata was last written before this process began, so by an
/// earlier process with our pid: its records name that process's code, not ours. False when
/// that cannot be told (no /proc): keeping lines costs less than losing ours.
pub fn written_before_us(meta: &Metadata) -> bool {
    match (meta.modified(), process_start()) {
        (Ok(written), Ok(start)) => written + SLACK < start,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_began_before_now_and_after_the_test_binary_was_built() {
        let start = process_start().unwrap();
        assert!(start <= SystemTime::now());
        let built = std::fs::metadata(std::env::current_exe().unwrap())
            .unwrap()
            .modified()
            .unwrap();
        assert!(
            start + SLACK >= built,
            "start {start:?} before the binary was written {built:?}"
        );
    }

    #[test]
    fn old_files_are_stale_and_files_written_now_are_not() {
        let dir = tempfile::Builder::new()
            .prefix("pt-stale-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        assert!(!written_before_us(&file.metadata().unwrap()));
        file.set_modified(process_start().unwrap() - Duration::from_secs(1))
            .unwrap();
        assert!(written_before_us(&file.metadata().unwrap()));
    }
}
