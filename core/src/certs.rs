//! `lookout certs`: the operator's small certificate authority for the relay's
//! mutual TLS (`docs/PROTOCOL.md` §3). It creates the operator CA once and
//! issues command-center and gateway certificates from it, so a deployment
//! needs no OpenSSL recipe: every file lands in one folder, private keys
//! readable by their owner only, and nothing already there is overwritten.
//!
//! Layout of the folder: `ca.pem` + `ca.key` (the CA, reused by later runs),
//! and `<name>.pem` + `<name>.key` per issued certificate. Peers trust the CA
//! directly, so a `<name>.pem` holds only its own certificate.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

/// Arguments of `lookout certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Folder for the CA and the issued files (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Issue a command-center certificate: NAME[,SAN...] — NAME is the center's id (CN); each SAN a DNS name or IP address the gateways dial (e.g. `county,127.0.0.1,localhost`). May repeat.
    #[arg(long)]
    pub center: Vec<String>,
    /// Issue a gateway certificate for this gateway id (CN and, when a valid DNS name, DNS SAN). May repeat.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Validity of issued certificates, days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
    /// The CA's common name when a new CA is created.
    #[arg(long, default_value = "lookout operator CA")]
    pub ca_name: String,
}

/// Creates the CA in `args.dir` unless `ca.pem` and `ca.key` are already
/// there (then it is reused), and issues the requested center and gateway
/// certificates. Returns the files written, in the order written; prints
/// nothing. Every name, SAN and target file is checked before anything is
/// written, so a rejected run leaves the folder as it was.
pub fn run(args: &CertsArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut leaves = Vec::new();
    for spec in &args.center {
        leaves.push(parse_center(spec)?);
    }
    for id in &args.gateway {
        leaves.push(gateway_leaf(id)?);
    }
    let mut seen = HashSet::new();
    for leaf in &leaves {
        if !seen.insert(leaf.name.as_str()) {
            bail!(
                "`{}` is given more than once (each certificate is written to <name>.pem, so names must be unique across --center and --gateway)",
                leaf.name
            );
        }
    }
    if args.days == 0 {
        bail!("--days must be at least 1");
    }
    let ca_name = args.ca_name.trim();
    if ca_name.is_empty() || ca_name.len() > 64 {
        bail!(
            "--ca-name `{}`: must be 1 to 64 bytes (an X.509 common name)",
            args.ca_name
        );
    }

    fs::create_dir_all(&args.dir)
        .with_context(|| format!("{}: cannot create the folder", args.dir.display()))?;
    let ca_pem = args.dir.join("ca.pem");
    let ca_key = args.dir.join("ca.key");
    for leaf in &leaves {
        for path in leaf.paths(&args.dir) {
            if fs::symlink_metadata(&path).is_ok() {
                bail!(
                    "{}: already exists; delete it (and its .pem/.key partner) to re-issue `{}`",
                    path.display(),
                    leaf.name
                );
            }
        }
    }

    let now = OffsetDateTime::now_utc();
    // Backdated a little so a peer whose clock lags ours accepts the
    // certificate right away.
    let not_before = now - Duration::hours(1);
    let mut written = Vec::new();
    let issuer = match (ca_pem.exists(), ca_key.exists()) {
        (true, true) => load_ca(&ca_pem, &ca_key)?,
        (false, false) => {
            let (issuer, cert_pem) = new_ca(ca_name, not_before, now + Duration::days(3650))?;
            write_new(&ca_pem, cert_pem.as_bytes(), 0o644)?;
            written.push(ca_pem);
            write_new(&ca_key, issuer.key().serialize_pem().as_bytes(), 0o600)?;
            written.push(ca_key);
            issuer
        }
        (true, false) => bail!(
            "{} exists but {} does not: restore the CA key, or delete {} to create a new CA (which invalidates every certificate issued so far)",
            ca_pem.display(),
            ca_key.display(),
            ca_pem.display()
        ),
        (false, true) => bail!(
            "{} exists but {} does not: restore the CA certificate, or delete {} to create a new CA (which invalidates every certificate issued so far)",
            ca_key.display(),
            ca_pem.display(),
            ca_key.display()
        ),
    };

    let not_after = now + Duration::days(i64::from(args.days));
    for leaf in &leaves {
        let (cert_pem, key_pem) = leaf
            .issue(&issuer, not_before, not_after)
            .with_context(|| format!("issuing the certificate for `{}`", leaf.name))?;
        let [pem_path, key_path] = leaf.paths(&args.dir);
        write_new(&pem_path, cert_pem.as_bytes(), 0o644)?;
        written.push(pem_path);
        write_new(&key_path, key_pem.as_bytes(), 0o600)?;
        written.push(key_path);
    }
    Ok(written)
}

/// A certificate to issue: its name (CN and file stem), SANs and role.
#[derive(Debug)]
struct Leaf {
    name: String,
    sans: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

impl Leaf {
    fn paths(&self, dir: &Path) -> [PathBuf; 2] {
        [
            dir.join(format!("{}.pem", self.name)),
            dir.join(format!("{}.key", self.name)),
        ]
    }

    /// A fresh P-256 key and its certificate signed by `issuer`, both PEM.
    fn issue(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&self.name);
        params.subject_alt_names = self.sans.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = self.usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// `NAME[,SAN...]` of `--center`: server and client auth (a center also
/// dials upward as a client in a cascade). The name itself is a DNS SAN
/// when it is a valid DNS name, so gateways may dial it by its id; the
/// other SANs are the DNS names and addresses gateways dial.
fn parse_center(spec: &str) -> anyhow::Result<Leaf> {
    let mut parts = spec.split(',').map(str::trim);
    let name = parts.next().unwrap_or_default();
    check_name(name).with_context(|| format!("--center `{spec}`"))?;
    let mut sans = Vec::new();
    if name.parse::<IpAddr>().is_err()
        && let Some(san) = dns_san(name)
    {
        sans.push(san);
    }
    for san in parts {
        let san = parse_san(san).with_context(|| format!("--center `{spec}`"))?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    if sans.is_empty() {
        bail!(
            "--center `{spec}`: give the DNS names and/or IP addresses the gateways dial after the name, e.g. `{name},center.example.org,192.0.2.10`; gateways check the center's certificate against them"
        );
    }
    Ok(Leaf {
        name: name.to_owned(),
        sans,
        usages: vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    })
}

/// `--gateway ID`: client auth only; the id is also a DNS SAN when it is a
/// valid DNS name (an IP-address-like id stays CN only).
fn gateway_leaf(id: &str) -> anyhow::Result<Leaf> {
    check_name(id).with_context(|| format!("--gateway `{id}`"))?;
    let sans = match dns_san(id) {
        Some(san) if id.parse::<IpAddr>().is_err() => vec![san],
        _ => Vec::new(),
    };
    Ok(Leaf {
        name: id.to_owned(),
        sans,
        usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
    })
}

/// Names and ids are file stems and protocol ids: `[A-Za-z0-9._-]{1,64}`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !valid_chars {
        bail!("name `{name}` is not valid: use 1 to 64 of the characters A-Z a-z 0-9 . _ -");
    }
    if name == "ca" {
        bail!("name `ca` is reserved for the CA's own ca.pem and ca.key");
    }
    Ok(())
}

/// A SAN as given on the command line: an IP address when it parses as one,
/// else a DNS name.
fn parse_san(san: &str) -> anyhow::Result<SanType> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    dns_san(san).with_context(|| {
        format!("SAN `{san}` is neither an IP address nor a valid DNS name (letters, digits, - and _ in dot-separated labels)")
    })
}

fn dns_san(name: &str) -> Option<SanType> {
    rustls_pki_types::DnsName::try_from(name).ok()?;
    Some(SanType::DnsName(name.try_into().ok()?))
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// A new self-signed P-256 CA; returns it as an issuer and its PEM
/// certificate.
fn new_ca(
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> anyhow::Result<(Issuer<'static, KeyPair>, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    // No intermediates below it: the operator CA signs leaves only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).context("creating the CA")?;
    Ok((Issuer::new(params, key), cert.pem()))
}

/// The CA of an earlier run, checked to be a CA and to match its key.
fn load_ca(cert_path: &Path, key_path: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let key_pem = fs::read_to_string(key_path)
        .with_context(|| format!("{}: cannot read the CA key", key_path.display()))?;
    let key = KeyPair::from_pem(&key_pem).with_context(|| {
        format!(
            "{}: not a PEM private key rcgen can use",
            key_path.display()
        )
    })?;
    let cert_pem = fs::read_to_string(cert_path)
        .with_context(|| format!("{}: cannot read the CA certificate", cert_path.display()))?;
    let der = pem_certificate(&cert_pem)
        .with_context(|| format!("{}: no PEM certificate in it", cert_path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a valid X.509 certificate: {e}",
            cert_path.display()
        )
    })?;
    if !cert.is_ca() {
        bail!(
            "{}: not a CA certificate (basic constraints do not say CA)",
            cert_path.display()
        );
    }
    if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice() {
        bail!(
            "{}: this key does not belong to the CA certificate {}",
            key_path.display(),
            cert_path.display()
        );
    }
    Issuer::from_ca_cert_der(&der.into(), key)
        .with_context(|| format!("{}: cannot issue with this CA", cert_path.display()))
}

/// The DER of the first `CERTIFICATE` section of a PEM text.
fn pem_certificate(pem_text: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem_text.as_bytes())
        .ok()
        .map(|der| der.to_vec())
}

/// Writes a file that must not exist yet, with `mode` on Unix (keys 0600).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => {
            anyhow::anyhow!("{}: already exists; delete it to re-issue", path.display())
        }
        _ => anyhow::anyhow!("{}: cannot create: {e}", path.display()),
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use x509_parser::extensions::GeneralName;

    use super::*;

    fn args(dir: &Path, centers: &[&str], gateways: &[&str]) -> CertsArgs {
        CertsArgs {
            dir: dir.to_owned(),
            center: centers.iter().map(|s| s.to_string()).collect(),
            gateway: gateways.iter().map(|s| s.to_string()).collect(),
            days: 825,
            ca_name: "lookout operator CA".into(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// What the tests check of a certificate.
    #[derive(Debug)]
    struct Summary {
        subject_cn: String,
        issuer_cn: String,
        is_ca: bool,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
        server_auth: bool,
        client_auth: bool,
        days: i64,
    }

    fn summary(path: &Path) -> Summary {
        let der = pem_certificate(&fs::read_to_string(path).unwrap()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        };
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Some(san) = cert.subject_alternative_name().unwrap() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) => ips.push(match b.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                        _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                    }),
                    other => panic!("unexpected SAN {other:?}"),
                }
            }
        }
        let eku = cert.extended_key_usage().unwrap();
        let validity = cert.validity();
        Summary {
            subject_cn: cn(cert.subject()),
            issuer_cn: cn(cert.issuer()),
            is_ca: cert.is_ca(),
            dns,
            ips,
            server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
            days: (validity.not_after.to_datetime() - validity.not_before.to_datetime())
                .whole_days(),
        }
    }

    #[test]
    fn first_run_creates_the_ca_and_issues_center_and_gateway() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let written = run(&args(
            &dir,
            &["county,127.0.0.1,localhost,::1"],
            &["gw-north"],
        ))
        .unwrap();
        let expected: Vec<PathBuf> = [
            "ca.pem",
            "ca.key",
            "county.pem",
            "county.key",
            "gw-north.pem",
            "gw-north.key",
        ]
        .iter()
        .map(|f| dir.join(f))
        .collect();
        assert_eq!(written, expected);
        for key in ["ca.key", "county.key", "gw-north.key"] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
            let text = fs::read_to_string(dir.join(key)).unwrap();
            assert!(
                text.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{key}: PKCS#8"
            );
        }

        let ca = summary(&dir.join("ca.pem"));
        assert!(ca.is_ca);
        assert_eq!(ca.subject_cn, "lookout operator CA");
        assert_eq!(ca.issuer_cn, "lookout operator CA");
        assert!(ca.days >= 3650);

        let county = summary(&dir.join("county.pem"));
        assert_eq!(county.subject_cn, "county");
        assert_eq!(county.issuer_cn, "lookout operator CA");
        assert!(!county.is_ca);
        assert_eq!(county.dns, ["county", "localhost"]);
        assert_eq!(
            county.ips,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert!(county.server_auth && county.client_auth);
        assert_eq!(county.days, 825);

        let gateway = summary(&dir.join("gw-north.pem"));
        assert_eq!(gateway.subject_cn, "gw-north");
        assert_eq!(gateway.issuer_cn, "lookout operator CA");
        assert_eq!(gateway.dns, ["gw-north"]);
        assert!(gateway.ips.is_empty());
        assert!(gateway.client_auth && !gateway.server_auth);
    }

    #[test]
    fn a_later_run_reuses_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        run(&args(dir, &[], &["gw-north"])).unwrap();
        let ca_before = fs::read(dir.join("ca.pem")).unwrap();
        let key_before = fs::read(dir.join("ca.key")).unwrap();

        let written = run(&args(dir, &[], &["gw-south"])).unwrap();
        assert_eq!(
            written,
            [dir.join("gw-south.pem"), dir.join("gw-south.key")]
        );
        assert_eq!(fs::read(dir.join("ca.pem")).unwrap(), ca_before);
        assert_eq!(fs::read(dir.join("ca.key")).unwrap(), key_before);

        // The new certificate chains to the same CA: the TLS loader, which
        // verifies it against ca.pem, accepts it.
        let files = crate::relay::tls::TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("gw-south.pem"),
            key: dir.join("gw-south.key"),
        };
        crate::relay::tls::client_config(&files).unwrap();
    }

    #[test]
    fn only_a_ca_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let written = run(&args(tmp.path(), &[], &[])).unwrap();
        assert_eq!(
            written,
            [tmp.path().join("ca.pem"), tmp.path().join("ca.key")]
        );
        // Again: nothing to do, nothing written.
        assert!(run(&args(tmp.path(), &[], &[])).unwrap().is_empty());
    }

    #[test]
    fn refuses_to_overwrite_an_issued_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        run(&args(dir, &[], &["gw-north"])).unwrap();
        let before = fs::read(dir.join("gw-north.pem")).unwrap();

        let error = run(&args(dir, &[], &["gw-new", "gw-north"])).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains(&dir.join("gw-north.pem").display().to_string()),
            "{message}"
        );
        assert!(message.contains("already exists"), "{message}");
        assert_eq!(fs::read(dir.join("gw-north.pem")).unwrap(), before);
        // Checked before writing anything: gw-new was not issued either.
        assert!(!dir.join("gw-new.pem").exists());

        // A leftover key alone blocks too.
        fs::remove_file(dir.join("gw-north.pem")).unwrap();
        let error = run(&args(dir, &[], &["gw-north"])).unwrap_err();
        assert!(
            format!("{error:#}").contains(&dir.join("gw-north.key").display().to_string()),
            "{error:#}"
        );
        fs::remove_file(dir.join("gw-north.key")).unwrap();
        run(&args(dir, &[], &["gw-north"])).unwrap();
    }

    #[test]
    fn rejects_bad_names_and_sans_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let too_long = "g".repeat(65);
        for (centers, gateways, needle) in [
            (&[][..], &["bad/name"][..], "bad/name"),
            (&[], &[""], "``"),
            (&[], &["a b"], "a b"),
            (&[], &[too_long.as_str()], too_long.as_str()),
            (&[], &["ca"], "reserved"),
            (&[], &["gw", "gw"], "more than once"),
            (&["10.0.0.1"], &[], "DNS names and/or IP addresses"),
            (&["county,bad host!"], &[], "bad host!"),
            (&["county,localhost,"], &[], "county,localhost,"),
            (&["../up,localhost"], &[], "../up"),
        ] {
            let error = run(&args(&dir, centers, gateways)).unwrap_err();
            let message = format!("{error:#}");
            assert!(message.contains(needle), "{needle}: {message}");
            assert!(!dir.exists(), "{needle}: nothing may be written");
        }
        let mut zero_days = args(&dir, &[], &["gw"]);
        zero_days.days = 0;
        assert!(run(&zero_days).is_err());
    }

    #[test]
    fn ip_like_gateway_id_gets_no_dns_san() {
        let tmp = tempfile::tempdir().unwrap();
        run(&args(tmp.path(), &[], &["10.0.0.7"])).unwrap();
        let gateway = summary(&tmp.path().join("10.0.0.7.pem"));
        assert_eq!(gateway.subject_cn, "10.0.0.7");
        assert!(gateway.dns.is_empty() && gateway.ips.is_empty());
    }

    #[test]
    fn a_ca_key_that_does_not_match_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        run(&args(tmp.path(), &[], &[])).unwrap();
        run(&args(other.path(), &[], &[])).unwrap();
        fs::copy(other.path().join("ca.key"), tmp.path().join("ca.key")).unwrap();
        let error = run(&args(tmp.path(), &[], &["gw"])).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("does not belong"), "{message}");
        assert!(!tmp.path().join("gw.pem").exists());

        fs::remove_file(tmp.path().join("ca.key")).unwrap();
        let error = run(&args(tmp.path(), &[], &["gw"])).unwrap_err();
        assert!(format!("{error:#}").contains("ca.key"), "{error:#}");
    }
}
