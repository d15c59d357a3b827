//! A container's view of the machine: how its absolute paths and listen addresses are mapped
//! onto this one.
//!
//! Pods here are plain processes without mount or network namespaces, so the kubelet rewrites
//! what the container is given, in one documented way:
//!
//! - **Paths.** Each container has a root folder `R` (its `DRILL_ROOT`). A volume mounted at `M`
//!   appears at `R/M` (a symlink to the volume's folder), so the container path `M/x` is the local
//!   path `R/M/x`. The image's own files (a PostgreSQL bin dir, say) map to local folders through
//!   the [`crate::ImageMap`]. Every other path (e.g. `/bin/sh`) is the machine's.
//! - **Addresses.** Inside a pod, `0.0.0.0`, `127.0.0.1` and `localhost` mean "this pod"; here a
//!   pod is its own loopback address, so these hosts become the pod IP when they are written as
//!   an address (followed by `:<port>`, a quote, a line end or the end of the text) — not in CIDR
//!   rules such as `127.0.0.1/32`.
//!
//! The rewrite applies to `command`, `args`, env values, and the text of ConfigMap files mounted
//! into the container (Patroni's config file names its data, socket and TLS folders). A path is
//! rewritten where it starts a word (after a space, quote, `=`, `:`, `,` or bracket) and matches a
//! mapped prefix up to a `/` or the end of the path.

use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct View {
    /// (path in the container, local path); the longest match wins.
    paths: Vec<(String, PathBuf)>,
    pod_ip: String,
}

const LOCAL_HOSTS: [&str; 3] = ["0.0.0.0", "127.0.0.1", "localhost"];

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~' | '+' | '@')
}

fn word_start(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(c) => c.is_whitespace() || matches!(c, '"' | '\'' | '=' | ':' | ',' | '[' | '(' | '{'),
    }
}

impl View {
    pub fn new(pod_ip: impl Into<String>) -> Self {
        View {
            paths: Vec::new(),
            pod_ip: pod_ip.into(),
        }
    }

    /// Maps the container path `inside` (absolute, no trailing slash) to `local`.
    pub fn map(&mut self, inside: &str, local: impl Into<PathBuf>) {
        let inside = inside.trim_end_matches('/');
        let inside = if inside.is_empty() { "/" } else { inside };
        self.paths.retain(|(p, _)| p != inside);
        self.paths.push((inside.to_string(), local.into()));
        self.paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    }

    pub fn pod_ip(&self) -> &str {
        &self.pod_ip
    }

    /// The local path of one container path, if it is mapped.
    pub fn local(&self, inside: &str) -> Option<PathBuf> {
        let (prefix, local) = self.match_at(inside)?;
        let rest = inside[prefix.len()..].trim_start_matches('/');
        Some(if rest.is_empty() {
            local.clone()
        } else {
            local.join(rest)
        })
    }

    fn match_at(&self, text: &str) -> Option<(&str, &PathBuf)> {
        self.paths
            .iter()
            .find(|(p, _)| {
                text.starts_with(p.as_str())
                    && text[p.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || !path_char(c))
            })
            .map(|(p, l)| (p.as_str(), l))
    }

    /// Rewrites every mapped path and local address in `text` (see the module docs).
    pub fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let mut prev: Option<char> = None;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            let c = rest.chars().next().expect("i is on a char boundary");
            if c == '/'
                && word_start(prev)
                && let Some((prefix, local)) = self.match_at(rest)
            {
                {
                    out.push_str(&local.to_string_lossy());
                    i += prefix.len();
                    prev = prefix.chars().last();
                    continue;
                }
            }
            if !self.pod_ip.is_empty()
                && prev.is_none_or(|p| !path_char(p))
                && let Some(host) = LOCAL_HOSTS.iter().find(|h| self.is_address(rest, h))
            {
                {
                    out.push_str(&self.pod_ip);
                    i += host.len();
                    prev = Some('x');
                    continue;
                }
            }
            out.push(c);
            prev = Some(c);
            i += c.len_utf8();
        }
        out
    }

    fn is_address(&self, rest: &str, host: &str) -> bool {
        let Some(after) = rest.strip_prefix(host) else {
            return false;
        };
        let mut chars = after.chars();
        match chars.next() {
            None | Some('"' | '\'' | '\n' | '\r') => true,
            Some(':') => chars.next().is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        let mut v = View::new("127.5.0.2");
        v.map("/tmp", "/r/tmp");
        v.map("/home/postgres/pgdata", "/r/home/postgres/pgdata");
        v.map("/etc/patroni", "/r/etc/patroni");
        v.map("/usr/lib/postgresql/18/bin", "/usr/lib/postgresql/15/bin");
        v
    }

    #[test]
    fn rewrites_mapped_paths_at_word_starts_only() {
        let v = view();
        assert_eq!(
            v.rewrite("/etc/patroni/patroni.yml"),
            "/r/etc/patroni/patroni.yml"
        );
        assert_eq!(
            v.rewrite("data_dir: /home/postgres/pgdata/pgroot/data\npgpass: /tmp/pgpass"),
            "data_dir: /r/home/postgres/pgdata/pgroot/data\npgpass: /r/tmp/pgpass"
        );
        assert_eq!(v.rewrite("HOME=/tmp"), "HOME=/r/tmp");
        assert_eq!(
            v.rewrite("bin_dir: /usr/lib/postgresql/18/bin"),
            "bin_dir: /usr/lib/postgresql/15/bin"
        );
        // Not a mapped prefix at a path boundary, or not at a word start.
        assert_eq!(
            v.rewrite("/tmpfoo /var/tmp x/tmp"),
            "/tmpfoo /var/tmp x/tmp"
        );
        assert_eq!(v.local("/tmp/a/b"), Some(PathBuf::from("/r/tmp/a/b")));
        assert_eq!(v.local("/bin/sh"), None);
    }

    #[test]
    fn rewrites_local_addresses_but_not_cidrs() {
        let v = view();
        assert_eq!(v.rewrite("0.0.0.0:5432"), "127.5.0.2:5432");
        assert_eq!(
            v.rewrite("http://127.0.0.1:8008/x"),
            "http://127.5.0.2:8008/x"
        );
        assert_eq!(v.rewrite("listen: 'localhost'"), "listen: '127.5.0.2'");
        assert_eq!(
            v.rewrite("host all all 127.0.0.1/32 md5"),
            "host all all 127.0.0.1/32 md5"
        );
        assert_eq!(
            v.rewrite("10.0.0.0:1 my-localhost:1"),
            "10.0.0.0:1 my-localhost:1"
        );
    }
}
