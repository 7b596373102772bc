//! `bench footprint`: the daemon's resident memory and CPU time (from /proc), idle and
//! at a steady rate of file events, and the kernel memory of its maps and programs
//! (`memlock` in the fdinfo of its BPF descriptors).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;

use super::{
    Scratch,
    daemon::{BenchDaemon, agent_copy, clock_ticks, cpu_and_rss, realistic_adopting},
    kernel_release, release_binaries, write_json,
};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds idle (no session, one selector adopting).
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Seconds under load.
    #[arg(long, default_value_t = 20)]
    load_secs: u64,
    /// File events per second under load.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
}

struct Sample {
    cpu_percent: f64,
    rss_kib: u64,
    hwm_kib: u64,
    /// RssAnon: the daemon's own memory. The rest of VmRSS is mostly the ring buffers,
    /// kernel memory mapped into the daemon (and counted again in the maps' memlock).
    anon_kib: u64,
}

fn rss_anon(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("RssAnon:")?.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
}

fn measure(pid: u32, secs: u64, during: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Sample> {
    let (t0, _, _) = cpu_and_rss(pid)?;
    let start = Instant::now();
    during()?;
    let left = Duration::from_secs(secs).saturating_sub(start.elapsed());
    std::thread::sleep(left);
    let (t1, rss, hwm) = cpu_and_rss(pid)?;
    let wall = start.elapsed().as_secs_f64();
    Ok(Sample {
        cpu_percent: (t1 - t0) as f64 / clock_ticks() as f64 / wall * 100.0,
        rss_kib: rss,
        hwm_kib: hwm,
        anon_kib: rss_anon(pid),
    })
}

/// (maps' memlock, map count, programs' memlock, program count, the largest maps as (id, memlock)).
pub type BpfMemory = (u64, usize, u64, usize, Vec<(u64, u64)>);

/// memlock bytes of the BPF maps and programs `pid` holds: (maps, count, programs,
/// count, the largest maps as (id, memlock)). Each object counts once, however many
/// descriptors of it the process holds.
pub fn bpf_memory(pid: u32) -> anyhow::Result<BpfMemory> {
    let (mut maps, mut map_count, mut progs, mut prog_count) = (0, 0, 0, 0);
    let mut each = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        let link = link.to_string_lossy().into_owned();
        let kind = if link == "anon_inode:bpf-map" {
            0
        } else if link == "anon_inode:bpf-prog" {
            1
        } else {
            continue;
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))?;
        let memlock: u64 =
            info.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        let id_key = if kind == 0 { "map_id:" } else { "prog_id:" };
        let id: u64 =
            info.lines().find_map(|l| l.strip_prefix(id_key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        if !seen.insert((kind, id)) {
            continue;
        }
        if kind == 0 {
            each.push((id, memlock));
            maps += memlock;
            map_count += 1;
        } else {
            progs += memlock;
            prog_count += 1;
        }
    }
    each.sort_by_key(|&(_, m)| std::cmp::Reverse(m));
    each.truncate(6);
    Ok((maps, map_count, progs, prog_count, each))
}

/// Map id -> name, from `bpftool -j map show` (empty without bpftool).
fn map_names() -> std::collections::BTreeMap<u64, String> {
    let Ok(out) = Command::new("bpftool").args(["-j", "map", "show"]).output() else { return Default::default() };
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list.iter().filter_map(|m| Some((m["id"].as_u64()?, m["name"].as_str()?.to_owned()))).collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (monitor, probe) = release_binaries()?;
    let scratch = Scratch::new("footprint")?;
    let agent = agent_copy(&probe, &scratch.0, "agent")?;
    let target = scratch.path("target");
    std::fs::write(&target, "x")?;
    let policy = realistic_adopting(&monitor, &agent, &[])?;
    let daemon = BenchDaemon::start(&monitor, &scratch.0, &policy, 64 << 20)?;
    let pid = daemon.pid();
    // Past start-up (policy compile, /proc scan).
    std::thread::sleep(Duration::from_secs(2));
    let idle = measure(pid, args.idle_secs, || Ok(()))?;
    eprintln!("  idle: {:.2}% CPU, {} KiB RSS", idle.cpu_percent, idle.rss_kib);
    let written_before = daemon.status()?["events_written"].as_u64().unwrap_or(0);
    let mut producer = None;
    let load = measure(pid, args.load_secs, || {
        producer = Some(
            Command::new(&agent)
                .args(["open-rate", &args.rate.to_string(), &args.load_secs.to_string()])
                .arg(&target)
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the producer")?,
        );
        Ok(())
    })?;
    let out = producer.context("producer")?.wait_with_output()?;
    let opens: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("opens=")?.parse().ok())
        .context("producer output")?;
    daemon.drain(Duration::from_secs(1))?;
    let status = daemon.status()?;
    let events = status["events_written"].as_u64().unwrap_or(0) - written_before;
    let lost = BenchDaemon::lost(&status);
    let (maps, map_count, progs, prog_count, largest) = bpf_memory(pid)?;
    let names = map_names();
    let largest: Vec<(String, u64)> =
        largest.iter().map(|(id, m)| (names.get(id).cloned().unwrap_or_else(|| format!("id {id}")), *m)).collect();
    drop(daemon);

    let mib = |kib: u64| kib as f64 / 1024.0;
    let made = opens / args.load_secs as f64;
    println!("daemon footprint (realistic profile, one adopting selector); kernel {}", kernel_release());
    println!(
        "  idle {:>3} s: {:>6.2}% of one CPU, RSS {:>6.1} MiB, of which anonymous {:.1} MiB (the rest: mostly the ring buffers, mapped)   (targets: < 0.5%, < 30 MB)",
        args.idle_secs,
        idle.cpu_percent,
        mib(idle.rss_kib),
        mib(idle.anon_kib)
    );
    println!(
        "  {:>6.0} file events/s for {} s: {:>6.2}% of one CPU ({:.1} us per event), RSS {:.1} MiB, peak {:.1} MiB; {} events, {} lost",
        made,
        args.load_secs,
        load.cpu_percent,
        load.cpu_percent / 100.0 * 1e6 / made.max(1.0),
        mib(load.rss_kib),
        mib(load.hwm_kib),
        events,
        lost
    );
    println!(
        "  kernel: {} maps, {:.1} MiB memlock; {} programs, {:.1} MiB memlock",
        map_count,
        maps as f64 / (1 << 20) as f64,
        prog_count,
        progs as f64 / (1 << 20) as f64
    );
    let list: Vec<String> =
        largest.iter().map(|(n, m)| format!("{n} {:.1} MiB", *m as f64 / (1 << 20) as f64)).collect();
    println!("  largest maps: {}", list.join(", "));
    write_json(
        "footprint",
        &json!({
            "benchmark": "footprint",
            "kernel": kernel_release(),
            "idle": {"secs": args.idle_secs, "cpu_percent": idle.cpu_percent, "rss_kib": idle.rss_kib, "rss_anon_kib": idle.anon_kib},
            "load": {
                "secs": args.load_secs, "events_per_s": made.round(), "cpu_percent": load.cpu_percent,
                "cpu_us_per_event": load.cpu_percent / 100.0 * 1e6 / made.max(1.0),
                "rss_kib": load.rss_kib, "rss_anon_kib": load.anon_kib, "peak_rss_kib": load.hwm_kib, "events_written": events, "lost": lost,
            },
            "kernel_memory": {"maps": map_count, "map_memlock_bytes": maps, "programs": prog_count, "program_memlock_bytes": progs,
                              "largest_maps": largest.iter().map(|(n, m)| json!({"name": n, "memlock_bytes": m})).collect::<Vec<_>>()},
            "targets": {"idle_rss_kib_below": 30 * 1024, "idle_cpu_percent_below": 0.5},
        }),
    )?;
    Ok(())
}
