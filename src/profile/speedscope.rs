//! speedscope's JSON format (https://www.speedscope.app/file-format-schema.json): one sampled
//! profile per thread, its samples in time order, each weighted by its CPU time in nanoseconds.

use std::io::{self, Write};

use super::{Meta, Samples};

/// Writes `samples` as a speedscope file. Written as it goes rather than built as one JSON
/// value: a long recording has millions of frame references.
pub fn write(samples: &Samples, meta: &Meta, out: impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    write!(
        out,
        "{{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"exporter\":\"perf-trampoline\",\"name\":"
    )?;
    string(&mut out, &meta.title)?;
    let mut by_thread: Vec<Vec<usize>> = vec![Vec::new(); samples.threads.len()];
    for (i, s) in samples.samples.iter().enumerate() {
        by_thread[s.thread as usize].push(i);
    }
    by_thread.retain(|indices| !indices.is_empty());
    let totals: Vec<u64> = by_thread
        .iter()
        .map(|indices| indices.iter().map(|&i| samples.samples[i].period).sum())
        .collect();
    // speedscope opens on one profile: the busiest thread's, not whichever process perf saw
    // first (often the shell or the exec before the program runs).
    let busiest = (0..totals.len()).max_by_key(|&p| totals[p]).unwrap_or(0);
    write!(
        out,
        ",\"activeProfileIndex\":{busiest},\"shared\":{{\"frames\":["
    )?;
    for (i, frame) in samples.frames.iter().enumerate() {
        let (name, file) = frame.function_and_file();
        out.write_all(if i == 0 {
            b"{\"name\":"
        } else {
            b",{\"name\":"
        })?;
        string(&mut out, name)?;
        if let Some(file) = file.or(frame.module.as_deref()) {
            out.write_all(b",\"file\":")?;
            string(&mut out, file)?;
        }
        out.write_all(b"}")?;
    }
    out.write_all(b"]},\"profiles\":[")?;
    for (p, (indices, total)) in by_thread.iter().zip(&totals).enumerate() {
        if p > 0 {
            out.write_all(b",")?;
        }
        let thread = &samples.threads[samples.samples[indices[0]].thread as usize];
        out.write_all(b"{\"type\":\"sampled\",\"name\":")?;
        string(
            &mut out,
            &format!("{} (pid {}, tid {})", thread.name, thread.pid, thread.tid),
        )?;
        write!(
            out,
            ",\"unit\":\"nanoseconds\",\"startValue\":0,\"endValue\":{total},\"samples\":["
        )?;
        for (n, &i) in indices.iter().enumerate() {
            out.write_all(if n == 0 { b"[" } else { b",[" })?;
            // speedscope wants the outermost frame first.
            let stack = &samples.stacks[samples.samples[i].stack as usize];
            for (k, f) in stack.iter().rev().enumerate() {
                if k > 0 {
                    out.write_all(b",")?;
                }
                write!(out, "{f}")?;
            }
            out.write_all(b"]")?;
        }
        out.write_all(b"],\"weights\":[")?;
        for (n, &i) in indices.iter().enumerate() {
            if n > 0 {
                out.write_all(b",")?;
            }
            write!(out, "{}", samples.samples[i].period)?;
        }
        out.write_all(b"]}")?;
    }
    out.write_all(b"]}")?;
    out.flush()
}

fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(out, s).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Kind, one_stack};

    #[test]
    fn valid_json_outermost_first() {
        let s = one_stack(
            &[
                ("py::foo:/a \"b\".py", Kind::Python, None),
                ("py::bar:/a.py", Kind::Python, None),
            ],
            &[(1, (1, 1, "main"), 9)],
        );
        let (foo, bar) = (0, 1);
        let mut out = Vec::new();
        write(&s, &Meta::default(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["shared"]["frames"][0]["file"], "/a \"b\".py");
        assert_eq!(
            v["profiles"][0]["samples"][0],
            serde_json::json!([bar, foo])
        );
        assert_eq!(v["profiles"][0]["endValue"], 9);
    }

    #[test]
    fn opens_on_the_busiest_thread() {
        let s = one_stack(
            &[("py::foo:/a.py", Kind::Python, None)],
            &[
                (1, (7, 7, "sh"), 5),
                (2, (8, 8, "python"), 4),
                (3, (8, 8, "python"), 4),
            ],
        );
        let mut out = Vec::new();
        write(&s, &Meta::default(), &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let active = v["activeProfileIndex"].as_u64().unwrap() as usize;
        assert!(
            v["profiles"][active]["name"]
                .as_str()
                .unwrap()
                .starts_with("python"),
            "{v}"
        );
        assert_eq!(v["profiles"][active]["endValue"], 8);
    }
}
