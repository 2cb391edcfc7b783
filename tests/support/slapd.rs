//! A private OpenLDAP server for one test: `slapd` from Debian on 127.0.0.1 with free ports, an
//! `mdb` database in a temp dir, our AD schema from `fixtures/ldap/ad.schema`, and a throwaway
//! TLS certificate (its CA in `ca.pem`) for `ldaps://` and StartTLS. Dropped, it stops the server.
//!
//! Starting fails the test with the reason (slapd missing, a bad config, no port): a test that
//! needs a server never passes without one.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datasync::ldap::LdapConfig;

/// The suffix every test server holds.
pub const SUFFIX: &str = "dc=lab";
/// The administrator (the database's rootdn).
pub const ADMIN_DN: &str = "cn=admin,dc=lab";
/// Its password: a test server's, on loopback only.
pub const ADMIN_PASSWORD: &str = "test-admin-secret";

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    /// Port of `ldap://` (plain and StartTLS).
    pub port: u16,
    /// Port of `ldaps://`.
    pub tls_port: u16,
    child: Option<Child>,
}

fn slapd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DATASYNC_SLAPD") {
        return PathBuf::from(p);
    }
    for candidate in [
        "/usr/sbin/slapd",
        "/usr/local/sbin/slapd",
        "/usr/libexec/slapd",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "slapd is not installed (looked in /usr/sbin, /usr/local/sbin, /usr/libexec; set \
         DATASYNC_SLAPD to its path). Install it with `apt-get install -y slapd ldap-utils`; \
         `bash scripts/test` does that for you."
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The certificate a test server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Signed by the test CA, for 127.0.0.1 and localhost in its subjectAltName.
    CaSigned,
    /// Signed by the test CA, naming `localhost` only in its subject CN (no subjectAltName),
    /// as Samba's generated certificate and many AD certificates do.
    CnOnly,
    /// Self-signed with `CA:TRUE`, as `openssl req -x509 -subj /CN=localhost` makes it; the
    /// "CA file" is the certificate itself.
    SelfSigned,
    /// Signed by the test CA, for 127.0.0.1 and localhost, expired in 2021.
    Expired,
}

fn fail<T>(e: rcgen::Error) -> T {
    panic!("cannot make the test TLS certificate: {e}")
}

/// Writes `ca.pem` (what a client trusts), `server.pem` and `server.key` into `dir`.
pub fn write_certificates(dir: &Path, kind: ServerCertificate) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("cannot write {name}: {e}"));
    };
    let server_key = KeyPair::generate().unwrap_or_else(fail);
    if kind == ServerCertificate::SelfSigned {
        let mut own = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(fail);
        own.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        own.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = own.self_signed(&server_key).unwrap_or_else(fail);
        write("ca.pem", cert.pem());
        write("server.pem", cert.pem());
        write("server.key", server_key.serialize_pem());
        return;
    }
    let ca_key = KeyPair::generate().unwrap_or_else(fail);
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(fail);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "datasync test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(fail);
    let issuer = Issuer::new(ca, ca_key);
    let names = match kind {
        ServerCertificate::CnOnly => Vec::new(),
        _ => vec!["127.0.0.1".to_string(), "localhost".to_string()],
    };
    let mut server = CertificateParams::new(names).unwrap_or_else(fail);
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    if kind == ServerCertificate::Expired {
        server.not_before = rcgen::date_time_ymd(2020, 1, 1);
        server.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let server_cert = server.signed_by(&server_key, &issuer).unwrap_or_else(fail);
    write("ca.pem", ca_cert.pem());
    write("server.pem", server_cert.pem());
    write("server.key", server_key.serialize_pem());
}

impl Slapd {
    /// Starts a server with an empty database (not even the suffix entry).
    pub fn start() -> Slapd {
        Slapd::start_with(ServerCertificate::CaSigned)
    }

    /// [`start`](Self::start), presenting a certificate of this kind.
    pub fn start_with(certificate: ServerCertificate) -> Slapd {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        std::fs::create_dir(dir.path().join("db")).unwrap_or_else(|e| panic!("mkdir db: {e}"));
        write_certificates(dir.path(), certificate);
        let d = dir.path().display();
        let schema = fixtures().join("ldap/ad.schema");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {schema}\n\
             pidfile {d}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             TLSCACertificateFile {d}/ca.pem\n\
             TLSCertificateFile {d}/server.pem\n\
             TLSCertificateKeyFile {d}/server.key\n\
             sizelimit unlimited\n\
             database mdb\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\n\
             directory {d}/db\n\
             maxsize 1073741824\n\
             index objectClass eq\n\
             index cn,sAMAccountName,employeeID eq\n",
            schema = schema.display()
        );
        std::fs::write(dir.path().join("slapd.conf"), conf)
            .unwrap_or_else(|e| panic!("cannot write slapd.conf: {e}"));
        let mut server = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            child: None,
        };
        server.launch();
        server
    }

    /// Starts (or restarts) the slapd process on the same database and ports.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "slapd is already running");
        let log = std::fs::File::create(self.dir.path().join("slapd.log"))
            .unwrap_or_else(|e| panic!("cannot create slapd.log: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share slapd.log: {e}"));
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.tls_port
        );
        // `-d 0`: stay in the foreground (so we own the process) and log nothing extra.
        let child = Command::new(slapd_binary())
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run slapd: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("slapd exited at start ({status}); its log:\n{}", self.log());
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.port) && up(self.tls_port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "slapd did not listen on 127.0.0.1:{} within 20 s; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What slapd logged.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("slapd.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process politely (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The CA file that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The raw values of one attribute of one entry, read straight from the server as the
    /// administrator (binary or not).
    pub fn raw_values(&self, dn: &str, attribute: &str) -> Vec<Vec<u8>> {
        let mut conn = ldap3::LdapConn::new(&self.url()).unwrap();
        conn.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .unwrap()
            .success()
            .unwrap();
        let (entries, _) = conn
            .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attribute])
            .unwrap()
            .success()
            .unwrap();
        let entry = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
        let mut values: Vec<Vec<u8>> = entry.bin_attrs.into_values().flatten().collect();
        values.extend(entry.attrs.into_values().flatten().map(String::into_bytes));
        values
    }

    /// A configuration for `url`, bound as the administrator, trusting the test CA, with short
    /// retry waits so fault tests finish quickly.
    pub fn config(&self, url: &str) -> LdapConfig {
        super::test_ldap_config(url, (ADMIN_DN, ADMIN_PASSWORD), self.ca_file())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}
