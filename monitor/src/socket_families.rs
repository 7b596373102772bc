//! Socket family names, for `network.families` and for events: the `AF_*` names of
//! Linux's `include/linux/socket.h`, lower case without the prefix.

/// (name, number) of each family Linux defines beyond those every session may use
/// (`monitor_common::policy::socket_family::always_allowed`).
const NAMED: [(&str, u32); 40] = [
    ("ax25", 3),
    ("ipx", 4),
    ("appletalk", 5),
    ("netrom", 6),
    ("bridge", 7),
    ("atmpvc", 8),
    ("x25", 9),
    ("rose", 11),
    ("decnet", 12),
    ("netbeui", 13),
    ("security", 14),
    ("key", 15),
    ("packet", 17),
    ("ash", 18),
    ("econet", 19),
    ("atmsvc", 20),
    ("rds", 21),
    ("sna", 22),
    ("irda", 23),
    ("pppox", 24),
    ("wanpipe", 25),
    ("llc", 26),
    ("ib", 27),
    ("mpls", 28),
    ("can", 29),
    ("tipc", 30),
    ("bluetooth", 31),
    ("iucv", 32),
    ("rxrpc", 33),
    ("isdn", 34),
    ("phonet", 35),
    ("ieee802154", 36),
    ("caif", 37),
    ("alg", 38),
    ("nfc", 39),
    ("vsock", 40),
    ("kcm", 41),
    ("qipcrtr", 42),
    ("smc", 43),
    ("xdp", 44),
];

/// The names every session may use without naming them.
const ALWAYS: [(&str, u32); 4] = [("unix", 1), ("inet", 2), ("inet6", 10), ("netlink", 16)];

/// The family called `name` (`packet`, `vsock`, ...), of those a profile can name.
pub fn by_name(name: &str) -> Option<u32> {
    NAMED.iter().find(|(n, _)| *n == name).map(|&(_, number)| number)
}

/// The name of family `number`, if Linux defines one.
pub fn name(number: u32) -> Option<&'static str> {
    NAMED.iter().chain(&ALWAYS).find(|&&(_, n)| n == number).map(|&(name, _)| name)
}

/// Every name a profile can give, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    NAMED.iter().map(|&(name, _)| name)
}

/// Whether `name` is a family every session may use anyway.
pub fn always_allowed(name: &str) -> bool {
    ALWAYS.iter().any(|&(n, _)| n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::policy::socket_family;

    #[test]
    fn names_are_linuxs_numbers() {
        assert_eq!(by_name("packet"), Some(libc::AF_PACKET as u32));
        assert_eq!(by_name("vsock"), Some(libc::AF_VSOCK as u32));
        assert_eq!(by_name("alg"), Some(libc::AF_ALG as u32));
        assert_eq!(by_name("xdp"), Some(libc::AF_XDP as u32));
        assert_eq!(by_name("tipc"), Some(libc::AF_TIPC as u32));
        assert_eq!(name(libc::AF_UNIX as u32), Some("unix"));
        for &(name, number) in &NAMED {
            assert!(!socket_family::always_allowed(number), "{name}");
            assert!(number < 64, "{name}: a bit of POLICY_FAMILIES");
        }
        for &(name, number) in &ALWAYS {
            assert!(socket_family::always_allowed(number), "{name}");
        }
    }
}
