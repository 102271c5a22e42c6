//! Certificates made inside a test (rcgen): a CA, a node certificate it signs for
//! 127.0.0.1 and localhost, an expired one, and a CA nobody uses, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, date_time_ymd};

/// The PEM files of one test's PKI.
pub struct Pki {
    /// The CA the wallet is told to trust.
    pub ca_cert: PathBuf,
    /// A certificate for 127.0.0.1 and localhost, signed by the CA, valid now.
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    /// The same names, signed by the CA, expired in 2020.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// Another CA, which signed nothing the node serves.
    pub other_ca_cert: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (params, key, cert.pem())
}

fn leaf(issuer: &Issuer<'_, &KeyPair>, expired: bool) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "cercle-node test");
    if expired {
        params.not_before = date_time_ymd(2019, 1, 1);
        params.not_after = date_time_ymd(2020, 1, 1);
    } else {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2100, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf signed by the CA");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Makes the PKI and writes its files into `dir`.
    pub fn create(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let (ca_params, ca_key, ca_pem) = ca("Cercle test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (node_pem, node_key_pem) = leaf(&issuer, false);
        let (expired_pem, expired_key_pem) = leaf(&issuer, true);
        let (_, _, other_pem) = ca("Some other CA");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        Pki {
            ca_cert: write("ca.pem", &ca_pem),
            node_cert: write("node.pem", &node_pem),
            node_key: write("node-key.pem", &node_key_pem),
            expired_cert: write("expired.pem", &expired_pem),
            expired_key: write("expired-key.pem", &expired_key_pem),
            other_ca_cert: write("other-ca.pem", &other_pem),
        }
    }
}
