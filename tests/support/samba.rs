//! A private Active Directory for the tests that say "AD": Samba's AD domain controller from
//! Debian, provisioned into a temp dir (`samba-tool domain provision --server-role=dc
//! --dns-backend=NONE`), with only its LDAP service, on loopback, started once per test binary
//! (`samba -M single`) and stopped when the binary exits (Samba in interactive mode ends when
//! its standard input closes). Each test works in an OU of its own.
//!
//! Its TLS certificate names the host only in its subject CN (`localhost`, no
//! subjectAltName), as Samba's own generated certificate does; the test CA that signed it is
//! in [`SambaDc::ca_file`].
//!
//! Starting fails the test with the reason (Samba missing, provisioning failed, ports taken):
//! a test that needs the server never passes without one.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use datasync::ldap::LdapConfig;
use ldap3::{LdapConn, LdapConnSettings, Mod, Scope, SearchEntry};

/// The domain's naming context.
pub const BASE: &str = "DC=groupid,DC=lab";
/// The domain's DNS name.
pub const REALM: &str = "groupid.lab";
/// The domain administrator.
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=groupid,DC=lab";
/// Its password: a test domain's, on loopback only (it meets the default complexity policy).
pub const ADMIN_PASSWORD: &str = "Test-Admin-Pass-2026";
/// The host name in the server's certificate and in the URLs.
pub const HOST: &str = "localhost";

/// A running Samba AD DC.
pub struct SambaDc {
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    // Held open for the binary's life: Samba (interactive) exits when it closes.
    _stdin: Mutex<Option<ChildStdin>>,
    ous: AtomicUsize,
}

static DC: OnceLock<Result<SambaDc, String>> = OnceLock::new();
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// One test's OU (see [`SambaDc::ou`]); it derefs to its DN.
pub struct TestOu {
    dc: &'static SambaDc,
    /// The OU's DN.
    pub dn: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Drop for TestOu {
    fn drop(&mut self) {
        self.dc.delete_tree(&self.dn);
    }
}

impl std::ops::Deref for TestOu {
    type Target = str;
    fn deref(&self) -> &str {
        &self.dn
    }
}

/// The test binary's domain controller, started on first use.
pub fn dc() -> &'static SambaDc {
    // A start that failed fails every test with its reason, without provisioning again.
    let started = DC.get_or_init(|| {
        std::panic::catch_unwind(SambaDc::start).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the Samba AD DC did not start".into())
        })
    });
    match started {
        Ok(dc) => {
            static AT_EXIT: std::sync::Once = std::sync::Once::new();
            // SAFETY: `atexit` only records the function; `stop_at_exit` is a plain function
            // that lives as long as the program.
            AT_EXIT.call_once(|| unsafe {
                libc::atexit(stop_at_exit);
            });
            dc
        }
        Err(why) => panic!("{why}"),
    }
}

/// The DC lives in a static, which is never dropped: at exit (tests passed or failed), stop
/// Samba and remove its directory, about 180 MB, or every run of the tests leaves one behind.
extern "C" fn stop_at_exit() {
    if let Some(Ok(dc)) = DC.get() {
        dc.kill();
        let _ = std::fs::remove_dir_all(dc.dir.path());
    }
}

fn which(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: the AD tests need Samba's AD DC. Install it with \
         `apt-get install -y samba samba-ad-dc`; `bash scripts/test` does that for you."
    );
}

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl SambaDc {
    fn start() -> SambaDc {
        let samba = which("samba");
        let tool = which("samba-tool");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let d = dir.path();
        let target = d.join("dc");
        let tls = d.join("tls");
        std::fs::create_dir_all(&tls).unwrap_or_else(|e| panic!("mkdir tls: {e}"));
        super::slapd::write_certificates(&tls, super::slapd::ServerCertificate::CnOnly);
        {
            // Samba refuses a private key others may read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                tls.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap_or_else(|e| panic!("chmod server.key: {e}"));
        }
        let option = |text: String| format!("--option={text}");
        let options = [
            option("interfaces=lo".into()),
            option("bind interfaces only=yes".into()),
            option(format!("pid directory={}", d.join("pid").display())),
            option(format!("lock directory={}", d.join("lock").display())),
            option(format!("state directory={}", d.join("state").display())),
            option(format!("cache directory={}", d.join("cache").display())),
            option(format!("log file={}", d.join("log.samba").display())),
            option("server services=ldap".into()),
            option("tls enabled=yes".into()),
            option(format!("tls keyfile={}", tls.join("server.key").display())),
            option(format!("tls certfile={}", tls.join("server.pem").display())),
            option(format!("tls cafile={}", tls.join("ca.pem").display())),
        ];
        for sub in ["pid", "lock", "state", "cache"] {
            std::fs::create_dir_all(d.join(sub)).unwrap_or_else(|e| panic!("mkdir {sub}: {e}"));
        }
        let provision = Command::new(&tool)
            .args([
                "domain",
                "provision",
                "--server-role=dc",
                "--dns-backend=NONE",
            ])
            .arg(format!("--realm={}", REALM.to_uppercase()))
            .arg("--domain=GROUPID")
            .arg(format!("--adminpass={ADMIN_PASSWORD}"))
            .arg(format!("--targetdir={}", target.display()))
            .args(&options)
            .output()
            .unwrap_or_else(|e| panic!("cannot run samba-tool: {e}"));
        assert!(
            provision.status.success(),
            "samba-tool domain provision failed ({}):\n{}{}",
            provision.status,
            String::from_utf8_lossy(&provision.stdout),
            String::from_utf8_lossy(&provision.stderr)
        );
        let _ = samba;
        let server = SambaDc {
            dir,
            child: Mutex::new(None),
            _stdin: Mutex::new(None),
            ous: AtomicUsize::new(0),
        };
        server.launch();
        server
    }

    /// Starts the samba process (again) on the provisioned domain, and waits until an
    /// administrator can bind.
    pub fn launch(&self) {
        let samba = which("samba");
        // The DC of the test binary before this one ends when that binary exits: give it a
        // moment to let go of the ports.
        let free_by = Instant::now() + Duration::from_secs(30);
        while (port_open(389) || port_open(636)) && Instant::now() < free_by {
            std::thread::sleep(Duration::from_millis(200));
        }
        for port in [389, 636] {
            assert!(
                !port_open(port),
                "127.0.0.1:{port} is taken before our Samba starts (another LDAP server or a \
                 Samba left running?): the AD tests need it"
            );
        }
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("samba.out"))
            .unwrap_or_else(|e| panic!("cannot create samba.out: {e}"));
        let err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot share samba.out: {e}"));
        let mut child = Command::new(&samba)
            .args(["-M", "single", "-i", "-s"])
            .arg(self.dir.path().join("dc/etc/smb.conf"))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run samba: {e}"));
        *self._stdin.lock().unwrap_or_else(|p| p.into_inner()) = child.stdin.take();
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let server = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "samba exited at start ({status}); its log:\n{}",
                    server.log()
                );
            }
            if port_open(636) && server.admin().is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "samba did not answer on ldaps://{HOST}:636 within 60 s; its log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the samba process at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Its children (in single mode, none that serve LDAP) go with their parent's stdin.
        self._stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        let deadline = Instant::now() + Duration::from_secs(20);
        while port_open(636) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Samba printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("samba.out")).unwrap_or_default()
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// `ldaps://localhost`.
    pub fn url(&self) -> String {
        format!("ldaps://{HOST}")
    }

    /// A configuration bound as the administrator, trusting the test CA.
    pub fn config(&self) -> LdapConfig {
        super::test_ldap_config(&self.url(), (ADMIN_DN, ADMIN_PASSWORD), self.ca_file())
    }

    /// A connection bound as the administrator, for the tests' own reads and setup.
    pub fn admin(&self) -> Result<LdapConn, ldap3::LdapError> {
        self.bind(ADMIN_DN, ADMIN_PASSWORD)
    }

    /// A connection bound as `dn` with `password`: how a test shows an account can log on.
    pub fn bind(&self, dn: &str, password: &str) -> Result<LdapConn, ldap3::LdapError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(5))
            .set_no_tls_verify(true);
        let mut conn = LdapConn::with_settings(settings, "ldaps://127.0.0.1:636")?;
        conn.simple_bind(dn, password)?.success()?;
        Ok(conn)
    }

    /// A new, empty OU for one test, `OU=<name>-<n>,DC=groupid,DC=lab`, with the domain to
    /// itself: AD tests run one at a time (the domain's uniqueness rules and `Resolve` reach
    /// across OUs), and the OU and everything in it go when the guard is dropped.
    pub fn ou(&'static self, name: &str) -> TestOu {
        let lock = EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner());
        let dn = self.create_ou(name);
        TestOu {
            dc: self,
            dn,
            _lock: lock,
        }
    }

    /// Deletes `dn` and everything below it.
    pub fn delete_tree(&self, dn: &str) {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("admin bind: {e}"));
        let Ok(found) = conn
            .search(dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
            .and_then(|r| r.success())
        else {
            return;
        };
        let mut dns: Vec<String> = found
            .0
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(|e| SearchEntry::construct(e).dn)
            .collect();
        // Children first: the longest DNs are the deepest.
        dns.sort_by_key(|d| std::cmp::Reverse(d.matches(',').count()));
        for d in dns {
            let _ = conn.delete(&d);
        }
    }

    fn create_ou(&self, name: &str) -> String {
        let n = self.ous.fetch_add(1, Ordering::SeqCst);
        let dn = format!("OU={name}-{n},{BASE}");
        self.modify_or_add_ou(&dn);
        dn
    }

    /// Creates the OU `dn` (inside a test's own OU).
    pub fn modify_or_add_ou(&self, dn: &str) {
        self.add(dn, &[("objectClass", "organizationalUnit")]);
    }

    /// Creates an enabled user at `dn` with this account name, as another tool would have.
    pub fn add_user(&self, dn: &str, account: &str) {
        self.add(
            dn,
            &[
                ("objectClass", "user"),
                ("sAMAccountName", account),
                ("userAccountControl", "514"),
            ],
        );
    }

    fn add(&self, dn: &str, attributes: &[(&str, &str)]) {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("admin bind: {e}"));
        let attrs = attributes
            .iter()
            .map(|(n, v)| (n.to_string(), HashSet::from([v.to_string()])))
            .collect();
        conn.add(dn, attrs)
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("cannot create {dn}: {e}"));
    }

    /// The entries below `base` (subtree) matching `filter`, with `attributes`.
    pub fn search(&self, base: &str, filter: &str, attributes: &[&str]) -> Vec<SearchEntry> {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("admin bind: {e}"));
        let (entries, _) = conn
            .search(base, Scope::Subtree, filter, attributes.to_vec())
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("search {base} {filter}: {e}"));
        entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect()
    }

    /// Applies `mods` to `dn` as the administrator.
    pub fn modify(&self, dn: &str, mods: Vec<Mod<String>>) {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("admin bind: {e}"));
        conn.modify(dn, mods)
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
    }
}
