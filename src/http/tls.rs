//! The certificate chain and private key of an HTTPS public listener (PEM files), as a
//! rustls configuration with the `ring` provider. actix-web adds the ALPN protocols
//! (`h2`, `http/1.1`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("cannot read the TLS certificate chain {path} (server.tls_cert)")]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("no certificate in {0} (server.tls_cert)")]
    NoCert(PathBuf),
    #[error("cannot read the TLS private key {path} (server.tls_key)")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate and key do not make a configuration")]
    Config(#[source] rustls::Error),
    #[error("cannot listen")]
    Listen(#[source] std::io::Error),
}

/// A rustls server configuration from PEM files.
pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)
}
