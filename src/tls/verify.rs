//! Certificate checks that connect exactly where `ldapsearch` with `LDAPTLS_CACERT` does, and
//! refuse in plain words where it refuses.
//!
//! The chain and dates are checked by rustls' WebPKI verifier. Two certificates OpenLDAP's
//! client accepts and WebPKI does not are accepted too:
//! - a certificate that names its host only in its subject CN, with no subjectAltName
//!   (Samba's generated certificate, many AD CS templates): RFC 6125 lets a client fall back
//!   to the CN when there is no DNS or IP subjectAltName, and OpenSSL does;
//! - a self-signed certificate (`openssl req -x509`, which marks it `CA:TRUE`) given itself as
//!   the trusted CA: the user trusts that very certificate, so it is its own anchor.
//!
//! A wrong host name, an untrusted issuer and an expired certificate are still refused, each
//! with what is wrong and which option would help.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A TLS client configuration trusting only the certificates in `path` (PEM): the CAs that
/// sign servers' certificates, or a self-signed server certificate itself. LDAP and database
/// connections share it, so `--ca-file` means the same for both.
pub(crate) fn ca_file_config(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let bad = |m: String| format!("CA file {}: {m}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    Verifier::new(certs, true)
        .and_then(Verifier::client_config)
        .map_err(bad)
}

/// A TLS client configuration trusting the system's root certificates.
pub(crate) fn system_roots_config() -> Result<rustls::ClientConfig, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(
            "this system has no CA certificates to check the server's certificate with \
             (install ca-certificates, or give the server's CA with --ca-file)"
                .into(),
        );
    }
    Verifier::new(found.certs, false)
        .and_then(Verifier::client_config)
        .map_err(|m| format!("the system's CA certificates: {m}"))
}

/// Why a server's certificate is refused, in words a user can act on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

fn refuse(message: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(
        message,
    )))))
}

/// The verifier for a connection that trusts `anchors` (a CA file's certificates, or the
/// system's roots when `from_ca_file` is false).
#[derive(Debug)]
pub(crate) struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    anchors: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    from_ca_file: bool,
}

impl Verifier {
    pub(crate) fn new(
        anchors: Vec<CertificateDer<'static>>,
        from_ca_file: bool,
    ) -> Result<Verifier, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let (_, rejected) = roots.add_parsable_certificates(anchors.iter().cloned());
        if roots.is_empty() {
            return Err(if rejected > 0 {
                "none of its certificates can be used as a trust anchor".into()
            } else {
                "no certificate in it".into()
            });
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Verifier {
            webpki,
            anchors,
            provider,
            from_ca_file,
        })
    }

    /// A TLS client configuration that checks certificates with this verifier.
    pub(crate) fn client_config(self) -> Result<rustls::ClientConfig, String> {
        let provider = self.provider.clone();
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self))
            .with_no_client_auth())
    }

    /// Which option helps when the issuer is not trusted.
    fn trust_hint(&self) -> &'static str {
        if self.from_ca_file {
            "it is not signed by a CA in --ca-file; give the file of the CA that signed it \
             (or, for a self-signed certificate, the certificate itself)"
        } else {
            "it is not signed by a CA this system trusts; give the CA that signed it with \
             --ca-file"
        }
    }
}

/// The host names (or addresses) a certificate is for: its DNS and IP subjectAltNames, or,
/// when it has none, its subject CNs.
fn names_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
                            .to_string(),
                    ),
                    16 => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(bytes);
                        names.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_string),
        );
    }
    names
}

/// Whether `pattern` (a certificate's name, `*.example.com` allowed) covers `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let host = host.trim_end_matches('.');
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && suffix.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

fn host_of(server_name: &ServerName<'_>) -> String {
    match server_name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// The certificate's validity at `now`, as a refusal when it is outside it.
fn check_dates(cert: &X509Certificate<'_>, now: UnixTime) -> Result<(), Error> {
    let now = now.as_secs() as i64;
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(refuse(format!(
            "the server's certificate expired on {}; the server needs a new certificate \
             (--insecure-skip-tls-verify connects anyway, without any check)",
            validity.not_after
        )));
    }
    if now < validity.not_before.timestamp() {
        return Err(refuse(format!(
            "the server's certificate is not valid before {}; check the clocks of this \
             machine and the server",
            validity.not_before
        )));
    }
    Ok(())
}

/// Checks that the certificate is for `host`, by the RFC 6125 rules (CN only without SANs).
fn check_name(cert: &X509Certificate<'_>, host: &str) -> Result<(), Error> {
    let names = names_of(cert);
    if names.iter().any(|n| name_matches(n, host)) {
        return Ok(());
    }
    Err(refuse(format!(
        "the server's certificate is for {}, not {host}; connect by a name the certificate \
         holds (in the URL)",
        if names.is_empty() {
            "no host name".to_string()
        } else {
            names.join(", ")
        }
    )))
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let webpki = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let error = match webpki {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        let host = host_of(server_name);
        let Ok((_, cert)) = X509Certificate::from_der(end_entity.as_ref()) else {
            return Err(refuse(
                "the server's certificate cannot be read (it is not valid DER)".into(),
            ));
        };
        match &error {
            // The chain and the dates passed (WebPKI checks the name last).
            Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => {
                check_name(&cert, &host)?;
                Ok(ServerCertVerified::assertion())
            }
            // The very certificate the user trusts, used as the server's own (self-signed).
            _ if self
                .anchors
                .iter()
                .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                check_dates(&cert, now)?;
                check_name(&cert, &host)?;
                Ok(ServerCertVerified::assertion())
            }
            // A CA of the same name that did not sign it fails its signature check.
            Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => Err(refuse(format!(
                "the server's certificate (issued by {}) is not trusted: {}",
                cert.issuer(),
                self.trust_hint()
            ))),
            Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => {
                check_dates(&cert, now)?;
                Err(error)
            }
            _ => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        assert!(name_matches("dc1.example.com", "DC1.example.com"));
        assert!(name_matches("*.example.com", "dc1.example.com"));
        assert!(!name_matches("*.example.com", "a.dc1.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("dc1.example.com", "dc2.example.com"));
        assert!(name_matches("127.0.0.1", "127.0.0.1"));
    }
}
