//! A recording read as perf writes it (`perf record -o -`, perf's pipe format): each sample is
//! unwound as it arrives and its stack copy dropped, so a recording of any length needs no
//! disk and only the memory of its folded stacks. Optionally every byte is also copied to a
//! file, which `perf report` reads as it reads any perf.data.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::rc::Rc;

use linux_perf_data::PerfFileReader;

use super::{Counted, Error, Progress, Unwound, unwind_records};

/// A reader that writes what it reads into `copy` too. A failed write (a full disk) ends the
/// copy, not the reading: the profile is worth more than the raw recording.
struct Tee {
    inner: File,
    copy: Option<File>,
    failed: Rc<Cell<Option<io::Error>>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(copy) = &mut self.copy
            && let Err(e) = copy.write_all(&buf[..n])
        {
            self.failed.set(Some(e));
            self.copy = None;
        }
        Ok(n)
    }
}

/// Unwinds the pipe-format recording `input` until its end (perf exits), copying it to
/// `copy` when given. `tick` as for `unwind_file`; it is called only as records arrive.
pub fn unwind_stream<E>(
    input: File,
    copy: Option<File>,
    tick: impl FnMut(Progress) -> Result<(), E>,
) -> Result<Unwound, Error<E>> {
    const SOURCE: &str = "perf record's output";
    let read = Rc::new(Cell::new(0));
    let failed = Rc::new(Cell::new(None));
    let tee = Tee {
        inner: input,
        copy,
        failed: Rc::clone(&failed),
    };
    let reader = Counted {
        inner: BufReader::with_capacity(1 << 20, tee),
        read: Rc::clone(&read),
    };
    let reader = PerfFileReader::parse_pipe(reader)
        .map_err(|e| Error::Read(format!("{SOURCE}: not in perf's pipe format ({e})")))?;
    let mut out = unwind_records(reader, SOURCE, &read, tick)?;
    if let Some(e) = failed.take() {
        out.notes
            .push(format!("the copy of the recording stopped early: {e}"));
    }
    Ok(out)
}
