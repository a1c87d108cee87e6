//! A recording read as perf writes it (`perf record -o -`, perf's pipe format): each sample is
//! unwound as it arrives and its stack copy dropped, so a recording of any length needs no
//! disk and only the memory of its folded stacks. Optionally every byte is also copied to a
//! file, which `perf report` reads as it reads any perf.data.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use linux_perf_data::PerfFileReader;

use super::{Counted, Error, Progress, Unwound, unwind_records};

/// Bytes read from the pipe at a time, and how many such reads may wait for the unwinder: at
/// most 64 MB. perf blocks on a full pipe, and once its ring buffers fill it drops samples; the
/// queue lets a slow moment of the unwinder (the first sample in a library loads its CFI and
/// symbols) pass without losing any.
const CHUNK: usize = 256 << 10;
const QUEUED_CHUNKS: usize = 256;
/// The pipe's own buffer (the kernel's default is 64 KiB, two 32 KiB stack copies).
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Unwinds the pipe-format recording `input` until its end (perf exits), copying it to
/// `copy` when given. `tick` as for `unwind_file`; it is called only as records arrive.
pub fn unwind_stream<E>(
    input: File,
    copy: Option<File>,
    tick: impl FnMut(Progress) -> Result<(), E>,
) -> Result<Unwound, Error<E>> {
    const SOURCE: &str = "perf record's output";
    // SAFETY: fcntl on a descriptor we own; failure (not a pipe, a lower limit) is harmless.
    unsafe { libc::fcntl(input.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let failed = Arc::new(Mutex::new(None));
    let (sender, receiver) = sync_channel(QUEUED_CHUNKS);
    let reader_failed = Arc::clone(&failed);
    let reader = thread::spawn(move || read_ahead(input, copy, &sender, &reader_failed));
    let read = Rc::new(Cell::new(0));
    let queued = Counted {
        inner: Queued {
            receiver,
            chunk: Vec::new(),
            at: 0,
        },
        read: Rc::clone(&read),
    };
    let result = PerfFileReader::parse_pipe(queued)
        .map_err(|e| Error::Read(format!("{SOURCE}: not in perf's pipe format ({e})")))
        .and_then(|reader| unwind_records(reader, SOURCE, &read, Default::default(), tick));
    // On an early return the receiver is gone and the reader stops at its next chunk.
    drop(reader);
    let mut out = result?;
    if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        out.notes
            .push(format!("the copy of the recording stopped early: {e}"));
    }
    Ok(out)
}

/// The reading thread: chunks of `input` into the queue (and `copy`) until its end. A failed
/// write to `copy` (a full disk) ends the copy, not the reading: the profile is worth more
/// than the raw recording.
fn read_ahead(
    mut input: File,
    mut copy: Option<File>,
    sender: &SyncSender<io::Result<Vec<u8>>>,
    failed: &Mutex<Option<io::Error>>,
) {
    let mut buf = vec![0; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = sender.send(Err(e));
                return;
            }
        };
        if let Some(file) = &mut copy
            && let Err(e) = file.write_all(&buf[..n])
        {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            copy = None;
        }
        if sender.send(Ok(buf[..n].to_vec())).is_err() {
            return; // the unwinder stopped
        }
    }
}

/// The reading end of the queue, as one stream of bytes.
struct Queued {
    receiver: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Queued {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.receiver.recv() {
                Ok(chunk) => (self.chunk, self.at) = (chunk?, 0),
                Err(_) => return Ok(0), // the reader is done: the end of the stream
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// An unnamed file (O_TMPFILE) holding `bytes`, read from its start.
    fn temp_file(bytes: &[u8]) -> File {
        let mut file = unnamed_file();
        file.write_all(bytes).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file
    }

    fn unnamed_file() -> File {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(std::env::temp_dir())
            .unwrap()
    }

    #[test]
    fn the_queue_hands_on_every_byte_and_the_copy_gets_them_too() {
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let copy = unnamed_file();
        let mut copy_reader = copy.try_clone().unwrap();
        let failed = Mutex::new(None);
        let (sender, receiver) = sync_channel(QUEUED_CHUNKS);
        read_ahead(temp_file(&data), Some(copy), &sender, &failed);
        drop(sender);
        let mut queued = Queued {
            receiver,
            chunk: Vec::new(),
            at: 0,
        };
        let mut got = Vec::new();
        queued.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
        let mut copied = Vec::new();
        copy_reader.seek(SeekFrom::Start(0)).unwrap();
        copy_reader.read_to_end(&mut copied).unwrap();
        assert_eq!(copied, data);
        assert!(failed.lock().unwrap().is_none());
    }

    #[test]
    fn a_copy_that_cannot_be_written_ends_the_copy_not_the_reading() {
        let data = vec![1u8; 1000];
        // Read-only: every write fails.
        let copy = File::open("/dev/null").unwrap();
        let failed = Mutex::new(None);
        let (sender, receiver) = sync_channel(QUEUED_CHUNKS);
        read_ahead(temp_file(&data), Some(copy), &sender, &failed);
        drop(sender);
        let mut got = Vec::new();
        Queued {
            receiver,
            chunk: Vec::new(),
            at: 0,
        }
        .read_to_end(&mut got)
        .unwrap();
        assert_eq!(got, data);
        assert!(failed.lock().unwrap().is_some());
    }

    #[test]
    fn not_pipe_format_is_one_clear_error() {
        let result = unwind_stream(temp_file(b"PERFILE2garbage!"), None, |_| Ok::<(), ()>(()));
        match result {
            Err(Error::Read(message)) => {
                assert!(message.starts_with("perf record's output: not in perf's pipe format"))
            }
            _ => panic!("garbage must not parse"),
        }
    }
}
