//! Runs examples/nested_eval under the real `perf record -g` and checks that the samples show
//! our trampolines nested as the evaluator called them: frames of our own, independent of
//! how CPython was built.

use std::path::PathBuf;
use std::process::Command;

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/nested_eval
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("nested_eval")
}

/// The names of each sample's frames, innermost first, from `perf script` output.
fn samples(perf_script: &str) -> Vec<Vec<String>> {
    perf_script
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
                .map(|sym| sym.split('+').next().unwrap_or(sym).to_string())
                .collect()
        })
        .collect()
}

#[test]
fn perf_shows_the_example_evaluators_frames_nested() {
    let bin = example_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo test builds examples",
        bin.display()
    );
    // Removed when the guard drops, a failed run's too.
    let dir = tempfile::Builder::new()
        .prefix("pt-example-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("perf.data");
    let rec = Command::new("perf")
        .args(["record", "-F", "999", "-g", "-q", "-o"])
        .arg(&data)
        .arg("--")
        .arg(&bin)
        .arg("1.0")
        .output()
        .expect("perf not found: run scripts/install-deps.sh");
    assert!(
        rec.status.success(),
        "perf record failed: {}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        script.status.success(),
        "{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let text = String::from_utf8_lossy(&script.stdout);
    let all = samples(&text);
    let chained = all
        .iter()
        .filter(|frames| {
            let ours: Vec<&str> = frames
                .iter()
                .map(String::as_str)
                .filter(|f| f.starts_with("rs::"))
                .collect();
            ours == ["rs::inner", "rs::middle", "rs::outer"]
        })
        .count();
    // The sample headers read "<comm> <pid> ..."; the example's map is /tmp/perf-<pid>.map.
    if let Some(pid) = text
        .lines()
        .find(|l| l.starts_with("nested_eval"))
        .and_then(|l| l.split_whitespace().nth(1))
    {
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    }
    assert!(
        all.len() >= 200,
        "too few samples ({}) to judge; perf output:\n{text:.2000}",
        all.len()
    );
    assert!(
        chained * 10 >= all.len() * 9,
        "{chained} of {} samples show rs::inner < rs::middle < rs::outer\n{text:.3000}",
        all.len()
    );
}
