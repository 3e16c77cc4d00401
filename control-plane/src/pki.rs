//! The cluster CA and the API server's certificate, made on first start and kept in the data dir,
//! and the client certificates the CA signs from certificate signing requests (nodes' and users').
//!
//! Keys are written 0600. The server certificate names [`skiff_api::client::SERVER_NAME`] (which
//! clients verify, whatever address they dial), `localhost` and the loopback addresses, and what
//! the server adds: the `default/kubernetes` Service's names and cluster IP, for clients in pods.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

const CA_COMMON_NAME: &str = "skiff cluster CA";
/// Client certificates' `notBefore` is this long before their signing (clocks differ): a
/// certificate was signed at `notBefore` plus this ([`crate::auth::revocation`] compares it).
pub const CLIENT_BACKDATE_SECONDS: i64 = 60;

/// PKI failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate signing request: {0}")]
    Csr(String),
}

/// What a certificate signing request asks to be: its subject's CN and Os.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrSubject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

/// The PEM material the server needs.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time_now_minus_hour();
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn time_now_minus_hour() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}

/// Writes `contents` to `path` with `mode`, atomically (temp file + rename).
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        Self::load_or_create_naming(dir, &[])
    }

    /// [`Pki::load_or_create`], a new server certificate also naming `extra` (DNS names or IP
    /// addresses: the `default/kubernetes` Service's names and cluster IP, which clients in pods
    /// dial). A certificate already in `dir` is kept as it is.
    pub fn load_or_create_naming(dir: &Path, extra: &[String]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
        let (srv_crt, srv_key) = (dir.join("apiserver.crt"), dir.join("apiserver.key"));
        let (ca_cert_pem, ca_key_pem) = match (read(&ca_crt)?, read(&ca_key)?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let cert = ca_params()?.self_signed(&key)?;
                write_private(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
                write_private(&ca_crt, cert.pem().as_bytes(), 0o644)?;
                // A new CA invalidates any server certificate signed by an old one.
                let _ = fs::remove_file(&srv_crt);
                (cert.pem(), key.serialize_pem())
            }
        };
        let mut pki = Self {
            ca_cert_pem,
            ca_key_pem,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
        };
        match (read(&srv_crt)?, read(&srv_key)?) {
            (Some(c), Some(k)) => {
                pki.server_cert_pem = c;
                pki.server_key_pem = k;
            }
            _ => {
                let mut names = vec![
                    skiff_api::client::SERVER_NAME.to_string(),
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                    "::1".to_string(),
                ];
                names.extend(
                    extra
                        .iter()
                        .filter(|n| !names.contains(n))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                let (cert, key) = pki.issue(
                    names,
                    &[ExtendedKeyUsagePurpose::ServerAuth],
                    "skiff-apiserver",
                )?;
                write_private(&srv_key, key.as_bytes(), 0o600)?;
                write_private(&srv_crt, cert.as_bytes(), 0o644)?;
                pki.server_cert_pem = cert;
                pki.server_key_pem = key;
            }
        }
        Ok(pki)
    }

    /// Issues a certificate signed by the cluster CA: (certificate PEM, key PEM).
    pub fn issue(
        &self,
        subject_alt_names: Vec<String>,
        usages: &[ExtendedKeyUsagePurpose],
        common_name: &str,
    ) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(subject_alt_names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = usages.to_vec();
        params.not_before = time_now_minus_hour();
        params.not_after = rcgen::date_time_ymd(2125, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The CN and Os of a CSR, whose signature is checked.
pub fn csr_subject(csr_pem: &str) -> Result<CsrSubject, PkiError> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| PkiError::Csr(e.to_string()))?;
    subject_of(&csr.params)
}

fn subject_of(params: &CertificateParams) -> Result<CsrSubject, PkiError> {
    let text = |v: &rcgen::DnValue| match v {
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        _ => None,
    };
    let mut subject = CsrSubject {
        common_name: String::new(),
        organizations: Vec::new(),
    };
    for (kind, value) in params.distinguished_name.iter() {
        let value = text(value).ok_or_else(|| PkiError::Csr("subject: not a string".into()))?;
        match kind {
            DnType::CommonName => subject.common_name = value,
            DnType::OrganizationName => subject.organizations.push(value),
            _ => {}
        }
    }
    if subject.common_name.is_empty() {
        return Err(PkiError::Csr("subject: no common name (CN)".into()));
    }
    Ok(subject)
}

impl Pki {
    /// Signs a client certificate for the key in `csr_pem` (signature checked), naming `subject`
    /// (whatever else the request asks for is ignored: the CA decides names, usages and lifetime),
    /// valid from a minute ago for `lifetime`. Returns the certificate's PEM and its expiry (unix
    /// seconds).
    pub fn sign_client(
        &self,
        csr_pem: &str,
        subject: &CsrSubject,
        lifetime: std::time::Duration,
    ) -> Result<(String, i64), PkiError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params()?, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject.common_name.as_str());
        for o in &subject.organizations {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        let lifetime = time::Duration::try_from(lifetime)
            .map_err(|e| PkiError::Csr(format!("lifetime: {e}")))?;
        params.not_before = now - time::Duration::seconds(CLIENT_BACKDATE_SECONDS);
        params.not_after = now + lifetime;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let not_after = params.not_after.unix_timestamp();
        let signed = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&issuer)?;
        Ok((signed.pem(), not_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_server_certificate_names_what_the_server_adds() {
        use x509_parser::extensions::GeneralName;
        let dir = tempfile::tempdir().unwrap();
        let extra = [
            "kubernetes.default.svc".to_string(),
            "10.96.0.1".to_string(),
        ];
        let pki = Pki::load_or_create_naming(dir.path(), &extra).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pki.server_cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert!(
            names.iter().any(|n| n == "kubernetes.default.svc"),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n == "[10, 96, 0, 1]"), "{names:?}");
        assert!(
            names.iter().any(|n| n == skiff_api::client::SERVER_NAME),
            "{names:?}"
        );
    }

    #[test]
    fn created_once_then_reused_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path()).unwrap();
        let b = Pki::load_or_create(dir.path()).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        for key in ["ca.key", "apiserver.key"] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        assert!(a.server_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_signed_client_certificate_names_what_the_ca_decides() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let subject = csr_subject(&csr).unwrap();
        assert_eq!(subject.common_name, "system:node:n1");
        assert_eq!(subject.organizations, ["system:nodes"]);
        let (cert, not_after) = pki
            .sign_client(&csr, &subject, std::time::Duration::from_secs(3600))
            .unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((now + 3590..=now + 3610).contains(&not_after));
        let der = skiff_api::join::pem_to_der(&cert).unwrap();
        let parsed = crate::auth::x509::ClientCertificate::parse(&der).unwrap();
        assert_eq!(parsed.common_name, "system:node:n1");
        assert_eq!(parsed.organizations, ["system:nodes"]);
        assert_eq!(parsed.not_after, not_after);
        // Garbage, and a request whose signature does not match its key.
        assert!(csr_subject("nope").is_err());
        let as_cert = csr.replace("CERTIFICATE REQUEST", "CERTIFICATE");
        let mut der = skiff_api::join::pem_to_der(&as_cert).unwrap();
        let at = der
            .windows(14)
            .position(|w| w == b"system:node:n1")
            .unwrap();
        der[at + 13] = b'2';
        let tampered =
            skiff_api::join::der_to_pem(&der).replace("CERTIFICATE", "CERTIFICATE REQUEST");
        assert!(csr_subject(&tampered).is_err());
    }
}
