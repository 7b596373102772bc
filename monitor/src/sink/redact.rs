//! Redaction of arguments and of paths under configured directories, applied to an
//! event before it is serialized (so in every destination alike).
//!
//! Arguments: `process.argv`, `exec.argv` and `session.command` become `[MARKER]`.
//! Paths: `process.exe`, `exec.path`, `file.path`, `change.path` and a unix socket's
//! `net.address` strictly under a prefix become `PREFIX/MARKER`. Prefixes match whole
//! components (`/home/al` does not cover `/home/alice`); where several match, the
//! shortest wins (it hides the most).

use serde::Deserialize;

use crate::event::Event;

pub const MARKER: &str = "[redacted]";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redaction {
    /// Replace every argument vector.
    pub argv: bool,
    /// Absolute directories whose contents are not named.
    pub path_prefixes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedactionError {
    #[error("redaction.path_prefixes: {0:?} is not an absolute path")]
    RelativePrefix(String),
}

impl Redaction {
    pub fn validate(&self) -> Result<(), RedactionError> {
        match self.path_prefixes.iter().find(|p| !p.starts_with('/')) {
            Some(p) => Err(RedactionError::RelativePrefix(p.clone())),
            None => Ok(()),
        }
    }

    pub fn is_active(&self) -> bool {
        self.argv || !self.path_prefixes.is_empty()
    }

    pub fn apply(&self, event: &Event) -> Event {
        let mut event = event.clone();
        if self.argv {
            let redacted = || vec![MARKER.to_string()];
            if let Some(process) = &mut event.process {
                process.argv = redacted().into();
            }
            if let Some(exec) = &mut event.exec {
                exec.argv = redacted();
            }
            if let Some(command) = &mut event.session.command {
                *command = redacted();
            }
        }
        if !self.path_prefixes.is_empty() {
            if let Some(process) = &mut event.process
                && let Some(redacted) = process.exe.as_deref().and_then(|exe| self.path(exe))
            {
                process.exe = Some(redacted).into();
            }
            let paths = [
                event.exec.as_mut().map(|e| &mut e.path),
                event.file.as_mut().map(|f| &mut f.path),
                event.change.as_mut().map(|c| &mut c.path),
                event.net.as_mut().filter(|n| n.family == "unix").map(|n| &mut n.address),
            ];
            for path in paths.into_iter().flatten() {
                if let Some(redacted) = self.path(path) {
                    *path = redacted;
                }
            }
        }
        event
    }

    /// `path` redacted, if it lies strictly under a prefix.
    pub fn path(&self, path: &str) -> Option<String> {
        self.path_prefixes
            .iter()
            .map(|prefix| prefix.trim_end_matches('/'))
            .filter(|prefix| {
                path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('/')).is_some_and(|rest| !rest.is_empty())
            })
            .min_by_key(|prefix| prefix.len())
            .map(|prefix| format!("{prefix}/{MARKER}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::tests::{event, exec_event};

    fn prefixes(list: &[&str]) -> Redaction {
        Redaction { argv: false, path_prefixes: list.iter().map(|p| p.to_string()).collect() }
    }

    #[test]
    fn prefixes_match_whole_components() {
        let r = prefixes(&["/home/alice/secret", "/srv/keys/"]);
        assert_eq!(r.path("/home/alice/secret/x").as_deref(), Some("/home/alice/secret/[redacted]"));
        assert_eq!(r.path("/home/alice/secret/a/b/c").as_deref(), Some("/home/alice/secret/[redacted]"));
        assert_eq!(r.path("/srv/keys/id_ed25519").as_deref(), Some("/srv/keys/[redacted]"));
        assert_eq!(r.path("/home/alice/secrets/x"), None);
        assert_eq!(r.path("/home/alice/secret"), None, "the prefix itself is no secret");
        assert_eq!(r.path("/home/alice/secret/"), None);
        assert_eq!(r.path("/home/alice"), None);
        assert_eq!(prefixes(&["/home/al"]).path("/home/alice/x"), None);
    }

    #[test]
    fn the_shortest_matching_prefix_wins() {
        let r = prefixes(&["/home/alice/secret", "/home"]);
        assert_eq!(r.path("/home/alice/secret/x").as_deref(), Some("/home/[redacted]"));
        assert_eq!(prefixes(&["/"]).path("/etc/shadow").as_deref(), Some("/[redacted]"));
    }

    #[test]
    fn argv_everywhere() {
        let r = Redaction { argv: true, path_prefixes: vec![] };
        let redacted = r.apply(&exec_event());
        assert_eq!(*redacted.process.as_ref().unwrap().argv, [MARKER]);
        assert_eq!(redacted.exec.as_ref().unwrap().argv, [MARKER]);
        assert_eq!(redacted.process.unwrap().exe.as_deref(), Some("/home/alice/secret/tool"), "paths untouched");

        let mut start = event("session.start", "s1");
        start.session.command = Some(vec!["tool".into(), "--token=hunter2".into()]);
        assert_eq!(r.apply(&start).session.command.unwrap(), [MARKER]);
    }

    #[test]
    fn paths_everywhere() {
        let r = prefixes(&["/home/alice/secret"]);
        let redacted = r.apply(&exec_event());
        assert_eq!(redacted.process.as_ref().unwrap().exe.as_deref(), Some("/home/alice/secret/[redacted]"));
        assert_eq!(redacted.exec.as_ref().unwrap().path, "/home/alice/secret/[redacted]");
        assert_eq!(redacted.exec.as_ref().unwrap().argv, ["tool", "--token=hunter2"], "argv untouched");

        let mut other = event("file.open", "s1");
        other.file = Some(crate::sink::tests::file("/home/alice/secret/notes.txt"));
        other.change = Some(crate::sink::tests::change("/home/alice/secret/new"));
        other.net = Some(crate::sink::tests::unix("/home/alice/secret/agent.sock"));
        let redacted = r.apply(&other);
        assert_eq!(redacted.file.unwrap().path, "/home/alice/secret/[redacted]");
        assert_eq!(redacted.change.unwrap().path, "/home/alice/secret/[redacted]");
        assert_eq!(redacted.net.unwrap().address, "/home/alice/secret/[redacted]");
    }

    #[test]
    fn from_config() {
        let r: Redaction = serde_saphyr::from_str("argv: true\npath_prefixes: [/home/alice/secret]\n").unwrap();
        assert_eq!(r, Redaction { argv: true, path_prefixes: vec!["/home/alice/secret".into()] });
        assert_eq!(r.validate(), Ok(()));
        let r: Redaction = serde_saphyr::from_str("path_prefixes: [home]\n").unwrap();
        assert_eq!(r.validate(), Err(RedactionError::RelativePrefix("home".into())));
        assert!(!Redaction::default().is_active());
        assert!(serde_saphyr::from_str::<Redaction>("args: true\n").is_err());
    }
}
