//! The webhook's own CA and serving certificate: generation, inspection and the rotation decision.
//! Pure apart from key generation; the clock is an argument.
//!
//! Two lifetimes: the CA lives long (5 years) and only its rotation changes the `caBundle`; the
//! serving certificate lives a year and is re-issued by the same CA, so renewing it needs no change
//! on the API server's side. Both are renewed at 2/3 of their life. After a CA rotation the bundle
//! keeps the previous CA until it expires, so replicas still serving the old certificate are trusted
//! while they reload.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// Subject of every CA this operator makes; a serving certificate is re-issued under the same
/// name, which is what lets a new serving certificate chain to a stored CA.
const CA_COMMON_NAME: &str = "dig-operator webhook CA";
const ORGANIZATION: &str = "dig-operator";
/// Certificates start a little in the past to tolerate clock skew between nodes.
const BACKDATE_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating the webhook {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what} is not a PEM certificate: {detail}")]
    Parse { what: String, detail: String },
    #[error("{what} is not a PEM private key: {detail}")]
    Key { what: String, detail: String },
    #[error("time {0} (unix seconds) is out of range for a certificate")]
    Time(i64),
}

/// How long certificates live and when they are renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertPolicy {
    pub ca_validity: Duration,
    pub serving_validity: Duration,
    /// Renew once this fraction of the lifetime has passed (numerator / denominator).
    pub renew_after: (u32, u32),
}

impl Default for CertPolicy {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            ca_validity: Duration::from_secs(5 * 365 * DAY),
            serving_validity: Duration::from_secs(365 * DAY),
            renew_after: (2, 3),
        }
    }
}

/// The names a serving certificate must carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectNames {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

impl SubjectNames {
    /// The Service's in-cluster names plus extra names (`127.0.0.1`, a node name...); an extra
    /// name that parses as an IP address becomes an IP SAN.
    pub fn for_service(service: &str, namespace: &str, extra: &[String]) -> Self {
        let mut names = Self::default();
        for name in [
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ] {
            names.dns.insert(name);
        }
        for name in extra {
            match name.parse::<IpAddr>() {
                Ok(ip) => names.ips.insert(ip),
                Err(_) => names.dns.insert(name.clone()),
            };
        }
        names
    }

    fn common_name(&self) -> String {
        // The `<svc>.<ns>.svc` name, or any name: the API server only checks SANs.
        self.dns
            .iter()
            .find(|name| name.ends_with(".svc"))
            .or_else(|| self.dns.iter().next())
            .cloned()
            .unwrap_or_else(|| "dig-operator-webhook".to_string())
    }
}

/// Everything kept in the webhook Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookCerts {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// What the API server must trust: the current CA, then the previous one while it is valid.
    pub ca_bundle_pem: String,
    pub tls_cert_pem: String,
    pub tls_key_pem: String,
}

/// Keys of the webhook Secret (type `kubernetes.io/tls`, so `tls.crt` and `tls.key` are standard).
pub const SECRET_CA_CERT: &str = "ca.crt";
pub const SECRET_CA_KEY: &str = "ca.key";
pub const SECRET_CA_BUNDLE: &str = "ca-bundle.crt";
pub const SECRET_TLS_CERT: &str = "tls.crt";
pub const SECRET_TLS_KEY: &str = "tls.key";

/// What a certificate says about itself, as far as rotation cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: i64,
    pub not_after: i64,
    pub names: SubjectNames,
    pub is_ca: bool,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    public_key: Vec<u8>,
    der: Vec<u8>,
}

impl CertInfo {
    /// True once `fraction` of the lifetime has passed (or the certificate is not valid yet).
    fn due(&self, now: i64, (numerator, denominator): (u32, u32)) -> bool {
        let lifetime = self.not_after - self.not_before;
        let renew_at = self.not_before + lifetime * i64::from(numerator) / i64::from(denominator);
        now >= renew_at || now < self.not_before
    }

    /// When this certificate should be renewed under `policy` (unix seconds).
    pub fn renew_at(&self, (numerator, denominator): (u32, u32)) -> i64 {
        let lifetime = self.not_after - self.not_before;
        self.not_before + lifetime * i64::from(numerator) / i64::from(denominator)
    }

    fn signed_by(&self, ca: &CertInfo) -> bool {
        if self.issuer != ca.subject {
            return false;
        }
        let (Ok((_, leaf)), Ok((_, issuer))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&ca.der),
        ) else {
            return false;
        };
        leaf.verify_signature(Some(issuer.public_key())).is_ok()
    }
}

/// Reads the first certificate of a PEM text.
pub fn inspect(what: &str, pem_text: &str) -> Result<CertInfo, CertError> {
    let der = first_pem_certificate(what, pem_text)?;
    let parse_error = |detail: String| CertError::Parse {
        what: what.to_string(),
        detail,
    };
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| parse_error(e.to_string()))?;
    let mut names = SubjectNames::default();
    let mut is_ca = false;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => {
                            names.dns.insert((*dns).to_string());
                        }
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                names.ips.insert(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(constraints) => is_ca = constraints.ca,
            _ => {}
        }
    }
    Ok(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        names,
        is_ca,
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        public_key: cert.public_key().raw.to_vec(),
        der: der.clone(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn first_pem_certificate(what: &str, pem_text: &str) -> Result<Vec<u8>, CertError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let first = CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .next()
        .ok_or_else(|| CertError::Parse {
            what: what.to_string(),
            detail: "no CERTIFICATE block".to_string(),
        })?
        .map_err(|e| CertError::Parse {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    Ok(first.to_vec())
}

fn key_pair(what: &str, pem_text: &str) -> Result<KeyPair, CertError> {
    KeyPair::from_pem(pem_text).map_err(|e| CertError::Key {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// What to do with the certificates found in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    Keep,
    /// Re-issue the serving certificate under the current CA (the `caBundle` stays).
    NewServing(String),
    /// Make a new CA (and serving certificate); the bundle keeps the old CA while it is valid.
    NewCa(String),
}

/// Decides whether the stored certificates still serve `names` well at `now`.
pub fn decide(
    current: Option<&WebhookCerts>,
    names: &SubjectNames,
    now: i64,
    policy: &CertPolicy,
) -> Rotation {
    let Some(current) = current else {
        return Rotation::NewCa("no webhook certificate yet".to_string());
    };
    let ca = match inspect("the stored CA certificate", &current.ca_cert_pem) {
        Ok(ca) => ca,
        Err(error) => return Rotation::NewCa(error.to_string()),
    };
    if !ca.is_ca {
        return Rotation::NewCa("the stored CA certificate is not a CA".to_string());
    }
    match key_pair("the stored CA key", &current.ca_key_pem) {
        Ok(key) if key.public_key_der() == ca.public_key => {}
        Ok(_) => return Rotation::NewCa("the stored CA key does not match the CA".to_string()),
        Err(error) => return Rotation::NewCa(error.to_string()),
    }
    if ca.due(now, policy.renew_after) {
        return Rotation::NewCa(format!(
            "the CA expires at {} (unix seconds) and is due for renewal",
            ca.not_after
        ));
    }
    let serving = match inspect("the stored serving certificate", &current.tls_cert_pem) {
        Ok(serving) => serving,
        Err(error) => return Rotation::NewServing(error.to_string()),
    };
    match key_pair("the stored serving key", &current.tls_key_pem) {
        Ok(key) if key.public_key_der() == serving.public_key => {}
        Ok(_) => {
            return Rotation::NewServing(
                "the stored serving key does not match the certificate".to_string(),
            );
        }
        Err(error) => return Rotation::NewServing(error.to_string()),
    }
    if !serving.signed_by(&ca) {
        return Rotation::NewServing("the serving certificate is not signed by the CA".to_string());
    }
    if &serving.names != names {
        return Rotation::NewServing(format!(
            "the serving certificate's names ({}) differ from the wanted ones ({})",
            describe(&serving.names),
            describe(names)
        ));
    }
    if serving.due(now, policy.renew_after) {
        return Rotation::NewServing(format!(
            "the serving certificate expires at {} (unix seconds) and is due for renewal",
            serving.not_after
        ));
    }
    if !current.ca_bundle_pem.contains(current.ca_cert_pem.trim()) {
        return Rotation::NewServing("the CA bundle does not hold the current CA".to_string());
    }
    Rotation::Keep
}

fn describe(names: &SubjectNames) -> String {
    names
        .dns
        .iter()
        .cloned()
        .chain(names.ips.iter().map(IpAddr::to_string))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies a rotation decision: returns the certificates to store (unchanged for `Keep`).
pub fn rotate(
    current: Option<&WebhookCerts>,
    decision: &Rotation,
    names: &SubjectNames,
    now: i64,
    policy: &CertPolicy,
) -> Result<WebhookCerts, CertError> {
    match (decision, current) {
        (Rotation::Keep, Some(current)) => Ok(current.clone()),
        (Rotation::NewServing(_), Some(current)) => {
            let (tls_cert_pem, tls_key_pem) =
                issue_serving(&current.ca_key_pem, names, now, policy.serving_validity)?;
            let mut bundle = current.ca_cert_pem.trim().to_string();
            bundle.push('\n');
            // Keep a previous CA that is still in the bundle and still valid.
            bundle.push_str(&still_valid_others(
                &current.ca_bundle_pem,
                &current.ca_cert_pem,
                now,
            ));
            Ok(WebhookCerts {
                ca_cert_pem: current.ca_cert_pem.clone(),
                ca_key_pem: current.ca_key_pem.clone(),
                ca_bundle_pem: bundle,
                tls_cert_pem,
                tls_key_pem,
            })
        }
        _ => {
            let (ca_cert_pem, ca_key_pem) = generate_ca(now, policy.ca_validity)?;
            let (tls_cert_pem, tls_key_pem) =
                issue_serving(&ca_key_pem, names, now, policy.serving_validity)?;
            let mut bundle = ca_cert_pem.trim().to_string();
            bundle.push('\n');
            if let Some(previous) = current {
                let previous_ca_valid = inspect("the previous CA", &previous.ca_cert_pem)
                    .is_ok_and(|ca| ca.is_ca && ca.not_after > now);
                if previous_ca_valid {
                    bundle.push_str(previous.ca_cert_pem.trim());
                    bundle.push('\n');
                }
            }
            Ok(WebhookCerts {
                ca_cert_pem,
                ca_key_pem,
                ca_bundle_pem: bundle,
                tls_cert_pem,
                tls_key_pem,
            })
        }
    }
}

/// The certificates of `bundle` other than `current` that are still valid at `now`, as PEM.
fn still_valid_others(bundle: &str, current: &str, now: i64) -> String {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let Ok(current_der) = first_pem_certificate("the current CA", current) else {
        return String::new();
    };
    let mut kept = String::new();
    for der in CertificateDer::pem_slice_iter(bundle.as_bytes()).flatten() {
        if der.as_ref() == current_der.as_slice() {
            continue;
        }
        let valid = X509Certificate::from_der(der.as_ref())
            .is_ok_and(|(_, cert)| cert.validity().not_after.timestamp() > now);
        if valid {
            kept.push_str(&pem_encode("CERTIFICATE", der.as_ref()));
        }
    }
    kept
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn offset_time(unix_seconds: i64) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .map_err(|_| CertError::Time(unix_seconds))
}

fn validity_end(now: i64, validity: Duration) -> i64 {
    now.saturating_add(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2))
}

fn ca_params(now: i64, validity: Duration) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    name.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset_time(now - BACKDATE_SECONDS)?;
    params.not_after = offset_time(validity_end(now, validity))?;
    Ok(params)
}

/// A new self-signed CA: (certificate PEM, key PEM).
pub fn generate_ca(now: i64, validity: Duration) -> Result<(String, String), CertError> {
    let generate = |source| CertError::Generate { what: "CA", source };
    let key = KeyPair::generate().map_err(generate)?;
    let cert = ca_params(now, validity)?
        .self_signed(&key)
        .map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names` signed by the CA whose key is `ca_key_pem`:
/// (certificate PEM, key PEM).
pub fn issue_serving(
    ca_key_pem: &str,
    names: &SubjectNames,
    now: i64,
    validity: Duration,
) -> Result<(String, String), CertError> {
    let generate = |source| CertError::Generate {
        what: "serving certificate",
        source,
    };
    let ca_key = key_pair("the CA key", ca_key_pem)?;
    // The issuer only contributes its name and key: rebuilding it from the constant CA name gives
    // a certificate that chains to the stored CA.
    let issuer = ca_params(now, Duration::from_secs(60))?
        .self_signed(&ca_key)
        .map_err(generate)?;
    let mut san_strings: Vec<String> = names.dns.iter().cloned().collect();
    san_strings.extend(names.ips.iter().map(IpAddr::to_string));
    let mut params = CertificateParams::new(san_strings).map_err(generate)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, names.common_name());
    subject.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset_time(now - BACKDATE_SECONDS)?;
    params.not_after = offset_time(validity_end(now, validity))?;
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.signed_by(&key, &issuer, &ca_key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn names() -> SubjectNames {
        SubjectNames::for_service("dig-webhook", "dig-system", &["127.0.0.1".to_string()])
    }

    fn fresh() -> WebhookCerts {
        let decision = decide(None, &names(), NOW, &CertPolicy::default());
        rotate(None, &decision, &names(), NOW, &CertPolicy::default()).unwrap()
    }

    #[test]
    fn service_names_cover_every_in_cluster_form_and_extra_ips() {
        let names = names();
        let dns: Vec<&str> = names.dns.iter().map(String::as_str).collect();
        assert_eq!(
            dns,
            [
                "dig-webhook",
                "dig-webhook.dig-system",
                "dig-webhook.dig-system.svc",
                "dig-webhook.dig-system.svc.cluster.local",
            ]
        );
        assert_eq!(
            names.ips,
            BTreeSet::from(["127.0.0.1".parse::<IpAddr>().unwrap()])
        );
    }

    #[test]
    fn generated_certificates_carry_the_names_and_chain_to_the_ca() {
        let certs = fresh();
        let ca = inspect("ca", &certs.ca_cert_pem).unwrap();
        let serving = inspect("serving", &certs.tls_cert_pem).unwrap();
        assert!(ca.is_ca);
        assert!(!serving.is_ca);
        assert_eq!(serving.names, names());
        assert!(serving.signed_by(&ca));
        assert_eq!(serving.not_before, NOW - BACKDATE_SECONDS);
        assert_eq!(serving.not_after, NOW + 365 * DAY);
        assert_eq!(ca.not_after, NOW + 5 * 365 * DAY);
        assert_eq!(certs.ca_bundle_pem.trim(), certs.ca_cert_pem.trim());
        // A CA made elsewhere does not sign it.
        let (other_ca, _) = generate_ca(NOW, Duration::from_secs(3600)).unwrap();
        assert!(!serving.signed_by(&inspect("other", &other_ca).unwrap()));
    }

    #[test]
    fn pem_round_trips_through_the_secret_form() {
        let certs = fresh();
        let key = KeyPair::from_pem(&certs.tls_key_pem).unwrap();
        assert_eq!(key.serialize_pem(), certs.tls_key_pem);
        let der = first_pem_certificate("serving", &certs.tls_cert_pem).unwrap();
        assert_eq!(
            pem_encode("CERTIFICATE", &der).trim(),
            certs.tls_cert_pem.trim()
        );
        // rustls accepts the pair as a serving certificate.
        super::super::server::certified_key(&certs.tls_cert_pem, &certs.tls_key_pem).unwrap();
        assert!(matches!(
            inspect("garbage", "not a pem"),
            Err(CertError::Parse { .. })
        ));
    }

    #[test]
    fn fresh_certificates_are_kept() {
        let certs = fresh();
        let policy = CertPolicy::default();
        assert_eq!(decide(Some(&certs), &names(), NOW, &policy), Rotation::Keep);
        assert_eq!(
            decide(Some(&certs), &names(), NOW + 200 * DAY, &policy),
            Rotation::Keep
        );
    }

    #[test]
    fn serving_certificate_is_renewed_at_two_thirds_of_its_life_under_the_same_ca() {
        let certs = fresh();
        let policy = CertPolicy::default();
        let serving = inspect("serving", &certs.tls_cert_pem).unwrap();
        let renew_at = serving.renew_at(policy.renew_after);
        assert_eq!(
            decide(Some(&certs), &names(), renew_at - 1, &policy),
            Rotation::Keep
        );
        let decision = decide(Some(&certs), &names(), renew_at, &policy);
        assert!(
            matches!(decision, Rotation::NewServing(ref why) if why.contains("due for renewal"))
        );
        let renewed = rotate(Some(&certs), &decision, &names(), renew_at, &policy).unwrap();
        assert_eq!(renewed.ca_cert_pem, certs.ca_cert_pem);
        assert_eq!(renewed.ca_bundle_pem.trim(), certs.ca_bundle_pem.trim());
        assert_ne!(renewed.tls_cert_pem, certs.tls_cert_pem);
        let ca = inspect("ca", &renewed.ca_cert_pem).unwrap();
        assert!(
            inspect("serving", &renewed.tls_cert_pem)
                .unwrap()
                .signed_by(&ca)
        );
        assert_eq!(
            decide(Some(&renewed), &names(), renew_at, &policy),
            Rotation::Keep
        );
    }

    #[test]
    fn changed_names_or_broken_material_trigger_renewal() {
        let certs = fresh();
        let policy = CertPolicy::default();
        let other_names = SubjectNames::for_service("dig-webhook", "other-ns", &[]);
        assert!(matches!(
            decide(Some(&certs), &other_names, NOW, &policy),
            Rotation::NewServing(ref why) if why.contains("differ")
        ));
        let mut wrong_key = certs.clone();
        wrong_key.tls_key_pem = KeyPair::generate().unwrap().serialize_pem();
        assert!(matches!(
            decide(Some(&wrong_key), &names(), NOW, &policy),
            Rotation::NewServing(ref why) if why.contains("does not match")
        ));
        let mut foreign_ca = certs.clone();
        let (other_ca, other_key) = generate_ca(NOW, policy.ca_validity).unwrap();
        foreign_ca.ca_cert_pem = other_ca;
        foreign_ca.ca_key_pem = other_key;
        assert!(matches!(
            decide(Some(&foreign_ca), &names(), NOW, &policy),
            Rotation::NewServing(ref why) if why.contains("not signed by the CA")
        ));
        let mut broken_ca = certs.clone();
        broken_ca.ca_cert_pem = "garbage".to_string();
        assert!(matches!(
            decide(Some(&broken_ca), &names(), NOW, &policy),
            Rotation::NewCa(_)
        ));
    }

    #[test]
    fn ca_rotation_keeps_the_previous_ca_in_the_bundle_until_it_expires() {
        let certs = fresh();
        let policy = CertPolicy::default();
        let ca = inspect("ca", &certs.ca_cert_pem).unwrap();
        let ca_renew_at = ca.renew_at(policy.renew_after);
        let decision = decide(Some(&certs), &names(), ca_renew_at, &policy);
        assert!(matches!(decision, Rotation::NewCa(ref why) if why.contains("CA expires")));
        let rotated = rotate(Some(&certs), &decision, &names(), ca_renew_at, &policy).unwrap();
        assert_ne!(rotated.ca_cert_pem, certs.ca_cert_pem);
        assert!(rotated.ca_bundle_pem.contains(rotated.ca_cert_pem.trim()));
        assert!(rotated.ca_bundle_pem.contains(certs.ca_cert_pem.trim()));
        // A later serving renewal still carries the old CA while it is valid, and drops it after.
        let later = rotate(
            Some(&rotated),
            &Rotation::NewServing("test".to_string()),
            &names(),
            ca_renew_at + DAY,
            &policy,
        )
        .unwrap();
        assert!(later.ca_bundle_pem.contains(certs.ca_cert_pem.trim()));
        let after_expiry = rotate(
            Some(&rotated),
            &Rotation::NewServing("test".to_string()),
            &names(),
            ca.not_after + 1,
            &policy,
        )
        .unwrap();
        assert!(
            !after_expiry
                .ca_bundle_pem
                .contains(certs.ca_cert_pem.trim())
        );
        assert!(
            after_expiry
                .ca_bundle_pem
                .contains(rotated.ca_cert_pem.trim())
        );
    }
}
