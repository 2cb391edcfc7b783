//! How a server's certificate is checked, for every connection that speaks TLS: LDAP servers
//! and databases. [`TlsVerify`] is the choice; the checks themselves (`verify`) are built only
//! when a feature that connects to a server is on.

#[cfg(feature = "tls")]
pub(crate) mod verify;

use std::path::PathBuf;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVerify {
    /// Against the system's trusted roots (the default).
    SystemRoots,
    /// Against the CA certificates in this PEM file only.
    CaFile(PathBuf),
    /// Not at all. Anyone on the path can read the bind password and every password set; use it
    /// only against a lab server. The CLI warns on every run that uses it.
    DangerouslyAcceptAnyCertificate,
}
