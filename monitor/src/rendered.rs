//! A value turned into JSON once and shared by every event that repeats it.
//!
//! Every event of a process carries its program, arguments and start time. Escaping
//! them anew for each event took a fifth of the daemon's CPU per event (`cargo xtask
//! bench profile`); a process's [`Rendered`] values are made at its first event after
//! an exec and then only written out.

use std::{fmt, ops::Deref, sync::Arc};

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// `value` and its JSON text. Immutable: the two cannot disagree.
#[derive(Clone)]
pub struct Rendered<T> {
    value: Arc<T>,
    json: Arc<RawValue>,
}

impl<T: Serialize> Rendered<T> {
    pub fn new(value: T) -> Self {
        // Strings, their vectors and options: serializing them cannot fail.
        let json = serde_json::value::to_raw_value(&value).expect("plain strings serialize");
        Rendered { value: Arc::new(value), json: Arc::from(json) }
    }
}

impl<T> Deref for Rendered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Serialize for Rendered<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

impl<T: fmt::Debug> fmt::Debug for Rendered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Rendered<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Rendered<T> {}

impl<T: Serialize> From<T> for Rendered<T> {
    fn from(value: T) -> Self {
        Rendered::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_the_value_would_be() {
        let argv = vec!["sh".to_string(), "-c".into(), "echo \"\u{1}\" \\ é".into()];
        #[derive(Serialize)]
        struct Both {
            plain: Vec<String>,
            rendered: Rendered<Vec<String>>,
        }
        let both = Both { plain: argv.clone(), rendered: Rendered::new(argv.clone()) };
        let text = serde_json::to_string(&both).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["plain"], value["rendered"], "{text}");
        assert_eq!(serde_json::to_value(&both).unwrap(), value, "through serde_json::Value too");
        assert_eq!(*both.rendered, argv);
        let none: Rendered<Option<String>> = None.into();
        assert_eq!(serde_json::to_string(&none).unwrap(), "null");
    }
}
