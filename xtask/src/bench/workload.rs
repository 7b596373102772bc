//! `bench workload`: what an agent's ordinary work costs under the monitor. Three
//! workloads, each timed from inside (`probe time CMD`, so the monitor's start-up is
//! counted apart): (a) no monitor, (d) `agent-monitor run --standalone` with the
//! realistic profile of `bench syscalls`, events to a file. Alternating rounds, medians.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Scratch, kernel_release, median, parse_ns, realistic_policy, release_binaries, write_json};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// Files in the repository that is cloned.
    #[arg(long, default_value_t = 600)]
    files: usize,
    /// The tree the Python script walks and reads.
    #[arg(long, default_value = "/usr/include")]
    tree: PathBuf,
}

struct Workload {
    name: &'static str,
    argv: Vec<String>,
    /// Removed before each run (outside the timing).
    output: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("git {args:?} failed");
    }
    Ok(())
}

/// A repository of `files` source-like files in 30 directories, three commits deep.
fn make_repository(dir: &Path, files: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    git(dir, &["init", "-q"])?;
    for commit in 0..3 {
        for i in 0..files {
            // Later commits touch a third of the files each.
            if commit > 0 && i % 3 != commit - 1 {
                continue;
            }
            let sub = dir.join(format!("mod{:02}", i % 30));
            std::fs::create_dir_all(&sub)?;
            let mut text = String::new();
            for line in 0..(40 + i % 120) {
                text.push_str(&format!(
                    "fn item_{i}_{line}_{commit}(x: u64) -> u64 {{ x.wrapping_mul({line}) ^ {i} }}\n"
                ));
            }
            std::fs::write(sub.join(format!("file{i:04}.rs")), text)?;
        }
        git(dir, &["add", "-A"])?;
        git(dir, &["commit", "-q", "-m", &format!("commit {commit}")])?;
    }
    Ok(())
}

const WALK: &str = r#"import os, sys
files = size = 0
for root, dirs, names in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(names):
        try:
            with open(os.path.join(root, name), "rb") as f:
                size += len(f.read())
                files += 1
        except OSError:
            pass
print(files, size)
"#;

/// A crate with no dependencies and a few modules of generic code (a second or two of
/// rustc).
fn make_crate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"bench-crate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )?;
    let mut main = String::new();
    for m in 0..4 {
        main.push_str(&format!("mod m{m};\n"));
        let mut text = String::from("use std::collections::BTreeMap;\n");
        for f in 0..40 {
            text.push_str(&format!(
                "pub fn f{f}<T: Clone + Ord + std::fmt::Debug>(v: &[T]) -> BTreeMap<T, usize> {{ let mut m = BTreeMap::new(); for x in v {{ *m.entry(x.clone()).or_insert(0) += {f}; }} m }}\n"
            ));
        }
        std::fs::write(dir.join(format!("src/m{m}.rs")), text)?;
    }
    main.push_str("fn main() {\n    let v: Vec<u32> = (0..100).collect();\n");
    for m in 0..4 {
        for f in 0..40 {
            main.push_str(&format!("    println!(\"{{:?}}\", m{m}::f{f}(&v).len());\n"));
        }
    }
    main.push_str("}\n");
    std::fs::write(dir.join("src/main.rs"), main)?;
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("workload")?;
    make_repository(&scratch.path("repo"), args.files)?;
    std::fs::write(scratch.path("walk.py"), WALK)?;
    make_crate(&scratch.path("crate"))?;
    let policy = scratch.path("realistic.yaml");
    std::fs::write(&policy, realistic_policy(&monitor, 9)?)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let s = |p: PathBuf| p.display().to_string();
    let workloads = [
        Workload {
            name: "git clone",
            argv: vec![
                "git".into(),
                "clone".into(),
                "-q".into(),
                "--no-hardlinks".into(),
                s(scratch.path("repo")),
                s(scratch.path("clone")),
            ],
            output: scratch.path("clone"),
        },
        Workload {
            name: "python tree walk",
            argv: vec!["/usr/bin/python3".into(), s(scratch.path("walk.py")), s(args.tree.clone())],
            output: scratch.path("none"),
        },
        Workload {
            name: "cargo build",
            argv: vec![
                cargo,
                "build".into(),
                "-q".into(),
                "--offline".into(),
                "--manifest-path".into(),
                s(scratch.path("crate/Cargo.toml")),
                "--target-dir".into(),
                s(scratch.path("crate-target")),
            ],
            output: scratch.path("crate-target"),
        },
    ];
    let events = scratch.path("events.ndjson");
    // [workload][config] -> ns (inside), ns (whole command), events per run
    let mut inside: Vec<[Vec<f64>; 2]> = workloads.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    let mut whole: Vec<Vec<f64>> = workloads.iter().map(|_| Vec::new()).collect();
    let mut event_counts: Vec<Vec<f64>> = workloads.iter().map(|_| Vec::new()).collect();
    let started = Instant::now();
    for round in 0..args.rounds {
        for (w, workload) in workloads.iter().enumerate() {
            #[allow(
                clippy::needless_range_loop,
                reason = "config 0 is the bare run, 1 the monitored one: it selects the command too"
            )]
            for config in 0..2 {
                let _ = std::fs::remove_dir_all(&workload.output);
                let _ = std::fs::remove_file(&events);
                let mut cmd = if config == 0 {
                    Command::new(&probe)
                } else {
                    let mut cmd = Command::new(&monitor);
                    cmd.args(["run", "--standalone", "--profile", "default", "--policy"])
                        .arg(&policy)
                        .arg("--events")
                        .arg(&events)
                        .arg("--")
                        .arg(&probe);
                    cmd
                };
                cmd.arg("time").args(&workload.argv).current_dir(&scratch.0).stderr(Stdio::null());
                let t0 = Instant::now();
                let out = cmd.output().with_context(|| format!("running {}", workload.name))?;
                let wall = t0.elapsed().as_nanos() as f64;
                if !out.status.success() {
                    bail!("{} failed under config {config} ({}): run it by hand to see why", workload.name, out.status);
                }
                inside[w][config].push(parse_ns(&out.stdout)?);
                if config == 1 {
                    whole[w].push(wall);
                    let text = std::fs::read_to_string(&events).unwrap_or_default();
                    if text.contains("\"action\":\"kill\"") || text.contains("\"action\":\"deny\"") {
                        bail!("{}: the realistic profile denied something; see {}", workload.name, events.display());
                    }
                    event_counts[w].push(text.lines().count() as f64);
                }
            }
        }
        eprintln!("  round {}/{} done ({:.0?})", round + 1, args.rounds, started.elapsed());
    }

    println!(
        "agent workloads, wall time, median of {} alternating rounds ({:.0?}); kernel {}",
        args.rounds,
        started.elapsed(),
        kernel_release()
    );
    println!(
        "  {:<18} {:>14} {:>22} {:>24} {:>10}",
        "workload", "(a) no monitor", "(d) session, realistic", "(d) incl. monitor start", "events"
    );
    let mut rows = serde_json::Map::new();
    for (w, workload) in workloads.iter().enumerate() {
        let a = median(&mut inside[w][0]) / 1e6;
        let d = median(&mut inside[w][1]) / 1e6;
        let total = median(&mut whole[w]) / 1e6;
        let events = median(&mut event_counts[w]);
        println!(
            "  {:<18} {:>11.0} ms {:>11.0} ms ({:>5.3}) {:>13.0} ms ({:>5.3}) {:>10.0}",
            workload.name,
            a,
            d,
            d / a,
            total,
            total / a,
            events
        );
        rows.insert(
            workload.name.to_owned(),
            json!({"none_ms": a.round(), "realistic_ms": d.round(), "ratio": d / a,
                   "realistic_with_monitor_start_ms": total.round(), "ratio_with_monitor_start": total / a,
                   "events_per_run": events}),
        );
    }
    write_json(
        "workload",
        &json!({"benchmark": "workload", "kernel": kernel_release(), "rounds": args.rounds,
                "repository_files": args.files, "tree": args.tree, "workloads": rows}),
    )?;
    Ok(())
}
