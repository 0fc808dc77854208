//! Who may do what: the scopes a client can hold and the grants that give them. Local clients
//! are known by the user and group the kernel reports for their socket connection; TCP
//! clients by the bearer token they send. Plain Rust: the gRPC layer that applies it lives in
//! `rpc::auth`.

use std::fmt;
use std::path::PathBuf;

/// One kind of right. Scopes are independent: a grant lists each one it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Reading the catalog, the dependency graph and the workflow database.
    Read,
    /// Writing the workflow database: agents, workflows, runs, sessions.
    Write,
    /// The daemon itself: roots (watch, unwatch, rescan) and importing a database.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are shown.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The scope's name in the configuration file and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// The scope of that name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Scopes = Scopes(0);
    /// Every scope (the daemon's own user, root, and the `--token-file` token).
    pub const ALL: Scopes = Scopes(7);

    /// This set with `scope` added.
    pub fn with(self, scope: Scope) -> Scopes {
        Scopes(self.0 | scope.bit())
    }

    /// Both sets together.
    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the scopes in the set.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.contains(*s))
            .map(Scope::name)
            .collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        iter.into_iter().fold(Scopes::NONE, Scopes::with)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.names().join(", "))
        }
    }
}

/// Which local clients a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPrincipal {
    /// Processes of this user id.
    Uid(u32),
    /// Processes whose primary group is this group id (as the kernel reports it for the
    /// connection, `SO_PEERCRED`).
    Gid(u32),
}

/// Scopes given to local users other than the daemon's own (`access.local_users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGrant {
    pub who: LocalPrincipal,
    pub scopes: Scopes,
}

impl fmt::Display for LocalGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.who {
            LocalPrincipal::Uid(u) => write!(f, "uid {u}: {}", self.scopes),
            LocalPrincipal::Gid(g) => write!(f, "gid {g}: {}", self.scopes),
        }
    }
}

/// A TCP token as configured (`access.tokens`): its name, the file holding its secret (never
/// the secret itself), and its scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub name: String,
    pub file: PathBuf,
    pub scopes: Scopes,
}

impl fmt::Display for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.name,
            self.file.display(),
            self.scopes
        )
    }
}

/// A TCP token with its secret read.
pub struct Token {
    /// The name shown in logs and refusals.
    pub name: String,
    /// What the token may do.
    pub scopes: Scopes,
    /// `Bearer <secret>`, as clients send it.
    expected: Vec<u8>,
}

impl Token {
    /// A token whose secret is `secret`.
    pub fn new(name: impl Into<String>, secret: &str, scopes: Scopes) -> Token {
        Token {
            name: name.into(),
            scopes,
            expected: format!("Bearer {secret}").into_bytes(),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Who may do what on this daemon.
#[derive(Debug)]
pub struct AccessPolicy {
    /// The daemon's own user: it, and root, hold every scope on the local socket.
    pub owner_uid: u32,
    /// Scopes of other local users.
    pub local: Vec<LocalGrant>,
    /// The TCP tokens.
    pub tokens: Vec<Token>,
}

impl AccessPolicy {
    /// The scopes of a local client of user `uid` and primary group `gid`: every scope for the
    /// daemon's own user and root, else the union of the grants naming its user or group.
    pub fn local_scopes(&self, uid: u32, gid: u32) -> Scopes {
        if uid == self.owner_uid || uid == 0 {
            return Scopes::ALL;
        }
        self.local
            .iter()
            .filter(|g| match g.who {
                LocalPrincipal::Uid(u) => u == uid,
                LocalPrincipal::Gid(x) => x == gid,
            })
            .fold(Scopes::NONE, |acc, g| acc.union(g.scopes))
    }

    /// Whether any local user other than the owner and root has a grant (the socket must then
    /// be connectable by others; the grants decide what they may do).
    pub fn grants_other_local_users(&self) -> bool {
        self.local.iter().any(|g| !g.scopes.is_empty())
    }

    /// The token whose `authorization` header value is `header`. Every token is compared in
    /// full, so the time taken does not tell which token or how much of one matched.
    pub fn token(&self, header: &[u8]) -> Option<&Token> {
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(header, &t.expected) && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}

/// Compares without an early exit, so timing does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_root_hold_everything_others_only_what_is_granted() {
        let read: Scopes = [Scope::Read].into_iter().collect();
        let write: Scopes = [Scope::Write].into_iter().collect();
        let p = AccessPolicy {
            owner_uid: 1000,
            local: vec![
                LocalGrant {
                    who: LocalPrincipal::Uid(1001),
                    scopes: read,
                },
                LocalGrant {
                    who: LocalPrincipal::Gid(50),
                    scopes: write,
                },
            ],
            tokens: vec![
                Token::new("ci", "0123456789abcdef", read),
                Token::new("ops", "fedcba9876543210", Scopes::ALL),
            ],
        };
        assert_eq!(p.local_scopes(1000, 1000), Scopes::ALL);
        assert_eq!(p.local_scopes(0, 0), Scopes::ALL);
        assert_eq!(p.local_scopes(1001, 1001), read);
        assert_eq!(p.local_scopes(1001, 50), read.union(write));
        assert_eq!(p.local_scopes(1002, 1002), Scopes::NONE);
        assert!(p.grants_other_local_users());
        assert_eq!(
            p.token(b"Bearer 0123456789abcdef").map(|t| t.name.as_str()),
            Some("ci")
        );
        assert_eq!(
            p.token(b"Bearer fedcba9876543210").map(|t| t.scopes),
            Some(Scopes::ALL)
        );
        assert!(p.token(b"Bearer 0123456789abcdeX").is_none());
        assert!(p.token(b"0123456789abcdef").is_none());
        assert_eq!(read.union(write).to_string(), "read, write");
        assert_eq!(Scopes::NONE.to_string(), "none");
        assert!(!format!("{:?}", p.tokens[0]).contains("0123"));
    }
}
