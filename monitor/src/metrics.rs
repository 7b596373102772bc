//! The monitor's counters in the Prometheus text exposition format (version 0.0.4),
//! rendered on demand and written to a file that a node exporter's textfile collector
//! (or anything else) reads. Names are listed in docs/SINKS.md.
//!
//! Updated from the pipeline thread, rendered from another: one mutex, taken once per
//! update.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{self, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::{
    event::{Event, Loss, types},
    sink::Sink,
};

/// Upper bounds of the kill latency histogram, in seconds.
const KILL_LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

const ACTIONS: [&str; 4] = ["allow", "audit", "deny", "kill"];

pub struct Metrics {
    started: Instant,
    state: Mutex<State>,
}

struct State {
    events: BTreeMap<&'static str, u64>,
    decisions: BTreeMap<&'static str, u64>,
    loss: Loss,
    /// Per destination: (name, written, lost).
    destinations: Vec<(String, u64, u64)>,
    followers: u64,
    follower_dropped: u64,
    sessions_active: u64,
    sessions_started: u64,
    /// Per bucket (not cumulative), then the sum in seconds.
    kill_latency: [u64; KILL_LATENCY_BUCKETS.len() + 1],
    kill_latency_sum: f64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let state = State {
            events: BTreeMap::new(),
            decisions: ACTIONS.iter().map(|&a| (a, 0)).collect(),
            loss: Loss::default(),
            destinations: Vec::new(),
            followers: 0,
            follower_dropped: 0,
            sessions_active: 0,
            sessions_started: 0,
            kill_latency: [0; KILL_LATENCY_BUCKETS.len() + 1],
            kill_latency_sum: 0.0,
        };
        Metrics { started: Instant::now(), state: Mutex::new(state) }
    }

    /// An event handed to the sink: counts it by type, its decision by action, and a
    /// `session.start` as a session started.
    pub fn record(&self, event: &Event) {
        let mut state = self.state();
        *state.events.entry(event.event_type).or_default() += 1;
        if let Some(decision) = &event.decision {
            *state.decisions.entry(decision.action).or_default() += 1;
        }
        if event.event_type == types::SESSION_START {
            state.sessions_started += 1;
        }
    }

    /// The loss counters (cumulative, as in `monitor.loss` events).
    pub fn set_loss(&self, loss: &Loss) {
        self.state().loss = *loss;
    }

    /// Per-destination counts and the hub's followers, as the sink has them now.
    pub fn set_sink(&self, sink: &Sink) {
        let destinations = sink.destinations().into_iter().map(|d| (d.name, d.written, d.lost)).collect();
        let (followers, dropped) = sink.hub().map_or((0, 0), |hub| (hub.followers() as u64, hub.dropped_total()));
        let mut state = self.state();
        state.destinations = destinations;
        state.followers = followers;
        state.follower_dropped = dropped;
    }

    pub fn set_sessions_active(&self, active: u64) {
        self.state().sessions_active = active;
    }

    /// From a violation to the session's processes being killed.
    pub fn observe_kill_latency(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = KILL_LATENCY_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(KILL_LATENCY_BUCKETS.len());
        let mut state = self.state();
        state.kill_latency[bucket] += 1;
        state.kill_latency_sum += seconds;
    }

    pub fn render(&self) -> String {
        let uptime = self.started.elapsed().as_secs_f64();
        let state = self.state();
        let mut out = Out(String::new());

        out.family("agent_monitor_events_total", "counter", "Events handed to the sink, by type.");
        for (event_type, n) in &state.events {
            out.sample("agent_monitor_events_total", &[("type", event_type)], *n);
        }

        out.family(
            "agent_monitor_events_lost_total",
            "counter",
            "Events lost, by where and why (as in monitor.loss events).",
        );
        let loss = serde_json::to_value(state.loss).unwrap_or_default();
        for (reason, n) in loss.as_object().into_iter().flatten() {
            out.sample("agent_monitor_events_lost_total", &[("reason", reason)], n.as_u64().unwrap_or(0));
        }

        out.family("agent_monitor_sink_lines_written_total", "counter", "Lines a sink destination took.");
        for (name, written, _) in &state.destinations {
            out.sample("agent_monitor_sink_lines_written_total", &[("destination", name)], *written);
        }
        out.family("agent_monitor_sink_lines_lost_total", "counter", "Lines a sink destination failed to take.");
        for (name, _, lost) in &state.destinations {
            out.sample("agent_monitor_sink_lines_lost_total", &[("destination", name)], *lost);
        }

        out.family("agent_monitor_followers", "gauge", "Event followers connected.");
        out.sample("agent_monitor_followers", &[], state.followers);
        out.family(
            "agent_monitor_follower_lines_dropped_total",
            "counter",
            "Lines dropped for a follower whose queue was full.",
        );
        out.sample("agent_monitor_follower_lines_dropped_total", &[], state.follower_dropped);

        out.family("agent_monitor_decisions_total", "counter", "Policy decisions, by action.");
        for (action, n) in &state.decisions {
            out.sample("agent_monitor_decisions_total", &[("action", action)], *n);
        }

        out.family("agent_monitor_sessions_active", "gauge", "Sessions running.");
        out.sample("agent_monitor_sessions_active", &[], state.sessions_active);
        out.family("agent_monitor_sessions_started_total", "counter", "Sessions started.");
        out.sample("agent_monitor_sessions_started_total", &[], state.sessions_started);

        let name = "agent_monitor_kill_latency_seconds";
        out.family(name, "histogram", "From a violation to the session's processes being killed.");
        let mut cumulative = 0;
        for (i, n) in state.kill_latency.iter().enumerate() {
            cumulative += n;
            let le = KILL_LATENCY_BUCKETS.get(i).map_or("+Inf".to_string(), f64::to_string);
            out.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
        }
        out.sample(&format!("{name}_sum"), &[], state.kill_latency_sum);
        out.sample(&format!("{name}_count"), &[], cumulative);

        out.family("agent_monitor_uptime_seconds", "gauge", "Seconds since the monitor started.");
        out.sample("agent_monitor_uptime_seconds", &[], uptime);
        out.0
    }

    /// A panic elsewhere while holding the lock leaves counters that are still counters.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Replaces `path` with `text` at once (a reader sees the old file or the new one),
/// readable by all (0644): written to a temporary file beside it, then renamed.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    let temporary = path.with_file_name(name);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&temporary)?;
        // The umask may have narrowed the mode.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        event::Decision,
        sink::{Filter, Hub, testdir::TestDir, tests::event},
    };

    /// Checks `text` line by line against the exposition format 0.0.4 and returns the
    /// samples as `name{labels}` -> value.
    fn parse(text: &str) -> HashMap<String, f64> {
        assert!(text.ends_with('\n'));
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps = Vec::new();
        let mut samples = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (keyword, name, rest) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                assert!(valid_name(name), "{line}");
                match keyword {
                    "HELP" => {
                        assert!(!helps.contains(&name.to_string()), "second HELP: {line}");
                        helps.push(name.to_string());
                    }
                    "TYPE" => {
                        assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest), "{line}");
                        assert!(types.insert(name.to_string(), rest.to_string()).is_none(), "second TYPE: {line}");
                    }
                    _ => panic!("unknown comment: {line}"),
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
            let name = &line[..name_end];
            assert!(valid_name(name) && name.starts_with("agent_monitor_"), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample before its TYPE: {line}");
            let mut rest = &line[name_end..];
            let mut key = name.to_string();
            if let Some(labels) = rest.strip_prefix('{') {
                let (labels, after) = parse_labels(labels, line);
                key.push_str(&format!("{{{}}}", labels.join(",")));
                rest = after;
            }
            let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            assert!(samples.insert(key, value).is_none(), "duplicate sample: {line}");
        }
        samples
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// `k="v",k2="v2"} rest` -> (["k=v", ...] unescaped, "rest")
    fn parse_labels<'a>(mut text: &'a str, line: &str) -> (Vec<String>, &'a str) {
        let mut labels = Vec::new();
        loop {
            if let Some(rest) = text.strip_prefix('}') {
                return (labels, rest);
            }
            let eq = text.find('=').unwrap_or_else(|| panic!("label without value: {line}"));
            let key = &text[..eq];
            assert!(valid_name(key) && !key.contains(':'), "label name: {line}");
            let mut chars =
                text[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted: {line}")).char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => panic!("bad escape: {line}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, '\n')) | None => panic!("unterminated label value: {line}"),
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push(format!("{key}={value}"));
            text = &text[eq + 1 + 1 + end + 1..];
            text = text.strip_prefix(',').unwrap_or(text);
        }
    }

    #[test]
    fn renders_valid_exposition_format() {
        let metrics = Metrics::new();
        let mut exec = event(types::PROCESS_EXEC, "s1");
        exec.decision = Some(Decision::ALLOW);
        metrics.record(&event(types::SESSION_START, "s1"));
        metrics.record(&exec);
        metrics.record(&exec);
        let mut killed = event(types::SESSION_KILLED, "s1");
        killed.decision = Some(Decision { action: "kill", ..Decision::ALLOW });
        metrics.record(&killed);
        metrics.set_loss(&Loss { ringbuf_full: 3, sink_error: 2, ..Loss::default() });
        metrics.set_sessions_active(1);
        for ms in [1, 3, 40, 4000] {
            metrics.observe_kill_latency(Duration::from_millis(ms));
        }
        let hub = Hub::new(1);
        let _stalled = hub.subscribe(Filter::default());
        let mut sink = Sink::builder()
            .writer("odd \"name\" \\ with\nnewline", Box::new(io::sink()))
            .writer("stdout", Box::new(io::sink()))
            .hub(hub)
            .build();
        for _ in 0..3 {
            sink.write(&exec).unwrap();
        }
        sink.flush().unwrap();
        metrics.set_sink(&sink);

        let text = metrics.render();
        let samples = parse(&text);
        let at = |key: &str| *samples.get(key).unwrap_or_else(|| panic!("no {key} in\n{text}"));
        assert_eq!(at("agent_monitor_events_total{type=process.exec}"), 2.0);
        assert_eq!(at("agent_monitor_events_total{type=session.start}"), 1.0);
        assert_eq!(at("agent_monitor_events_lost_total{reason=ringbuf_full}"), 3.0);
        assert_eq!(at("agent_monitor_events_lost_total{reason=sink_error}"), 2.0);
        assert_eq!(at("agent_monitor_events_lost_total{reason=queue_full}"), 0.0);
        assert_eq!(at("agent_monitor_sink_lines_written_total{destination=odd \"name\" \\ with\nnewline}"), 3.0);
        assert_eq!(at("agent_monitor_sink_lines_lost_total{destination=stdout}"), 0.0);
        assert_eq!(at("agent_monitor_followers"), 1.0);
        assert_eq!(at("agent_monitor_follower_lines_dropped_total"), 2.0);
        assert_eq!(at("agent_monitor_decisions_total{action=allow}"), 2.0);
        assert_eq!(at("agent_monitor_decisions_total{action=kill}"), 1.0);
        assert_eq!(at("agent_monitor_decisions_total{action=deny}"), 0.0);
        assert_eq!(at("agent_monitor_sessions_active"), 1.0);
        assert_eq!(at("agent_monitor_sessions_started_total"), 1.0);
        assert_eq!(at("agent_monitor_kill_latency_seconds_bucket{le=0.001}"), 1.0);
        assert_eq!(at("agent_monitor_kill_latency_seconds_bucket{le=0.005}"), 2.0);
        assert_eq!(at("agent_monitor_kill_latency_seconds_bucket{le=2.5}"), 3.0);
        assert_eq!(at("agent_monitor_kill_latency_seconds_bucket{le=+Inf}"), 4.0);
        assert_eq!(at("agent_monitor_kill_latency_seconds_count"), 4.0);
        assert!((at("agent_monitor_kill_latency_seconds_sum") - 4.044).abs() < 1e-9);
        assert!(at("agent_monitor_uptime_seconds") >= 0.0);
    }

    #[test]
    fn renders_before_anything_happened() {
        let samples = parse(&Metrics::new().render());
        assert_eq!(samples["agent_monitor_kill_latency_seconds_bucket{le=+Inf}"], 0.0);
        assert_eq!(samples["agent_monitor_decisions_total{action=audit}"], 0.0);
    }

    #[test]
    fn writes_the_file_atomically_0644() {
        let dir = TestDir::new();
        let path = dir.path("agent-monitor.prom");
        write_atomic(&path, "first\n").unwrap();
        write_atomic(&path, "second\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path("")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("agent-monitor.prom")], "no temporary file left");
        assert!(write_atomic(&dir.path("missing/x.prom"), "x\n").is_err());
    }
}
