//! A small pool of bound connections with retries. Each worker thread takes a connection for one
//! operation and gives it back, so as many operations are in flight as there are workers (up to
//! `max_connections`). A connection that failed in transit is dropped, never reused.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ldap3::{LdapConn, LdapConnSettings, LdapError};

use super::{LdapConfig, Security, TlsVerify};

/// The error ldap3 gave, kept as the `source()` of the error a caller sees. Shared: a server
/// found down fails the operations after it with the same cause.
pub(crate) type Cause = Arc<LdapError>;

/// ldap3's error, if any, as the `source()` of a destination's or a source's error.
pub(crate) fn source_of(cause: Option<Cause>) -> Option<crate::BoxError> {
    cause.map(|c| -> crate::BoxError { Box::new(c) })
}

/// Why an operation failed, after retries.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The server could not be reached or the connection broke, every time it was tried.
    Unavailable {
        /// The server and what happened.
        message: String,
        /// ldap3's error, when there was one.
        cause: Option<Cause>,
    },
    /// The server answered with an error result code and its diagnostic text.
    Result {
        /// The LDAP result code (RFC 4511, appendix A).
        code: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// A failure on our side, in the TLS handshake or at the bind: retrying would not help.
    Other {
        /// What happened.
        message: String,
        /// ldap3's error, when there was one.
        cause: Option<Cause>,
    },
}

impl Failure {
    fn unavailable(message: String, cause: Option<Cause>) -> Failure {
        Failure::Unavailable { message, cause }
    }

    fn other(message: String) -> Failure {
        Failure::Other {
            message,
            cause: None,
        }
    }
}

/// Result codes that mean "try again later" (RFC 4511): busy and unavailable.
const BUSY: u32 = 51;
const UNAVAILABLE: u32 = 52;

/// The pool. `Sync`: worker threads share one.
pub(crate) struct Pool {
    config: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    state: Mutex<State>,
    returned: Condvar,
}

struct State {
    idle: Vec<LdapConn>,
    open: usize,
    /// Why the server was last found unreachable; `None` while it answers.
    down: Option<(String, Option<Cause>)>,
    /// An operation is trying the server that is down; the others fail at once meanwhile.
    probing: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.config.url)
            .field("bind_dn", &self.config.bind_dn)
            .finish_non_exhaustive()
    }
}

/// Whether trying again (on a new connection) may succeed.
fn is_transient(e: &LdapError) -> bool {
    match e {
        LdapError::LdapResult { result } => matches!(result.rc, BUSY | UNAVAILABLE),
        LdapError::Io { .. }
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::MiscSend { .. }
        | LdapError::Timeout { .. }
        | LdapError::EndOfStream => true,
        _ => false,
    }
}

fn failure(e: LdapError) -> Failure {
    match e {
        LdapError::LdapResult { result } => Failure::Result {
            code: result.rc,
            text: result.text,
        },
        e if is_transient(&e) => Failure::unavailable(e.to_string(), Some(Arc::new(e))),
        e => Failure::Other {
            message: e.to_string(),
            cause: Some(Arc::new(e)),
        },
    }
}

impl Pool {
    /// A pool for `config`. Opens nothing yet; a bad CA file is an error here.
    pub(crate) fn new(config: LdapConfig) -> Result<Pool, Failure> {
        let tls = match &config.tls_verify {
            TlsVerify::CaFile(path) => Some(Arc::new(ca_config(path)?)),
            TlsVerify::SystemRoots if config.is_encrypted() => Some(Arc::new(system_config()?)),
            _ => None,
        };
        Ok(Pool {
            config,
            tls,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                down: None,
                probing: false,
            }),
            returned: Condvar::new(),
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &LdapConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on a pooled connection, retrying transient failures per the retry policy on a
    /// new connection each time. `op` gets the try number (1 first), so an operation that may
    /// have reached the server before its connection broke can accept "already done" on a retry.
    ///
    /// Once a server is found unreachable, later operations do not each wait through their own
    /// retries: one at a time probes it with a single try, the others fail at once, until a
    /// probe gets through.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&mut LdapConn, u32) -> Result<T, LdapError>,
    ) -> Result<T, Failure> {
        let policy = &self.config.retry;
        let probing = {
            let mut state = self.lock();
            match &state.down {
                Some((message, cause)) if state.probing => {
                    return Err(Failure::unavailable(message.clone(), cause.clone()));
                }
                Some(_) => {
                    state.probing = true;
                    true
                }
                None => false,
            }
        };
        let attempts = if probing { 1 } else { policy.attempts.max(1) };
        let mut last: (String, Option<Cause>) = (String::new(), None);
        for attempt in 1..=attempts {
            if attempt > 1 {
                std::thread::sleep(policy.wait(attempt - 1));
            }
            let mut conn = match self.checkout() {
                Ok(c) => c,
                Err(Failure::Unavailable { message, cause }) => {
                    last = (message, cause);
                    continue;
                }
                Err(other) => {
                    self.end_probe(probing, None);
                    return Err(other);
                }
            };
            conn.with_timeout(self.config.operation_timeout);
            match op(&mut conn, attempt) {
                Ok(v) => {
                    self.give_back(conn);
                    self.end_probe(probing, None);
                    return Ok(v);
                }
                Err(e) if is_transient(&e) => {
                    last = (e.to_string(), Some(Arc::new(e)));
                    self.discard();
                }
                Err(e) => {
                    self.give_back(conn);
                    self.end_probe(probing, None);
                    return Err(failure(e));
                }
            }
        }
        let (last, cause) = last;
        let message = format!("{} is unavailable: {last}", self.config.url);
        self.end_probe(probing, Some((&message, &cause)));
        Err(Failure::unavailable(message, cause))
    }

    /// Records how an operation ended: `down` is the message when the server could not be
    /// reached, `None` when it answered.
    fn end_probe(&self, probing: bool, down: Option<(&str, &Option<Cause>)>) {
        let mut state = self.lock();
        if probing {
            state.probing = false;
        }
        match down {
            Some((message, cause)) => {
                // The idle connections went to the same server: do not trust them either.
                let stale = std::mem::take(&mut state.idle);
                state.open = state.open.saturating_sub(stale.len());
                state.down = Some((message.to_string(), cause.clone()));
            }
            None => state.down = None,
        }
    }

    /// An idle connection, or a new one when fewer than `max_connections` are open, or the
    /// next one given back.
    fn checkout(&self) -> Result<LdapConn, Failure> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.config.max_connections.max(1) {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(conn) => Ok(conn),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give_back(&self, conn: LdapConn) {
        self.lock().idle.push(conn);
        self.returned.notify_one();
    }

    /// Forgets a connection that was dropped (broken or never made).
    fn discard(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.returned.notify_one();
    }

    fn connect(&self) -> Result<LdapConn, Failure> {
        let c = &self.config;
        let mut settings = LdapConnSettings::new().set_conn_timeout(c.connect_timeout);
        if c.security == Security::StartTls {
            settings = settings.set_starttls(true);
        }
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        if c.tls_verify == TlsVerify::DangerouslyAcceptAnyCertificate {
            settings = settings.set_no_tls_verify(true);
        }
        let mut conn = LdapConn::with_settings(settings, &c.url).map_err(|e| match e {
            e if is_transient(&e) => Failure::unavailable(e.to_string(), Some(Arc::new(e))),
            e => Failure::Other {
                message: format!("{}: {e}", c.url),
                cause: Some(Arc::new(e)),
            },
        })?;
        if let Some(dn) = &c.bind_dn {
            let password = c.bind_password.as_ref().map_or("", |p| p.expose());
            conn.with_timeout(c.operation_timeout);
            let bound = conn.simple_bind(dn, password).and_then(|r| r.success());
            if let Err(e) = bound {
                return Err(match failure(e) {
                    Failure::Result { code, text } => {
                        let name = result_name(code);
                        Failure::other(match ad_bind_reason(&text) {
                            Some(reason) => format!(
                                "cannot bind to {} as {dn}: {reason} (LDAP {code} {name} {text})",
                                c.url
                            ),
                            None => format!(
                                "cannot bind to {} as {dn}: LDAP {code} {name} {text}",
                                c.url
                            ),
                        })
                    }
                    other => other,
                });
            }
        }
        Ok(conn)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for mut conn in state.idle.drain(..) {
            let _ = conn.unbind();
        }
    }
}

/// The words for AD's `data NNN` in a bind refusal.
fn ad_bind_reason(text: &str) -> Option<&'static str> {
    let code = text.split("data ").nth(1)?.split([',', ' ']).next()?;
    Some(match code.to_ascii_lowercase().as_str() {
        "525" => "no such user",
        "52e" => "wrong password",
        "530" => "the account may not log on at this time",
        "531" => "the account may not log on from this workstation",
        "532" => "the password has expired",
        "533" => "the account is disabled",
        "701" => "the account has expired",
        "773" => "the password must be changed before logging on",
        "775" => "the account is locked out",
        _ => return None,
    })
}

/// [`crate::tls::verify::ca_file_config`], as a pool failure.
fn ca_config(path: &std::path::Path) -> Result<rustls::ClientConfig, Failure> {
    crate::tls::verify::ca_file_config(path).map_err(Failure::other)
}

/// [`crate::tls::verify::system_roots_config`], as a pool failure.
fn system_config() -> Result<rustls::ClientConfig, Failure> {
    crate::tls::verify::system_roots_config().map_err(Failure::other)
}

/// The RFC 4511 name of a result code, for messages (`LDAP 65 objectClassViolation: ...`).
pub(crate) fn result_name(code: u32) -> &'static str {
    match code {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_unreachable_server_is_reported_and_then_failed_fast() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let mut config = LdapConfig::parse("ldap://127.0.0.1:1").unwrap();
        config.retry.attempts = 2;
        config.retry.first_wait = Duration::from_millis(10);
        config.retry.max_wait = Duration::from_secs(30);
        let pool = Pool::new(config).unwrap();
        let first = pool.run(|conn, _| conn.delete("cn=x"));
        assert!(
            matches!(&first, Err(Failure::Unavailable { message, cause: Some(_) }) if message.contains("127.0.0.1:1")),
            "{first:?}"
        );
        let started = Instant::now();
        let second = pool.run(|conn, _| conn.delete("cn=x"));
        // Failed fast, with the cause the probe found.
        assert!(matches!(
            second,
            Err(Failure::Unavailable { cause: Some(_), .. })
        ));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not failed fast"
        );
    }

    #[test]
    fn busy_unavailable_and_broken_connections_are_transient_other_codes_are_not() {
        let result = |rc| LdapError::LdapResult {
            result: ldap3::LdapResult {
                rc,
                matched: String::new(),
                text: "server says".into(),
                refs: Vec::new(),
                ctrls: Vec::new(),
            },
        };
        assert!(is_transient(&result(51)));
        assert!(is_transient(&result(52)));
        assert!(is_transient(&LdapError::EndOfStream));
        for permanent in [19, 32, 50, 65, 68] {
            assert!(!is_transient(&result(permanent)), "{permanent}");
        }
        assert!(matches!(
            failure(result(65)),
            Failure::Result { code: 65, text } if text == "server says"
        ));
    }

    #[test]
    fn a_missing_ca_file_is_an_error_before_connecting() {
        let mut config = LdapConfig::parse("ldaps://127.0.0.1:1").unwrap();
        config.tls_verify = TlsVerify::CaFile("/nonexistent/ca.pem".into());
        let err = Pool::new(config).unwrap_err();
        assert!(
            matches!(&err, Failure::Other { message, .. } if message.contains("/nonexistent/ca.pem"))
        );
    }
}
