//! pprof's format (gzipped `profile.proto`), for `go tool pprof`, Pyroscope, Parca and the
//! like: sample types samples/count and cpu/nanoseconds, one location per frame, Python
//! functions with their file names, native and kernel ones under a mapping per module.

use std::collections::HashMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::{Frame, Kind, Meta, Samples};

// The messages of pprof's profile.proto, written out with prost's derive rather than
// generated: the schema is small and stable, and generating it would need protoc at build time.

#[derive(Clone, PartialEq, Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<SampleMsg>,
    #[prost(message, repeated, tag = "3")]
    mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
    #[prost(int64, repeated, tag = "13")]
    comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct SampleMsg {
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
    #[prost(int64, tag = "3")]
    num: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Mapping {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "5")]
    filename: i64,
    #[prost(bool, tag = "7")]
    has_functions: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    mapping_id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    #[prost(int64, tag = "3")]
    system_name: i64,
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// The string table: index 0 is the empty string, as the format requires.
struct Strings {
    table: Vec<String>,
    ids: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        Strings {
            table: vec![String::new()],
            ids: HashMap::from([(String::new(), 0)]),
        }
    }

    fn id(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }
}

/// The file a frame's code is in, for its mapping.
fn module_of(frame: &Frame) -> Option<&str> {
    match (frame.kind, frame.module.as_deref()) {
        (_, Some(m)) => Some(m),
        (Kind::Kernel, None) => Some("[kernel.kallsyms]"),
        _ => None,
    }
}

/// The gzipped profile of `samples`.
pub fn write(samples: &Samples, meta: &Meta, out: impl Write) -> std::io::Result<()> {
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&encode(samples, meta))?;
    gz.finish()?.flush()
}

fn encode(samples: &Samples, meta: &Meta) -> Vec<u8> {
    let mut strings = Strings::new();
    let count = ValueType {
        r#type: strings.id("samples"),
        unit: strings.id("count"),
    };
    let cpu = ValueType {
        r#type: strings.id("cpu"),
        unit: strings.id("nanoseconds"),
    };
    let mut mappings: HashMap<&str, u64> = HashMap::new();
    let mut mapping = Vec::new();
    let mut functions: HashMap<(&str, Option<&str>), u64> = HashMap::new();
    let mut function = Vec::new();
    // pprof takes the first mapping for the program's: user space before the kernel.
    let mut ordered: Vec<&Frame> = samples.frames.iter().collect();
    ordered.sort_by_key(|f| f.kind == Kind::Kernel);
    // Location i + 1 is frame i: one location per frame.
    let mut location = Vec::with_capacity(samples.frames.len());
    for m in ordered.into_iter().filter_map(module_of) {
        let next = mapping.len() as u64 + 1;
        mappings.entry(m).or_insert_with(|| {
            mapping.push(Mapping {
                id: next,
                filename: strings.id(m),
                has_functions: true,
            });
            next
        });
    }
    for (i, frame) in samples.frames.iter().enumerate() {
        let (name, file) = frame.function_and_file();
        let next = function.len() as u64 + 1;
        let function_id = *functions.entry((name, file)).or_insert_with(|| {
            let name = strings.id(name);
            function.push(Function {
                id: next,
                name,
                system_name: name,
                filename: file.map_or(0, |f| strings.id(f)),
            });
            next
        });
        let mapping_id = module_of(frame).map_or(0, |m| mappings[m]);
        location.push(Location {
            id: i as u64 + 1,
            mapping_id,
            line: vec![Line { function_id }],
        });
    }
    // One pprof sample per (thread, stack), labelled with the thread.
    let mut merged: HashMap<(u32, u32), (i64, i64)> = HashMap::new();
    for s in &samples.samples {
        let v = merged.entry((s.thread, s.stack)).or_default();
        v.0 += 1;
        v.1 += s.period as i64;
    }
    let (thread_key, tid_key) = (strings.id("thread"), strings.id("tid"));
    let mut sample: Vec<SampleMsg> = merged
        .into_iter()
        .map(|((thread, stack), (n, cpu))| {
            let t = &samples.threads[thread as usize];
            SampleMsg {
                location_id: samples.stacks[stack as usize]
                    .iter()
                    .map(|&f| f as u64 + 1)
                    .collect(),
                value: vec![n, cpu],
                label: vec![
                    Label {
                        key: thread_key,
                        str: strings.id(&t.name),
                        num: 0,
                    },
                    Label {
                        key: tid_key,
                        str: 0,
                        num: t.tid as i64,
                    },
                ],
            }
        })
        .collect();
    // The same file for the same recording.
    sample.sort_by_key(|s| (s.location_id.clone(), s.label[1].num));
    let (first, last) = samples.time_range();
    let mut comment = vec![strings.id(&meta.title)];
    if let Some(interpreter) = &meta.interpreter {
        comment.push(strings.id(interpreter));
    }
    let default_sample_type = cpu.r#type;
    Profile {
        sample_type: vec![count, cpu.clone()],
        sample,
        mapping,
        location,
        function,
        time_nanos: 0,
        duration_nanos: (last - first) as i64,
        period_type: Some(cpu),
        period: samples.interval() as i64,
        comment,
        default_sample_type,
        string_table: strings.table,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::one_stack;

    #[test]
    fn round_trip() {
        let s = one_stack(
            &[
                ("malloc", Kind::Native, Some("libc.so.6")),
                ("py::foo:/a.py", Kind::Python, None),
            ],
            &[(0, (1, 1, "python3"), 7); 3],
        );
        let p = Profile::decode(encode(&s, &Meta::default()).as_slice()).unwrap();
        let name = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(p.sample.len(), 1);
        assert_eq!(p.sample[0].value, vec![3, 21]);
        assert_eq!(p.sample[0].location_id, vec![1, 2]);
        let f = &p.function[p.location[1].line[0].function_id as usize - 1];
        assert_eq!((name(f.name), name(f.filename)), ("py::foo", "/a.py"));
        assert_eq!(name(p.mapping[0].filename), "libc.so.6");
        assert_eq!((p.location[0].mapping_id, p.location[1].mapping_id), (1, 0));
    }
}
